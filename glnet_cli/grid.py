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
from typing import Iterator

import numpy as np


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


@dataclass(frozen=True)
class Box:
    """A rectangle in pixel coordinates: rows [row, row + height), cols [col, col + width)."""

    row: int
    col: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.row + self.height

    @property
    def right(self) -> int:
        return self.col + self.width

    def shift(self, row: int, col: int) -> "Box":
        return Box(self.row + row, self.col + col, self.height, self.width)

    def intersection(self, other: "Box") -> "Box | None":
        row, col = max(self.row, other.row), max(self.col, other.col)
        bottom, right = min(self.bottom, other.bottom), min(self.right, other.right)
        if bottom <= row or right <= col:
            return None
        return Box(row, col, bottom - row, right - col)


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

    A raised-cosine ramp over ``margin`` pixels on each side. Overlapping crops
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


def iter_windows(height: int, width: int, size: int) -> Iterator[Box]:
    """Non-overlapping windows of at most ``size`` covering the image, row by row."""
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Box(row, col, min(size, height - row), min(size, width - col))
