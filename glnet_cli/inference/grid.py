"""Where crops and context blocks go, and how overlapping crops are blended.

GLNet places local crops on a regular grid over an image: as few crops as
cover it with at least ``min_overlap`` pixels shared between neighbours, the
last row and column snapped to the far edge. Large scenes are first cut into
context blocks, each the size the global branch saw in training, laid out with
the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glnet_cli.io.raster.windows import TILE_SIZE, Box, iter_windows


def crop_starts(length: int, size: int, min_overlap: int = 50) -> list[int]:
    """Start offsets of crops of ``size`` covering ``length`` pixels.

    Neighbours overlap by at least ``min_overlap`` pixels (the reference uses 50),
    and the last crop ends exactly at ``length``. A length no larger than one
    crop gets a single crop at 0 (the caller pads it).
    """
    if size <= 0:
        raise ValueError("crop size must be positive")
    if length <= size:
        return [0]
    if min_overlap >= size:
        raise ValueError(f"overlap {min_overlap} must be smaller than the crop size {size}")
    count = max(2, math.ceil((length - min_overlap) / (size - min_overlap)))
    step = (length - size) / (count - 1)
    return [int(round(i * step)) for i in range(count - 1)] + [length - size]


def crop_grid(height: int, width: int, size: int, min_overlap: int = 50) -> list[Box]:
    """All crops of an image, row by row; each is ``size`` square (or the image, if smaller)."""
    rows = crop_starts(height, size, min_overlap)
    cols = crop_starts(width, size, min_overlap)
    return [Box(r, c, min(size, height), min(size, width)) for r in rows for c in cols]


def top_lefts(crops: list[Box], height: int, width: int) -> list[tuple[float, float]]:
    """Crop positions as fractions of the image size, as GLNet's feature sharing wants them."""
    return [(c.row / height, c.col / width) for c in crops]


def blend_weights(size: int, margin: int) -> np.ndarray:
    """A (size, size) weight that is 1 in the middle and falls smoothly towards the edges.

    A raised-cosine ramp over ``margin`` pixels on each side (a margin of half the
    crop or more meets in the middle just short of 1). Overlapping crops
    summed with these weights (and divided by the summed weights) hand over
    from one crop to the next without a visible seam. Never exactly zero, so a
    pixel covered only by crop edges still gets a prediction.
    """
    margin = max(1, min(margin, size // 2))
    ramp = np.ones(size, dtype=np.float32)
    t = (np.arange(margin, dtype=np.float32) + 0.5) / margin
    edge = 0.5 - 0.5 * np.cos(np.pi * t)
    ramp[:margin] = edge
    ramp[size - margin:] = edge[::-1]
    ramp = np.maximum(ramp, 1e-3)
    return np.outer(ramp, ramp)


@dataclass(frozen=True)
class Block:
    """A context block: the global branch sees ``box`` resized to size_g."""

    box: Box
    #: Indexes (into :attr:`ScenePlan.crops`) of the crops that take their context here.
    crops: tuple[int, ...]


@dataclass(frozen=True)
class ScenePlan:
    """Where every block, crop and output tile of one scene goes."""

    height: int
    width: int
    size_p: int
    blocks: tuple[Block, ...]
    crops: tuple[Box, ...]
    tiles: tuple[Box, ...]
    #: For every tile, the crops that cover part of it.
    tile_crops: tuple[tuple[int, ...], ...]
    #: For every crop, the tiles it covers part of.
    crop_tiles: tuple[tuple[int, ...], ...]

    def block_crop_grid(self, block: Block, min_overlap: int) -> list[Box]:
        """The block's own crop grid (in scene coordinates), for the L2G pass."""
        return [c.shift(block.box.row, block.box.col)
                for c in crop_grid(block.box.height, block.box.width, self.size_p, min_overlap)]


def _margin(inner: Box, outer: Box) -> int:
    return min(inner.row - outer.row, inner.col - outer.col,
               outer.bottom - inner.bottom, outer.right - inner.right)


def plan_scene(height: int, width: int, size_p: int, context_size: int,
               min_overlap: int = 64, tile_size: int = TILE_SIZE) -> ScenePlan:
    """Blocks, crops and tiles for a ``height`` x ``width`` scene.

    A scene no larger than ``context_size`` is one block (the paper's setting:
    the whole image is the global view). A larger one is cut into square blocks
    of ``context_size``, so the global branch sees it at its training scale;
    blocks overlap by at least one crop, so every crop lies wholly inside some
    block, and it takes its context from the one where it sits furthest from
    the edges. A scene smaller than a crop gets one crop reaching past its edge.
    """
    if height <= 0 or width <= 0:
        raise ValueError("a scene needs at least one pixel")
    context = max(context_size, size_p)
    crops = [Box(r, c, size_p, size_p)
             for r in crop_starts(height, size_p, min_overlap)
             for c in crop_starts(width, size_p, min_overlap)]
    if height <= context and width <= context:
        block_boxes = [Box(0, 0, max(height, size_p), max(width, size_p))]
    else:
        block_overlap = min(context - 1, max(size_p, context // 4))
        block_boxes = [Box(r, c, context, context)
                       for r in crop_starts(max(height, context), context, block_overlap)
                       for c in crop_starts(max(width, context), context, block_overlap)]
    owner: dict[int, list[int]] = {i: [] for i in range(len(block_boxes))}
    for index, crop in enumerate(crops):
        best = max(range(len(block_boxes)), key=lambda b: _margin(crop, block_boxes[b]))
        if _margin(crop, block_boxes[best]) < 0:
            raise AssertionError(f"crop {crop} lies in no block")  # blocks overlap by >= 1 crop
        owner[best].append(index)
    blocks = tuple(Block(box, tuple(owner[i])) for i, box in enumerate(block_boxes))
    tiles = list(iter_windows(height, width, tile_size))
    tiles_per_row = math.ceil(width / tile_size)
    crop_tiles = []
    tile_crops: list[list[int]] = [[] for _ in tiles]
    for index, crop in enumerate(crops):
        bottom, right = min(crop.bottom, height), min(crop.right, width)
        touched = [r * tiles_per_row + c
                   for r in range(crop.row // tile_size, (bottom - 1) // tile_size + 1)
                   for c in range(crop.col // tile_size, (right - 1) // tile_size + 1)]
        crop_tiles.append(tuple(touched))
        for tile in touched:
            tile_crops[tile].append(index)
    return ScenePlan(height, width, size_p, blocks, tuple(crops), tuple(tiles),
                     tuple(tuple(t) for t in tile_crops), tuple(crop_tiles))
