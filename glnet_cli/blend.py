"""Blending overlapping crop predictions into finished output tiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from glnet_cli.classes import IGNORE_INDEX
from glnet_cli.grid import Box, blend_weights


@dataclass
class CropResult:
    """One crop's class probabilities at the network's 1/4 resolution, and its valid pixels."""

    box: Box
    probs: torch.Tensor  # (n_classes, h/4, w/4), float16, CPU
    valid: np.ndarray  # (h, w) bool


@dataclass
class FinishedTile:
    box: Box
    classes: np.ndarray  # (h, w) uint8, IGNORE_INDEX where no valid input
    probabilities: Optional[np.ndarray]  # (n_classes, h, w) uint8 0..255, or None


class TileBlender:
    """Sums each crop's upsampled probabilities with weights that fade towards its edges.

    The argmax of the weighted sum is the class; dividing by the summed
    weights gives the blended probabilities. Pixels that no crop saw as valid
    get the nodata class.
    """

    def __init__(self, size_p: int, margin: int, n_classes: int, probabilities: bool) -> None:
        self.size_p = size_p
        self.n_classes = n_classes
        self.probabilities = probabilities
        self.weights = torch.from_numpy(blend_weights(size_p, margin))

    def finish(self, tile: Box, crops: Sequence[CropResult]) -> FinishedTile:
        total = torch.zeros((self.n_classes, tile.height, tile.width))
        weight_sum = torch.zeros((tile.height, tile.width))
        valid = np.zeros((tile.height, tile.width), dtype=bool)
        for crop in crops:
            part = tile.intersection(crop.box)
            if part is None:
                continue
            src = (slice(part.row - crop.box.row, part.bottom - crop.box.row),
                   slice(part.col - crop.box.col, part.right - crop.box.col))
            dst = (slice(part.row - tile.row, part.bottom - tile.row),
                   slice(part.col - tile.col, part.right - tile.col))
            region = upsample_region(crop.probs.float(), (crop.box.height, crop.box.width), *src)
            weight = self.weights[src]
            total[(slice(None),) + dst] += region * weight
            weight_sum[dst] += weight
            valid[dst] |= crop.valid[src]
        classes = total.argmax(dim=0).numpy().astype(np.uint8)
        classes[~valid] = IGNORE_INDEX
        probabilities = None
        if self.probabilities:
            blended = total / weight_sum.clamp_min(1e-6)
            probabilities = (blended.clamp(0, 1) * 255).round().numpy().astype(np.uint8)
            probabilities[:, ~valid] = 0
        return FinishedTile(tile, classes, probabilities)


def _linear_axis(size_out: int, size_in: int, part: slice) -> tuple[torch.Tensor, ...]:
    """Source indexes and weights of bilinear resizing (no corner alignment) along one axis."""
    out = torch.arange(part.start, part.stop, dtype=torch.float32)
    src = ((out + 0.5) * (size_in / size_out) - 0.5).clamp_min(0)
    low = src.floor().long().clamp_max(size_in - 1)
    high = (low + 1).clamp_max(size_in - 1)
    return low, high, src - low


def upsample_region(maps: torch.Tensor, size: tuple[int, int], rows: slice,
                    cols: slice) -> torch.Tensor:
    """``rows`` x ``cols`` of ``maps`` (C, h, w) resized bilinearly to ``size``.

    Equal to slicing ``F.interpolate(..., mode="bilinear", align_corners=False)``
    but computes only the region, so a crop spread over several output tiles
    is upsampled once in all rather than once per tile.
    """
    r0, r1, wr = _linear_axis(size[0], maps.shape[1], rows)
    c0, c1, wc = _linear_axis(size[1], maps.shape[2], cols)
    wr, wc = wr[:, None], wc[None, :]
    top = maps[:, r0] * (1 - wr) + maps[:, r1] * wr
    return top[:, :, c0] * (1 - wc) + top[:, :, c1] * wc
