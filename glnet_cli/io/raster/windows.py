"""Pixel rectangles and the grids of windows that every windowed read and write walks.

One :class:`Box` type serves the crop grid, the readers and the writers; it
turns into a rasterio ``Window`` in one place, and :func:`iter_windows` is the
one row-by-row walk over a raster (output tiles, evaluation, vectorisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from rasterio.windows import Window

#: Edge of the blocks masks are written in, and of the tiles the engine finishes one by one:
#: the same number, so a finished tile is whole blocks of the output file.
TILE_SIZE = 512


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

    @property
    def window(self) -> Window:
        """The same rectangle as rasterio wants it (column first)."""
        return Window(self.col, self.row, self.width, self.height)

    def shift(self, row: int, col: int) -> "Box":
        return Box(self.row + row, self.col + col, self.height, self.width)

    def intersection(self, other: "Box") -> "Box | None":
        row, col = max(self.row, other.row), max(self.col, other.col)
        bottom, right = min(self.bottom, other.bottom), min(self.right, other.right)
        if bottom <= row or right <= col:
            return None
        return Box(row, col, bottom - row, right - col)


def iter_windows(height: int, width: int, size: int) -> Iterator[Box]:
    """Non-overlapping windows of at most ``size`` covering the image, row by row."""
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Box(row, col, min(size, height - row), min(size, width - col))
