"""glnet_cli/io/raster.py: a declared nodata (``--nodata``) in the valid masks of every read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from glnet_cli.errors import RasterError
from glnet_cli.io.raster.read import SceneReader, inspect_scene
from glnet_cli.io.raster.windows import Box
from tests.helpers import run_glnet, write_raster

SIZE, BORDER = 96, 8


def bordered(bands: int = 3, dtype: str = "uint8") -> np.ndarray:
    """Values 1..250 inside a frame of zeros ``BORDER`` px wide; the file declares no nodata."""
    data = np.random.default_rng(0).integers(1, 250, (bands, SIZE, SIZE)).astype(dtype)
    data[:, :BORDER], data[:, -BORDER:], data[:, :, :BORDER], data[:, :, -BORDER:] = 0, 0, 0, 0
    return data


def interior() -> np.ndarray:
    inside = np.zeros((SIZE, SIZE), bool)
    inside[BORDER:-BORDER, BORDER:-BORDER] = True
    return inside


def valid_of(path: Path, nodata: float | None = None, bands=None) -> np.ndarray:
    with SceneReader(inspect_scene(path, bands, nodata=nodata)) as reader:
        return reader.read(Box(0, 0, SIZE, SIZE)).valid


def test_declared_nodata_marks_the_zero_border_invalid(tmp_path):
    scene = write_raster(tmp_path / "scene.tif", bordered())
    assert valid_of(scene).all()
    assert (valid_of(scene, nodata=0) == interior()).all()
    info = inspect_scene(scene, nodata=0)
    assert info.nodata == 0 and info.nodata_declared


def test_declared_nodata_holds_in_decimated_reads(tmp_path):
    scene = write_raster(tmp_path / "scene.tif", bordered())
    with SceneReader(inspect_scene(scene, nodata=0)) as reader:
        patch = reader.read_decimated(Box(0, 0, SIZE, SIZE), (SIZE // 8, SIZE // 8))
    assert not patch.valid[0].any() and not patch.valid[:, 0].any()
    assert patch.valid[1:-1, 1:-1].all()


def test_a_pixel_is_nodata_only_when_every_band_is(tmp_path):
    data = bordered()
    data[0, :BORDER, :] = 7  # band 1 is not zero along the top
    scene = write_raster(tmp_path / "scene.tif", data)
    expected = interior()
    expected[:BORDER, :] = True
    assert (valid_of(scene, nodata=0) == expected).all()


def test_declared_nodata_replaces_the_files_own(tmp_path):
    data = bordered()
    data[:, 40:50, 40:50] = 255
    scene = write_raster(tmp_path / "scene.tif", data, nodata=255)
    assert not valid_of(scene)[40:50, 40:50].any() and valid_of(scene)[:BORDER].all()
    assert (valid_of(scene, nodata=0) == interior()).all()


def test_an_alpha_band_still_applies(tmp_path):
    data = np.concatenate([bordered(), np.full((1, SIZE, SIZE), 255, np.uint8)])
    data[3, 20:30, 20:30] = 0
    scene = write_raster(tmp_path / "scene.tif", data, photometric="RGB", alpha="YES")
    with rasterio.open(scene) as src:
        assert "alpha" in [c.name for c in src.colorinterp]
    expected = interior()
    expected[20:30, 20:30] = False
    assert (valid_of(scene, nodata=0, bands=[1, 2, 3]) == expected).all()


def test_declared_nan_on_floats(tmp_path):
    data = bordered(dtype="float32")
    data[:, 30:40, 30:40] = np.nan
    scene = write_raster(tmp_path / "scene.tif", data)
    expected = np.ones((SIZE, SIZE), bool)
    expected[30:40, 30:40] = False
    assert (valid_of(scene, nodata=float("nan")) == expected).all()


@pytest.mark.parametrize("nodata", [-1, 0.5, 256, float("nan")])
def test_a_nodata_the_data_type_cannot_hold_is_refused(tmp_path, nodata):
    scene = write_raster(tmp_path / "scene.tif", bordered())
    with pytest.raises(RasterError, match=rf"{scene}: nodata {nodata:g} is not a uint8 value; "
                                          "declare one its data type can hold"):
        inspect_scene(scene, nodata=nodata)


@pytest.mark.slow
def test_segment_nodata_option(tiny_model, tmp_path):
    model = tiny_model(size_p=64, context=1024)
    scene = write_raster(tmp_path / "scene.tif", bordered())
    for name, extra in (("plain.tif", []), ("declared.tif", ["--nodata", "0"])):
        result = run_glnet("segment", scene, "-o", tmp_path / name, "-m", model, "-q", *extra)
        assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "plain.tif") as plain, \
            rasterio.open(tmp_path / "declared.tif") as declared:
        before, after = plain.read(1), declared.read(1)
        assert declared.nodata == 255
    assert (before != 255).all()
    assert ((after == 255) == ~interior()).all()
    assert (after[interior()] == before[interior()]).all()
    bad = run_glnet("segment", scene, "-o", tmp_path / "bad.tif", "-m", model, "--nodata", "-1")
    assert bad.exit_code == 2
    assert bad.stderr == (f"glnet: error: {scene}: nodata -1 is not a uint8 value; "
                          "declare one its data type can hold\n")
    assert not (tmp_path / "bad.tif").exists()
