"""Tests for glnet_cli/inference/grid.py (crops, blocks, tiles, blend weights) and the
window walk of glnet_cli/io/windows.py."""

from __future__ import annotations

import numpy as np
import pytest

from glnet_cli.inference.grid import blend_weights, crop_grid, crop_starts, plan_scene
from glnet_cli.io.raster.windows import Box, iter_windows


def covered(boxes, height: int, width: int) -> np.ndarray:
    """How many of ``boxes`` (clipped to the image) cover each pixel."""
    count = np.zeros((height, width), dtype=np.int64)
    for box in boxes:
        count[box.row:box.bottom, box.col:box.right] += 1
    return count


def inside(inner: Box, outer: Box) -> bool:
    return (outer.row <= inner.row and outer.col <= inner.col
            and inner.bottom <= outer.bottom and inner.right <= outer.right)


# -- crop_starts -----------------------------------------------------------------

@pytest.mark.parametrize("length, size, overlap", [
    (101, 50, 10), (508, 508, 50), (509, 508, 50), (1000, 256, 64), (2448, 508, 50),
    (97, 32, 31), (300, 100, 0)])
def test_crops_cover_the_length_with_the_least_overlap_and_end_flush(length, size, overlap):
    starts = crop_starts(length, size, overlap)
    assert starts[0] == 0
    assert starts[-1] + size == length  # the last crop ends exactly at the edge
    assert starts == sorted(set(starts))
    assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # overlap >= min
    assert covered([Box(0, s, 1, size) for s in starts], 1, length).min() >= 1


@pytest.mark.parametrize("length, size, overlap", [(1000, 256, 64), (2448, 508, 50),
                                                   (613, 100, 20)])
def test_one_crop_fewer_would_not_keep_the_overlap(length, size, overlap):
    count = len(crop_starts(length, size, overlap))
    assert count > 2
    fewer_step = (length - size) / (count - 2)  # the widest spacing one crop fewer allows
    assert size - fewer_step < overlap


@pytest.mark.parametrize("length", [1, 31, 32])
def test_an_image_no_larger_than_a_crop_gets_one_crop_at_zero(length):
    assert crop_starts(length, 32, 50) == [0]  # an overlap >= size does not matter here


def test_overlap_as_large_as_the_crop_is_refused():
    with pytest.raises(ValueError, match="overlap 32 must be smaller than the crop size 32"):
        crop_starts(100, 32, 32)
    with pytest.raises(ValueError, match="crop size must be positive"):
        crop_starts(100, 0)


def test_crop_grid_is_row_by_row_and_clipped_to_a_small_image():
    grid = crop_grid(100, 70, 64, 16)
    assert [(b.row, b.col) for b in grid] == [(r, c) for r in crop_starts(100, 64, 16)
                                              for c in crop_starts(70, 64, 16)]
    assert crop_grid(20, 30, 64) == [Box(0, 0, 20, 30)]


# -- plan_scene ------------------------------------------------------------------

PLANS = [  # height, width, size_p, context, min_overlap, tile_size
    (5000, 7000, 508, 2448, 64, 512),
    (700, 1300, 64, 256, 16, 128),
    (300, 200, 64, 512, 16, 128),  # one block
    (40, 50, 64, 256, 16, 32),  # smaller than one crop
]


@pytest.fixture(params=PLANS, ids=lambda p: "x".join(map(str, p[:2])))
def plan(request):
    height, width, size_p, context, overlap, tile_size = request.param
    return plan_scene(height, width, size_p, context, min_overlap=overlap, tile_size=tile_size)


def test_every_crop_has_one_block_and_lies_inside_it(plan):
    owners = sorted(index for block in plan.blocks for index in block.crops)
    assert owners == list(range(len(plan.crops)))
    for block in plan.blocks:
        for index in block.crops:
            assert inside(plan.crops[index], block.box)


def test_every_pixel_is_covered_by_a_crop_and_by_exactly_one_tile(plan):
    assert covered(plan.crops, plan.height, plan.width).min() >= 1
    assert (covered(plan.tiles, plan.height, plan.width) == 1).all()
    assert all(crop.height == crop.width == plan.size_p for crop in plan.crops)


def test_tile_crops_and_crop_tiles_are_inverses_that_name_every_overlap(plan):
    scene = Box(0, 0, plan.height, plan.width)
    for c, crop in enumerate(plan.crops):
        touched = {t for t, tile in enumerate(plan.tiles)
                   if tile.intersection(crop.intersection(scene)) is not None}
        assert set(plan.crop_tiles[c]) == touched
    pairs_by_crop = {(c, t) for c, tiles in enumerate(plan.crop_tiles) for t in tiles}
    pairs_by_tile = {(c, t) for t, crops in enumerate(plan.tile_crops) for c in crops}
    assert pairs_by_crop == pairs_by_tile
    assert all(plan.tile_crops)  # no tile waits for nothing


@pytest.mark.parametrize("height, width", [(256, 256), (100, 256), (256, 30)])
def test_a_scene_no_larger_than_the_context_is_one_block(height, width):
    plan = plan_scene(height, width, 64, 256, min_overlap=16)
    assert len(plan.blocks) == 1
    assert plan.blocks[0].box == Box(0, 0, max(height, 64), max(width, 64))


def test_a_larger_scene_gets_blocks_of_the_context_size():
    plan = plan_scene(700, 1300, 64, 256, min_overlap=16)
    assert len(plan.blocks) > 1
    assert {(b.box.height, b.box.width) for b in plan.blocks} == {(256, 256)}
    assert all(block.crops for block in plan.blocks)


def test_a_scene_smaller_than_a_crop_gets_one_crop_past_its_edge():
    plan = plan_scene(40, 50, 64, 256)
    assert plan.crops == (Box(0, 0, 64, 64),)
    assert plan.crop_tiles == ((0,),) and plan.tiles == (Box(0, 0, 40, 50),)


def test_a_scene_needs_a_pixel():
    with pytest.raises(ValueError, match="at least one pixel"):
        plan_scene(0, 10, 64, 256)


# -- blend_weights ---------------------------------------------------------------

@pytest.mark.parametrize("size, margin", [(64, 16), (65, 10), (65, 100), (8, 0)])
def test_blend_weights_are_symmetric_one_in_the_middle_and_never_zero(size, margin):
    w = blend_weights(size, margin)
    assert w.shape == (size, size) and w.dtype == np.float32
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    assert w[size // 2, size // 2] == 1.0 and w.max() == 1.0
    assert w.min() > 0
    edge_to_middle = w[size // 2, :size // 2 + 1]
    assert (np.diff(edge_to_middle) >= 0).all()  # rises from the edge to the middle


def test_a_margin_of_half_the_crop_or_more_ramps_all_the_way_to_the_middle():
    """An even crop then has no plateau: its middle pixels come closest to 1."""
    w = blend_weights(32, 100)
    np.testing.assert_array_equal(w, blend_weights(32, 16))
    assert w.max() == w[15, 15] == w[16, 16] and 0.99 < w.max() < 1.0
    assert w.min() > 0


def test_blend_weights_are_one_beyond_the_margin():
    w = blend_weights(64, 16)
    assert (w[16:48, 16:48] == 1.0).all()
    assert (w[:16, 32] < 1.0).all()


# -- iter_windows ----------------------------------------------------------------

@pytest.mark.parametrize("height, width, size", [(100, 70, 32), (64, 64, 32), (5, 300, 128),
                                                 (10, 10, 512)])
def test_windows_cover_the_raster_exactly_once_row_by_row(height, width, size):
    windows = list(iter_windows(height, width, size))
    assert (covered(windows, height, width) == 1).all()
    assert windows == sorted(windows, key=lambda b: (b.row, b.col))
    assert all(b.height <= size and b.width <= size for b in windows)
    assert all(b.bottom <= height and b.right <= width for b in windows)


def test_only_the_last_row_and_column_of_windows_are_smaller():
    windows = list(iter_windows(100, 70, 32))
    assert {b.height for b in windows if b.row < 96} == {32}
    assert {b.height for b in windows if b.row == 96} == {4}
    assert {b.width for b in windows if b.col < 64} == {32}
    assert {b.width for b in windows if b.col == 64} == {6}
    assert windows[-1] == Box(96, 64, 4, 6)
