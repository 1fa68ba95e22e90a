"""``--dry-run`` and ``--batch-size auto``: a run's work and memory, judged before it runs.

The generic memory model (activations per crop, libraries, slack) lives in
:mod:`glnet_cli.inference.memory`; this module applies it to one prepared
network and one scene: the crops and tiles the engine holds in flight, the
empty crops a run would skip, the largest batch the budget allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from glnet_cli.device import DTYPES
from glnet_cli.inference.grid import ScenePlan
from glnet_cli.inference.memory import (
    MB,
    MEMORY_BUDGET_MB,
    MemoryEstimate,
    NetworkShape,
    auto_batch_size,
    estimate,
    largest_auto_batch,
    weight_bytes,
)
from glnet_cli.inference.reader import l2g_crop_count
from glnet_cli.io.model.checkpoint import ModelInfo
from glnet_cli.io.raster.read import BLOCK_CACHE_MB, SceneInfo, SceneReader
from glnet_cli.io.raster.windows import TILE_SIZE, Box
from models.glnet import GLNet


@dataclass
class PlanSummary:
    """``--dry-run``: what a run would do, without running the network."""

    scene: SceneInfo
    plan: ScenePlan
    stage: int
    crops_empty: int
    #: Network passes over crops: the main pass, plus the L2G pass at stage 3.
    crops_to_run: int
    #: The precision the network would compute in, and the crops per forward pass.
    precision: str
    batch_size: int
    memory: MemoryEstimate

    @property
    def estimated_peak_mb(self) -> float:
        return self.memory.host_mb

    @property
    def estimated_gpu_mb(self) -> Optional[float]:
        return self.memory.gpu_mb


class RunEstimator:
    """Work and memory of runs of one prepared network, in one precision, on one device."""

    def __init__(self, info: ModelInfo, model: GLNet, stage: int, precision: str,
                 overlap: int, device: torch.device) -> None:
        self.info = info
        self.stage = stage
        self.precision = precision
        self.overlap = overlap
        self.on_gpu = device.type == "cuda"
        self.network = NetworkShape(info.size_p, info.size_g,
                                    model.global_branch.backbone.out_channels,
                                    info.config.width, DTYPES[precision].itemsize, stage)
        self.weights = weight_bytes(model)

    def memory(self, scene_width: int, batch_size: int) -> MemoryEstimate:
        """Peak memory of a run over a scene ``scene_width`` pixels wide, by part.

        From this process as it stands (libraries and prepared model loaded), plus
        GDAL's capped block cache, the crops and tiles in flight and the network's
        activations (on the host, or on the GPU with the weights).
        """
        cfg = self.info.config
        size_p = self.info.size_p
        q = size_p // 4
        cached_crop = cfg.n_classes * q * q * 2 + size_p ** 2
        step = max(1, size_p - self.overlap)
        crops_in_flight = math.ceil(scene_width / step) * (
            math.ceil(self.info.context_size / step) // 2 + 2)
        tiles = 2 * TILE_SIZE ** 2 * (cfg.n_classes * 4 + 8)  # the tile being blended, its output
        return estimate(self.network, batch_size, self.weights,
                        crops_in_flight * cached_crop + tiles, BLOCK_CACHE_MB * MB, self.on_gpu)

    def auto_batch_size(self) -> int:
        """The largest batch worth its memory (:func:`largest_auto_batch`) that fits the budget.

        Judged for a scene one context block wide: wider scenes hold a few more
        crops in flight, which the budget's margin absorbs.
        """
        def fits(size: int) -> bool:
            memory = self.memory(self.info.context_size, size)
            gpu_mb = memory.gpu_mb
            peak = gpu_mb if gpu_mb is not None else memory.host_mb
            return peak <= MEMORY_BUDGET_MB
        return auto_batch_size(fits, largest_auto_batch(self.network, self.on_gpu))

    def summary(self, scene: SceneInfo, plan: ScenePlan, batch_size: int) -> PlanSummary:
        """The plan, an estimate of empty crops (from one small decimated mask read), memory."""
        empty = estimate_empty(scene, plan)
        runs = len(plan.crops) - empty + l2g_crop_count(plan, self.stage, self.overlap)
        return PlanSummary(scene, plan, self.stage, empty, runs, self.precision, batch_size,
                           self.memory(plan.width, batch_size))


def estimate_empty(scene: SceneInfo, plan: ScenePlan, longest: int = 1024) -> int:
    """Crops with no valid pixel, judged from one decimated read of the whole mask."""
    factor = max(1.0, max(scene.height, scene.width) / longest)
    shape = (max(1, round(scene.height / factor)), max(1, round(scene.width / factor)))
    with SceneReader(scene) as reader:
        valid = reader.read_decimated(Box(0, 0, scene.height, scene.width), shape).valid
    sy, sx = shape[0] / scene.height, shape[1] / scene.width
    empty = 0
    for crop in plan.crops:
        rows = slice(int(crop.row * sy), max(int(crop.row * sy) + 1, math.ceil(crop.bottom * sy)))
        cols = slice(int(crop.col * sx), max(int(crop.col * sx) + 1, math.ceil(crop.right * sx)))
        empty += not valid[rows, cols].any()
    return empty
