"""The tile scheduler: each tile handed out once, complete; crops freed when no tile needs them."""

from __future__ import annotations

import random
import weakref

import numpy as np
import pytest
import torch

from glnet_cli.inference.blend import CropResult
from glnet_cli.inference.grid import ScenePlan, plan_scene
from glnet_cli.inference.scheduler import TileScheduler


@pytest.fixture(scope="module")
def plan() -> ScenePlan:
    """Crops of 32 px over 40 px tiles: most crops touch several tiles, most tiles several crops."""
    plan = plan_scene(100, 130, 32, 64, 8, tile_size=40)
    assert len(plan.tiles) == 12 and max(map(len, plan.crop_tiles)) == 4
    return plan


def _result(plan: ScenePlan, crop: int) -> CropResult:
    return CropResult(plan.crops[crop], torch.zeros(1, 8, 8, dtype=torch.float16),
                      np.ones((32, 32), dtype=bool))


@pytest.mark.parametrize("seed", range(5))
def test_every_tile_once_with_exactly_its_crops_after_its_last_crop(plan, seed):
    rng = random.Random(seed)
    order = list(range(len(plan.crops)))
    rng.shuffle(order)
    skipped = set(rng.sample(order, len(order) // 3))
    index_of = {box: i for i, box in enumerate(plan.crops)}
    scheduler = TileScheduler(plan)
    handed: dict[int, list[int]] = {}
    done: set[int] = set()
    for crop in order:
        if crop not in skipped:
            scheduler.add(crop, _result(plan, crop))
        done.add(crop)
        for box, results in scheduler.done(crop):
            tile = plan.tiles.index(box)
            assert tile not in handed, "a tile was handed out twice"
            assert crop in plan.tile_crops[tile]  # completed by the crop just done...
            assert set(plan.tile_crops[tile]) <= done  # ...the last of its crops
            handed[tile] = [index_of[r.box] for r in results]
    assert sorted(handed) == list(range(len(plan.tiles)))
    for tile, crops in handed.items():
        assert crops == [c for c in plan.tile_crops[tile] if c not in skipped]


def test_a_tile_of_skipped_crops_alone_is_handed_out_empty(plan):
    scheduler = TileScheduler(plan)
    finished = [tile for crop in range(len(plan.crops)) for tile in scheduler.done(crop)]
    assert len(finished) == len(plan.tiles)
    assert all(results == [] for _, results in finished)


def test_a_crop_is_dropped_once_no_tile_needs_it(plan):
    scheduler = TileScheduler(plan)
    alive = {}
    tiles_handed: set[int] = set()
    for crop in range(len(plan.crops)):
        result = _result(plan, crop)
        alive[crop] = weakref.ref(result)
        scheduler.add(crop, result)
        del result
        tiles_handed.update(plan.tiles.index(box) for box, _ in scheduler.done(crop))
        for seen, ref in alive.items():
            needed = any(t not in tiles_handed for t in plan.crop_tiles[seen])
            assert (ref() is not None) == needed, f"crop {seen} after crop {crop}"
    assert all(ref() is None for ref in alive.values())
