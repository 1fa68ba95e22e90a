"""glnet_cli/training/tile_set.py: problems settled at once, classes, input scaling."""

from __future__ import annotations

import numpy as np
import pytest

from glnet_cli.errors import DataError
from glnet_cli.io.model.checkpoint import InputScaling
from glnet_cli.training.tile_set import measure_scaling, settle_problems
from glnet_cli.training.tiles import PairProblem
from tests.helpers import checked_tiles, make_tiles, write_raster


def test_many_bad_pairs_are_one_line_with_the_first_few(tmp_path, caplog):
    """16 tiles smaller than a crop: one error (count, three names, where the rest are)."""
    problems = [PairProblem(f"t{i:02d}.tif", "tile is 20x20 pixels, smaller than a local crop "
                                             "(32); use a smaller --size-p") for i in range(16)]
    caplog.set_level("INFO", logger="glnet_cli.training.tile_set")
    with pytest.raises(DataError) as err:
        settle_problems(problems, False, "tiles", print)
    assert str(err.value) == (
        "tiles: 16 tile pair(s) cannot be used (fix them, or skip them with --skip-bad): "
        "t00.tif: tile is 20x20 pixels, smaller than a local crop (32); use a smaller --size-p; "
        "t01.tif: tile is 20x20 pixels, smaller than a local crop (32); use a smaller --size-p; "
        "t02.tif: tile is 20x20 pixels, smaller than a local crop (32); use a smaller --size-p; "
        "and 13 more ('glnet -v train ...' lists them all)")
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"cannot use t{i:02d}.tif" for i in range(16)]
    warned = []
    settle_problems(problems[:2], True, "tiles", warned.append)
    assert warned == ["tiles: skipping 2 tile pair(s) that cannot be used: t00.tif: tile is "
                      "20x20 pixels, smaller than a local crop (32); use a smaller --size-p; "
                      "t01.tif: tile is 20x20 pixels, smaller than a local crop (32); use a "
                      "smaller --size-p"]


def test_scaling(tmp_path):
    tiles, _, _, _ = checked_tiles(make_tiles(tmp_path / "t", 2))
    assert measure_scaling(tiles, (1, 2, 3)) == InputScaling.fixed("uint8", 3)
    root = tmp_path / "u16"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    values = np.arange(100 * 100, dtype=np.uint16).reshape(1, 100, 100)
    values[0, :, :5] = 0
    write_raster(root / "images" / "a.tif", values, nodata=0)
    write_raster(root / "masks" / "a.tif", np.zeros((100, 100), np.uint8))
    tiles, _, _, _ = checked_tiles(root)
    scaling = measure_scaling(tiles, (1,))
    assert scaling.mode == "stats" and scaling.dtype == "uint16"
    assert 150 < scaling.offset[0] < 400 and 9700 < scaling.offset[0] + 1 / scaling.scale[0] < 9900


def test_scaling_leaves_out_what_segment_finds_invalid(tmp_path):
    """NaN in a float image and pixels under an alpha of 0: not in the statistics."""
    root = tmp_path / "t"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    values = np.tile(np.arange(100, dtype=np.float32), (100, 1))[None]
    values[0, :, 50:] = np.nan
    write_raster(root / "images" / "a.tif", values)
    write_raster(root / "masks" / "a.tif", np.zeros((100, 100), np.uint8))
    tiles, _, _, _ = checked_tiles(root)
    scaling = measure_scaling(tiles, (1,))
    low, high = np.percentile(np.arange(50), [2, 98])
    assert np.allclose([scaling.offset[0], scaling.scale[0]], [low, 1 / (high - low)])
    image = np.full((4, 100, 100), 5000, np.uint16)
    image[:3, :, :50] = 1
    image[3, :, :50] = 0
    write_raster(root / "images" / "a.tif", image, photometric="RGB", alpha="YES")
    tiles, _, bands, _ = checked_tiles(root)
    assert bands == (1, 2, 3)
    assert measure_scaling(tiles, bands).offset == [5000.0] * 3
