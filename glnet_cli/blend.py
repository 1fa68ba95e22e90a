"""Blending overlapping crop predictions into finished output tiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

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
            full = F.interpolate(crop.probs[None].float(), size=(crop.box.height, crop.box.width),
                                 mode="bilinear", align_corners=False)[0]
            src = (slice(part.row - crop.box.row, part.bottom - crop.box.row),
                   slice(part.col - crop.box.col, part.right - crop.box.col))
            dst = (slice(part.row - tile.row, part.bottom - tile.row),
                   slice(part.col - tile.col, part.right - tile.col))
            weight = self.weights[src]
            total[(slice(None),) + dst] += full[(slice(None),) + src] * weight
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
