"""glnet_cli/training/tiles.py: discovery, pairing and the checks of each pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import Affine

from glnet_cli.classes import DEEPGLOBE, generic_table
from glnet_cli.errors import InputError
from glnet_cli.training.tiles import PairProblem, discover_tiles
from tests.helpers import (
    DEFAULT_TRANSFORM,
    checked_tiles,
    make_tiles,
    tile_arrays,
    write_plain,
    write_raster,
)


def test_discovers_both_layouts(tmp_path):
    pairs, problems = discover_tiles(make_tiles(tmp_path / "a", 3))
    assert [p.name for p in pairs] == ["tile0.tif", "tile1.tif", "tile2.tif"] and not problems
    assert pairs[0].mask.endswith("masks/tile0.tif")
    pairs, problems = discover_tiles(make_tiles(tmp_path / "b", 2, layout="deepglobe"))
    assert [(Path(p.image).name, Path(p.mask).name) for p in pairs] == [
        ("0_sat.jpg", "0_mask.png"), ("1_sat.jpg", "1_mask.png")] and not problems


def test_lone_files_and_missing_folder(tmp_path):
    root = make_tiles(tmp_path / "t", 2)
    (root / "images" / "tile0.tif").rename(root / "images" / "orphan.tif")
    (root / "images" / "extra.png").write_bytes(b"")
    (root / "images" / "tile1.png").write_bytes(b"")
    pairs, problems = discover_tiles(root)
    assert [p.name for p in pairs] == ["tile1.png"]
    assert {str(p) for p in problems} == {"orphan.tif: image has no mask",
                                          "extra.png: image has no mask",
                                          "tile0.tif: mask has no image",
                                          "tile1.tif: same name as tile1.png; keep one of them"}
    with pytest.raises(InputError, match="nowhere: no such folder"):
        discover_tiles(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no tiles found"):
        discover_tiles(root / "images" / ".." / "..")


def test_every_bad_pair_is_named(tmp_path):
    root = make_tiles(tmp_path / "t", 6)
    image, mask = tile_arrays(64, 96, 9)
    write_raster(root / "masks" / "tile0.tif", mask[:, :80])  # size
    write_raster(root / "masks" / "tile1.tif", tile_arrays(80, 80, 1)[1],
                 transform=DEFAULT_TRANSFORM @ Affine.translation(3, 0))  # transform
    write_raster(root / "masks" / "tile2.tif", tile_arrays(96, 64, 2)[1], crs="EPSG:32617")
    bad_values = tile_arrays(64, 96, 3)[1]
    bad_values[0, 0] = 7
    write_raster(root / "masks" / "tile3.tif", bad_values)
    (root / "images" / "tile4.tif").write_bytes(b"not a tiff")
    tiles, problems, _, classes = checked_tiles(root, generic_table(3))
    assert [t.name for t in tiles] == ["tile5.tif"]
    reasons = {p.name: p.reason for p in problems}
    assert "mask is 80x64 pixels, image 96x64" in reasons["tile0.tif"]
    assert "transform differs" in reasons["tile1.tif"]
    assert "CRS EPSG:32617 differs" in reasons["tile2.tif"]
    assert "mask values 7 are not class ids (0..2)" in reasons["tile3.tif"]
    assert reasons["tile4.tif"].startswith("cannot read")


def test_colour_masks_need_a_table_and_known_colours(tmp_path):
    root = make_tiles(tmp_path / "dg", 2, layout="deepglobe")
    tiles, problems, bands, _ = checked_tiles(root, DEEPGLOBE)
    assert not problems and bands == (1, 2, 3)
    assert tiles[0].colour_mask and set(tiles[0].values) == {1, 2, 5}
    assert "give its class table with --classes" in checked_tiles(root, None)[1][0].reason
    rgb = np.zeros((3, 80, 80), np.uint8)
    rgb[:, 5, 5] = (1, 2, 3)
    write_plain(root / "1_mask.png", rgb)
    problem = checked_tiles(root, DEEPGLOBE)[1][0]
    assert problem.name == "1_sat.jpg"
    assert problem.reason.startswith("1_mask.png: colour (")
    assert problem.reason.endswith("is not in the class table")


def test_small_tiles_and_inferred_classes(tmp_path):
    root = make_tiles(tmp_path / "t", 2)
    tiles, problems, _, classes = checked_tiles(root, None, min_size=72)
    assert len(classes) == 3 and [p.name for p in problems] == ["tile0.tif"]
    assert "smaller than a local crop (72)" in problems[0].reason


def test_problem_text():
    assert str(PairProblem("a.tif", "mask has no image")) == "a.tif: mask has no image"
