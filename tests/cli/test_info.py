"""``glnet info``: model files, scenes, the fit check, and its errors."""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result

from glnet_cli.commands.info import fit_report as check_fit
from glnet_cli.errors import GlnetWarning, InputError
from glnet_cli.inference.engine import Segmenter
from glnet_cli.inference.fit import check_fit as scene_fit
from glnet_cli.io.describe import describe_file
from glnet_cli.io.model.checkpoint import ModelFile, load_model, save_model
from tests.helpers import DEFAULT_TRANSFORM, run_glnet, write_raster

RGB = np.random.default_rng(0).integers(0, 255, (3, 100, 100), dtype=np.uint8)


def _json(*args: str) -> dict:
    result = run_glnet("info", *args, "--json")
    assert result.exit_code in (0, 2), result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    """A stage-2 model (32 px crops, 64 px global view, 256 px context): the fit checks' model."""
    return tiny_model(l2g=False)


@pytest.fixture(scope="module")
def stage3(tiny_model) -> Path:
    """The same with its local-to-global branch (stage 3)."""
    return tiny_model()


def _resaved(source: Path, target: Path, **changes: object) -> Path:
    """``source`` with some metadata changed (stage, gsd, provenance)."""
    loaded = _loaded(source)
    save_model(target, loaded.model, dataclasses.replace(loaded.info, **changes))
    return target


@functools.lru_cache(maxsize=2)
def _loaded(path: Path) -> ModelFile:
    """Each model file loaded once (saving a copy changes nothing in it)."""
    return load_model(path)


@pytest.fixture
def scene(tmp_path) -> Path:
    return write_raster(tmp_path / "scene.tif", RGB)


# -- model files ---------------------------------------------------------------

def test_model_tables_show_architecture_classes_scaling_and_provenance(stage3, tmp_path):
    path = _resaved(stage3, tmp_path / "trained.pt", gsd=0.5,
                    provenance={"epochs": 3, "metrics": {"miou": 0.5}})
    result = run_glnet("info", str(path))
    assert result.exit_code == 0, result.output
    for text in ("format version", "resnet18", "FPN width", "size_p", "class_3",
                 "dtype-range", "0.00392157", "local-to-global branch", "epochs",
                 '{"miou":0.5}'):
        assert text in result.stdout, text


def test_model_json_has_header_and_metadata(stage3):
    data = _json(str(stage3))
    assert data["kind"] == "model" and data["format_version"] == 1 and data["l2g"] is True
    assert data["architecture"]["backbone"] == "resnet18"
    assert data["architecture"]["in_channels"] == 3
    assert (data["architecture"]["size_g"], data["architecture"]["size_p"]) == (64, 32)
    assert data["context"] == {"size": 256, "gsd": None}
    assert data["input_scaling"]["mode"] == "dtype-range"
    assert [c["id"] for c in data["classes"]] == [0, 1, 2, 3]
    assert data["stage"] == 3 and data["provenance"] == {}


def test_model_without_l2g_branch(model):
    data = _json(str(model))
    assert data["l2g"] is False and data["stage"] == 2


def test_model_with_another_extension_is_still_found(model, tmp_path):
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(model.read_bytes())
    assert describe_file(renamed)["kind"] == "model"


# -- scenes --------------------------------------------------------------------

def test_real_rasters(shared_data):
    folder = shared_data / "rasterio"
    rgb = _json(str(folder / "RGB.byte.tif"))
    assert rgb["kind"] == "scene" and (rgb["width"], rgb["height"], rgb["count"]) == (791, 718, 3)
    assert rgb["crs"] == "EPSG:32618" and rgb["units"] == "metre" and rgb["nodata"] == 0
    assert [b["color"] for b in rgb["bands"]] == ["red", "green", "blue"]
    assert all(b["mask_flags"] == ["nodata"] for b in rgb["bands"])
    assert rgb["pixel_size"][0] == pytest.approx(300.038, abs=1e-3)

    rgba = _json(str(folder / "RGBA.byte.tif"))
    assert rgba["bands"][3]["color"] == "alpha"
    assert all("alpha" in b["mask_flags"] for b in rgba["bands"][:3])

    cog = _json(str(folder / "cogeo.tif"))
    assert cog["overviews"] == [2, 4, 8, 16, 32, 64] and cog["block_shape"] == [512, 512]

    result = run_glnet("info", str(folder / "float32.tif"))
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert _json(str(folder / "float32.tif"))["crs"] is None
    assert "2, 4, 8, 16, 32, 64" in run_glnet("info", str(folder / "cogeo.tif")).stdout


def test_scene_json_keys(scene):
    data = _json(str(scene))
    assert set(data) == {"kind", "path", "width", "height", "count", "bands", "crs", "units",
                         "transform", "pixel_size", "gsd", "overviews", "nodata",
                         "block_shape"}
    assert data["transform"] == list(DEFAULT_TRANSFORM)[:6] and data["gsd"] == 0.5


def test_geotiff_named_like_a_model_is_described_as_a_scene(tmp_path):
    path = write_raster(tmp_path / "odd.pt", RGB)
    assert describe_file(path)["kind"] == "scene"


def test_model_from_environment_is_not_checked(scene, model):
    result = run_glnet("info", str(scene), "--json", env={"GLNET_MODEL": str(model)})
    assert result.exit_code == 0 and "fit" not in json.loads(result.stdout)


# -- fit check -----------------------------------------------------------------

def test_fitting_scene(scene, model):
    result = run_glnet("info", str(scene), "--model", str(model))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "fits"
    fit = _json(str(scene), "--model", str(model))["fit"]
    assert fit["fits"] and fit["bands"] == [1, 2, 3]
    assert set(fit) == {"model", "fits", "verdict", "bands", "checks", "plan"}
    assert {c["name"]: c["status"] for c in fit["checks"]} == {
        "bands": "ok", "pixels": "ok", "data type": "ok", "pixel size": "unknown",
        "stage": "ok"}
    # 100 px fit one 256 px block; 32 px crops overlapping by >= 8 px: 4 x 4 of them.
    assert fit["plan"] == {"context_blocks": 1, "local_crops": 16, "context_size": 256,
                           "size_p": 32, "overlap": 8}


def test_large_scene_is_cut_into_context_blocks(tmp_path, model):
    path = write_raster(tmp_path / "big.tif", np.zeros((3, 600, 600), np.uint8))
    assert check_fit(path, model)["plan"]["context_blocks"] > 1


def test_wrong_band_count_and_bands_fix_it(tmp_path, model):
    gray = write_raster(tmp_path / "gray.tif", RGB[0])
    result = run_glnet("info", str(gray), "--model", str(model))
    assert result.exit_code == 2
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith("does not fit: has 1 band(s), the model needs 3")
    fixed = _json(str(gray), "--model", str(model), "--bands", "1,1,1")["fit"]
    assert fixed["fits"] and fixed["bands"] == [1, 1, 1]


def test_wrong_data_type(tmp_path, model):
    path = write_raster(tmp_path / "u16.tif", RGB.astype(np.uint16) * 200)
    result = run_glnet("info", str(path), "--model", str(model))
    assert result.exit_code == 2
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith("does not fit:") and "uint16" in verdict


def test_stage_one_model_does_not_fit(scene, model, tmp_path):
    stage1 = _resaved(model, tmp_path / "stage1.pt", stage=1)
    fit = check_fit(scene, stage1)
    assert not fit["fits"] and "stage 1" in fit["verdict"] and fit["plan"] is None
    assert run_glnet("info", str(scene), "--model", str(stage1)).exit_code == 2


def test_pixel_size_far_from_training_warns_but_fits(tmp_path, model):
    coarse = write_raster(tmp_path / "coarse.tif", RGB,
                          transform=DEFAULT_TRANSFORM @ DEFAULT_TRANSFORM.scale(20))
    fit = check_fit(coarse, _resaved(model, tmp_path / "gsd.pt", gsd=0.5))
    gsd = next(c for c in fit["checks"] if c["name"] == "pixel size")
    assert fit["fits"] and gsd["status"] == "warn" and "x20.00" in gsd["detail"]


def test_segment_refuses_and_warns_with_the_same_fit_check(tmp_path, model):
    """One check answers both: info reports it, segment raises its first error, warns the rest."""
    gsd_model = load_model(_resaved(model, tmp_path / "gsd.pt", gsd=0.5))
    segmenter = Segmenter(gsd_model, torch.device("cpu"))
    coarse = str(write_raster(tmp_path / "coarse.tif", RGB,
                              transform=DEFAULT_TRANSFORM @ DEFAULT_TRANSFORM.scale(20)))
    fit = scene_fit(coarse, gsd_model.info)
    assert fit.fits and fit.errors == []
    assert fit.warnings == [f"{coarse}: pixels are 10 units, the model was trained on 0.5; "
                            "results may suffer"]
    with pytest.warns(GlnetWarning) as warned:
        assert segmenter.inspect(coarse).bands == (1, 2, 3)
    assert [str(w.message) for w in warned] == fit.warnings

    gray = str(write_raster(tmp_path / "gray.tif", RGB[:1].astype(np.uint16),
                            transform=DEFAULT_TRANSFORM @ DEFAULT_TRANSFORM.scale(20)))
    fit = scene_fit(gray, gsd_model.info)
    assert not fit.fits and [c.status for c in fit.checks] == ["fail", "fail", "warn"]
    assert fit.errors[0] == (f"{gray}: has 1 band(s), the model needs 3 (choose them with "
                             "--bands, e.g. --bands 1,1,1)")
    assert fit.errors[1].startswith(f"{gray}: the model was trained on uint8 data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused: no warning about its pixel size first
        with pytest.raises(InputError) as refused:
            segmenter.inspect(gray)
    assert str(refused.value) == fit.errors[0]


# -- errors --------------------------------------------------------------------

def _one_error_line(result: Result, name: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("name", ["missing.tif", "missing.pt"])
def test_missing_file(tmp_path, name):
    line = _one_error_line(run_glnet("info", str(tmp_path / name)), name)
    assert "not found" in line or "no such file" in line


def test_not_a_raster(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    line = _one_error_line(run_glnet("info", path), "notes.txt")
    assert "not a raster GDAL can read" in line


def _truncated(path: Path, tiled: bool) -> Path:
    """A GeoTIFF cut in half: its header (at the start) reads fine, its last blocks are gone."""
    write_raster(path, RGB, tiled=tiled)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return path


@pytest.mark.parametrize("tiled, block", [(True, "TIFFReadEncodedTile() failed"),
                                          (False, "TIFFReadEncodedStrip() failed")])
def test_truncated_geotiff_is_an_error_not_a_description(tmp_path, tiled, block):
    path = _truncated(tmp_path / "cut.tif", tiled)
    line = _one_error_line(run_glnet("info", str(path)), "cut.tif")
    assert line.startswith(f"glnet: error: {path}: cannot read its pixels (band 1: IReadBlock "
                           "failed at X offset ")
    assert line.endswith(f"{block}); the file is truncated or corrupt: copy or download it "
                         "again")


def test_truncated_geotiff_does_not_fit(tmp_path, model):
    path = _truncated(tmp_path / "cut.tif", tiled=True)
    fit = check_fit(path, model)
    assert not fit["fits"]
    assert fit["verdict"].startswith("does not fit: cannot read its pixels (band 1: ")
    assert {c["name"]: c["status"] for c in fit["checks"]}["pixels"] == "fail"


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x00garbage" * 100)
    assert "model file" in _one_error_line(run_glnet("info", str(path)), "broken.pt")


def test_option_misuse(scene, model):
    assert run_glnet("info", str(model), "--model", str(model)).exit_code == 2
    assert run_glnet("info", str(scene), "--bands", "1,2,3").exit_code == 2


def test_help_has_an_example():
    result = run_glnet("info", "--help")
    assert result.exit_code == 0 and "Example:" in result.output
    assert "glnet info scene.tif --model model.pt" in result.output
