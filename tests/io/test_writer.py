"""Tests for glnet_cli/io/writer.py's MaskWriter on its own, fed synthetic finished tiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from glnet_cli.classes import IGNORE_INDEX, generic_table
from glnet_cli.errors import OutputWriteError
from glnet_cli.io.raster.read import SceneInfo
from glnet_cli.io.raster.windows import TILE_SIZE, iter_windows
from glnet_cli.io.raster.writer import FinishedTile, MaskWriter, OutputFile, output_options
from tests.helpers import DEFAULT_CRS, DEFAULT_TRANSFORM, FILE_TOO_LARGE, file_size_limit

HEIGHT, WIDTH = 700, 600  # four tiles of TILE_SIZE, three of them cut by the edges
CLASSES = generic_table(4)
TAGS = {"GLNET_MODEL": "tiny.pt", "GLNET_BACKGROUND": "0"}
#: File size limits: the mask takes about 150 kB, its random probabilities about 1.7 MB.
MASK_DOES_NOT_FIT, MASK_FITS = 16 * 1024, 512 * 1024


def scene(crs: Optional[str] = DEFAULT_CRS) -> SceneInfo:
    return SceneInfo(path="scene.tif", width=WIDTH, height=HEIGHT, count=3, dtype="uint8",
                     crs=CRS.from_user_input(crs) if crs else None, transform=DEFAULT_TRANSFORM,
                     nodata=None, bands=(1, 2, 3), overviews=(), mask_flags=(),
                     block_shape=(HEIGHT, WIDTH))


@pytest.fixture(scope="module")
def expected() -> tuple[np.ndarray, np.ndarray]:
    """Class ids (some without a prediction) and four-band probabilities of the whole scene."""
    rng = np.random.default_rng(0)
    classes = rng.integers(0, len(CLASSES), (HEIGHT, WIDTH), dtype=np.uint8)
    classes[:40, :50] = IGNORE_INDEX
    probabilities = rng.integers(0, 256, (len(CLASSES), HEIGHT, WIDTH), dtype=np.uint8)
    return classes, probabilities


def tiles(expected, with_probabilities: bool = True) -> list[FinishedTile]:
    classes, probabilities = expected
    return [FinishedTile(box, classes[box.row:box.bottom, box.col:box.right].copy(),
                         probabilities[:, box.row:box.bottom, box.col:box.right].copy()
                         if with_probabilities else None)
            for box in iter_windows(HEIGHT, WIDTH, TILE_SIZE)]


def write(mask: Path, tiles_in_order: list[FinishedTile], probabilities: Optional[Path] = None,
          cog: bool = False, info: Optional[SceneInfo] = None) -> MaskWriter:
    writer = MaskWriter(OutputFile(str(mask), f"final/{mask.name}"), info or scene(), CLASSES,
                        TAGS, output_options([], cog),
                        OutputFile(str(probabilities), "final/probs.tif") if probabilities
                        else None)
    try:
        for tile in tiles_in_order:
            writer.write(tile)
        writer.finish()
    finally:
        writer.close()
    return writer


def test_tiles_in_any_order_give_the_same_mask(expected, tmp_path):
    in_order = tiles(expected)
    write(tmp_path / "a.tif", in_order)
    write(tmp_path / "b.tif", in_order[::-1])
    shuffled = [in_order[i] for i in np.random.default_rng(1).permutation(len(in_order))]
    write(tmp_path / "c.tif", shuffled)
    for name in ("a.tif", "b.tif", "c.tif"):
        with rasterio.open(tmp_path / name) as src:
            np.testing.assert_array_equal(src.read(1), expected[0])
            assert src.block_shapes == [(TILE_SIZE, TILE_SIZE)]
            assert src.compression.name == "deflate"


def test_the_mask_keeps_the_grid_and_says_what_its_classes_are(expected, tmp_path):
    write(tmp_path / "mask.tif", tiles(expected, with_probabilities=False))
    with rasterio.open(tmp_path / "mask.tif") as src:
        assert (src.count, src.dtypes[0], src.shape) == (1, "uint8", (HEIGHT, WIDTH))
        assert src.crs == CRS.from_user_input(DEFAULT_CRS)
        assert src.transform == DEFAULT_TRANSFORM
        assert src.nodata == IGNORE_INDEX
        colormap = src.colormap(1)
        for class_id, colour in CLASSES.colormap().items():
            assert colormap[class_id] == colour
        tags = src.tags()
        assert json.loads(tags["GLNET_CLASSES"]) == CLASSES.to_list()
        assert {key: tags[key] for key in TAGS} == TAGS
        assert src.descriptions == ("class",)


def test_a_scene_without_crs_gives_a_mask_without_one(expected, tmp_path):
    write(tmp_path / "mask.tif", tiles(expected, with_probabilities=False), info=scene(None))
    with rasterio.open(tmp_path / "mask.tif") as src:
        assert src.crs is None and src.transform == DEFAULT_TRANSFORM


def test_the_histogram_counts_every_pixel_written(expected, tmp_path):
    writer = write(tmp_path / "mask.tif", tiles(expected, with_probabilities=False))
    np.testing.assert_array_equal(writer.histogram,
                                  np.bincount(expected[0].ravel(), minlength=256))
    assert writer.histogram.sum() == HEIGHT * WIDTH


def test_probabilities_go_to_their_own_file(expected, tmp_path):
    write(tmp_path / "mask.tif", tiles(expected), tmp_path / "probs.tif")
    with rasterio.open(tmp_path / "probs.tif") as src:
        assert (src.count, src.dtypes[0], src.nodata) == (len(CLASSES), "uint8", None)
        np.testing.assert_array_equal(src.read(), expected[1])
        assert src.descriptions == tuple(f"p({name}) x 255" for name in CLASSES.names)
        assert json.loads(src.tags()["GLNET_CLASSES"]) == CLASSES.to_list()
        assert src.transform == DEFAULT_TRANSFORM
    with rasterio.open(tmp_path / "mask.tif") as src:
        np.testing.assert_array_equal(src.read(1), expected[0])


def test_cog_output_has_overviews_and_512_tiles(expected, tmp_path):
    write(tmp_path / "mask.tif", tiles(expected), tmp_path / "probs.tif", cog=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif", "probs.tif"]  # no scratch
    for name in ("mask.tif", "probs.tif"):
        with rasterio.open(tmp_path / name) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.block_shapes[0] == (TILE_SIZE, TILE_SIZE)
            assert src.overviews(1) == [2]
    with rasterio.open(tmp_path / "mask.tif") as src:
        np.testing.assert_array_equal(src.read(1), expected[0])
        assert src.nodata == IGNORE_INDEX and src.colormap(1)[1] == CLASSES.colormap()[1]


def test_a_full_disk_fails_with_the_files_user_name(expected, tmp_path):
    with file_size_limit(MASK_DOES_NOT_FIT), pytest.raises(OutputWriteError) as failure:
        write(tmp_path / "mask.tif", tiles(expected, with_probabilities=False))
    assert str(failure.value) == (f"final/mask.tif: writing failed: {FILE_TOO_LARGE}; "
                                  "nothing was written")


def test_probabilities_that_do_not_fit_name_their_file(expected, tmp_path):
    with file_size_limit(MASK_FITS), pytest.raises(OutputWriteError) as failure:
        write(tmp_path / "mask.tif", tiles(expected), tmp_path / "probs.tif")
    assert str(failure.value) == (f"final/probs.tif: writing failed: {FILE_TOO_LARGE}; "
                                  "nothing was written")
