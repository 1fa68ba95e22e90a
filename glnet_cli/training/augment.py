"""Deterministic augmentation of a training tile: a flip, quarter turns, brightness, contrast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glnet_cli.io.raster.windows import Box


@dataclass(frozen=True)
class Augment:
    """A flip, quarter turns and an optional brightness/contrast change of one tile.

    The geometric part is applied to whole-tile views and to crops alike: a crop
    is placed on the grid of the *augmented* tile, :meth:`source_box` says which
    window of the file holds it, and :meth:`apply` turns that window.
    """

    flip: bool = False
    #: Counter-clockwise quarter turns, as ``np.rot90``.
    turns: int = 0
    gain: float = 1.0
    bias: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator, color_jitter: bool = False) -> "Augment":
        flip, turns = bool(rng.integers(2)), int(rng.integers(4))
        if not color_jitter:
            return cls(flip, turns)
        return cls(flip, turns, float(rng.uniform(0.8, 1.2)), float(rng.uniform(-0.1, 0.1)))

    def shape(self, height: int, width: int) -> tuple[int, int]:
        return (width, height) if self.turns % 2 else (height, width)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Flip then turn the last two axes."""
        if self.flip:
            array = array[..., ::-1]
        return np.ascontiguousarray(np.rot90(array, self.turns, axes=(-2, -1)))

    def jitter(self, image: np.ndarray) -> np.ndarray:
        return image if (self.gain, self.bias) == (1.0, 0.0) else image * self.gain + self.bias

    def source_box(self, box: Box, height: int, width: int) -> Box:
        """The window of the (``height`` x ``width``) file that becomes ``box`` once applied."""
        for turn in reversed(range(self.turns)):
            # rot90 maps in[j, W - 1 - i] to out[i, j], W the width before this turn.
            before_width = height if turn % 2 else width
            box = Box(box.col, before_width - box.row - box.height, box.width, box.height)
        if self.flip:
            box = Box(box.row, width - box.col - box.width, box.height, box.width)
        return box
