"""Blending overlapping crop predictions into finished output tiles.

The work happens on the device that holds the crops' probabilities (a GPU
when there is one); only the uint8 classes (and uint8 probabilities, when
asked) of a finished tile come back to the host.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch

from glnet_cli.classes import IGNORE_INDEX
from glnet_cli.inference.grid import blend_weights
from glnet_cli.io.raster.windows import Box
from glnet_cli.io.raster.writer import FinishedTile


@dataclass
class CropResult:
    """One crop's class probabilities at the network's 1/4 resolution, and its valid pixels."""

    box: Box
    probs: torch.Tensor  # (n_classes, h/4, w/4), float16, on the device that computed it
    valid: np.ndarray  # (h, w) bool, host


class _Part(NamedTuple):
    """Where one crop meets one tile: rows and columns in the crop and in the tile."""

    crop: CropResult
    rows: slice
    cols: slice
    tile_rows: slice
    tile_cols: slice


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
        # As (columns, rows), like the sums; copied to each device once.
        self._weights_t = {torch.device("cpu"): torch.from_numpy(
            np.ascontiguousarray(blend_weights(size_p, margin).T))}

    def _weights_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._weights_t:  # a benign race: both threads store the same values
            self._weights_t[device] = self._weights_t[torch.device("cpu")].to(device)
        return self._weights_t[device]

    def finish(self, tile: Box, crops: Sequence[CropResult]) -> FinishedTile:
        parts = []
        valid = np.zeros((tile.height, tile.width), dtype=bool)
        for crop in crops:
            part = tile.intersection(crop.box)
            if part is None:
                continue
            p = _Part(crop, slice(part.row - crop.box.row, part.bottom - crop.box.row),
                      slice(part.col - crop.box.col, part.right - crop.box.col),
                      slice(part.row - tile.row, part.bottom - tile.row),
                      slice(part.col - tile.col, part.right - tile.col))
            parts.append(p)
            valid[p.tile_rows, p.tile_cols] |= crop.valid[p.rows, p.cols]
        device = crops[0].probs.device if crops else torch.device("cpu")
        total, weight_sum = self._sum(tile, parts, device)
        classes = _to_host(first_argmax(total).t())
        classes[~valid] = IGNORE_INDEX
        probabilities = None
        if weight_sum is not None:
            blended = total / weight_sum.clamp_min(1e-6)
            scaled = (blended.clamp(0, 1) * 255).round().to(torch.uint8)
            probabilities = _to_host(scaled.transpose(1, 2))
            probabilities[:, ~valid] = 0
        return FinishedTile(tile, classes, probabilities)

    def _sum(self, tile: Box, parts: list[_Part],
             device: torch.device) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The weighted sum (classes, columns, rows) and the summed weights if needed.

        Column-major, so that the column resize gathers whole contiguous rows:
        several times faster on a CPU than gathering single values.
        """
        total = torch.zeros((self.n_classes, tile.width, tile.height), device=device)
        weight_sum = (torch.zeros((tile.width, tile.height), device=device)
                      if self.probabilities else None)
        weights = self._weights_on(device)
        for p in parts:
            box = p.crop.box
            region = upsample_region_t(p.crop.probs, (box.height, box.width), p.rows, p.cols)
            weight = weights[p.cols, p.rows]
            total[:, p.tile_cols, p.tile_rows] += region.mul_(weight)
            if weight_sum is not None:
                weight_sum[p.tile_cols, p.tile_rows] += weight
        return total, weight_sum


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous host copy (the only transfer from a GPU: uint8 tiles)."""
    return np.ascontiguousarray(tensor.cpu().numpy())


def first_argmax(values: torch.Tensor) -> torch.Tensor:
    """``values.argmax(dim=0)`` as uint8 (first index on ties), computed class by class.

    A reduction over the outer dimension is slow on a CPU (~30x here); a
    running maximum over the (few) classes reads each value once, in
    contiguous order. The index moves by arithmetic, ``index += better * (k -
    index)`` (uint8 wrap-around cancels), which is several times faster than
    masked writes.
    """
    best = values[0].clone()
    index = torch.zeros(best.shape, dtype=torch.uint8, device=values.device)
    for k in range(1, values.shape[0]):
        better = values[k] > best
        index += better * (k - index)
        torch.maximum(best, values[k], out=best)
    return index


class _Axis(NamedTuple):
    """Bilinear resizing (no corner alignment) along one axis: source indexes and weights."""

    low: torch.Tensor
    high: torch.Tensor
    frac: torch.Tensor
    rest: torch.Tensor  # 1 - frac


@functools.lru_cache(maxsize=64)
def _axis(size_out: int, size_in: int, device: torch.device) -> _Axis:
    """Computed once per crop shape and device, as torch computes it."""
    out = torch.arange(size_out, dtype=torch.float32)
    src = ((out + 0.5) * (size_in / size_out) - 0.5).clamp_min(0)
    low = src.floor().long().clamp_max(size_in - 1)
    high = (low + 1).clamp_max(size_in - 1)
    frac = src - low
    return _Axis(*(t.to(device) for t in (low, high, frac, 1 - frac)))


def upsample_region_t(maps: torch.Tensor, size: tuple[int, int], rows: slice,
                      cols: slice) -> torch.Tensor:
    """``rows`` x ``cols`` of ``maps`` (C, h, w) resized bilinearly to ``size``, transposed.

    Returns float32 (C, len(cols), len(rows)), a new tensor. Equal to slicing
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` (up to
    rounding) but computes only the region, so a crop spread over several
    output tiles is resized once in all rather than once per tile. Rows are
    resized first, at the maps' width; then the transposed result's column
    gather copies whole rows.
    """
    along_rows = _axis(size[0], maps.shape[1], maps.device)
    along_cols = _axis(size[1], maps.shape[2], maps.device)
    top_row, bottom_row = _sources(size[0], maps.shape[1], rows)
    left, right = _sources(size[1], maps.shape[2], cols)
    narrow = maps[:, top_row:bottom_row + 1, left:right + 1].float()  # the cells used, once
    top = torch.index_select(narrow, 1, along_rows.low[rows] - top_row)
    top.mul_(along_rows.rest[rows, None])
    top.add_(torch.index_select(narrow, 1, along_rows.high[rows] - top_row)
             .mul_(along_rows.frac[rows, None]))
    top_t = top.transpose(1, 2).contiguous()
    region = torch.index_select(top_t, 1, along_cols.low[cols] - left)
    region.mul_(along_cols.rest[cols, None])
    region.add_(torch.index_select(top_t, 1, along_cols.high[cols] - left)
                .mul_(along_cols.frac[cols, None]))
    return region


def _sources(size_out: int, size_in: int, part: slice) -> tuple[int, int]:
    """The first and last input cells that outputs ``part`` read (from the host: no GPU sync)."""
    low, high = _host_axis(size_out, size_in)
    return low[part.start], high[part.stop - 1]


@functools.lru_cache(maxsize=64)
def _host_axis(size_out: int, size_in: int) -> tuple[list[int], list[int]]:
    axis = _axis(size_out, size_in, torch.device("cpu"))
    return axis.low.tolist(), axis.high.tolist()
