"""``glnet train --dry-run``: what a run would do and cost, from a few measured steps.

The run is set up exactly as it would train (tiles checked, model built,
recipe chosen); then each stage runs a few steps on a copy of the model, and
one validation tile is predicted, so the estimates come from this machine and
these tiles, not from a formula. Nothing is written.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass
from typing import Optional

import torch

from glnet_cli.device import autocast
from glnet_cli.inference.memory import peak_rss
from glnet_cli.training.budget import stage_allowance
from glnet_cli.training.config import TrainConfig
from glnet_cli.training.dataset import TileDataset, epoch_batches, iter_samples
from glnet_cli.training.distributed import distributed
from glnet_cli.training.setup import RunSetup, prepare_run
from glnet_cli.training.steps import STAGE_LOSSES, predict, step_inputs
from models.losses import build_loss

#: Steps timed per stage, after one untimed warm-up step.
MEASURED_STEPS = 2


@dataclass(frozen=True)
class StagePlan:
    """One stage's share of the run."""

    stage: int
    crops_per_tile: int
    steps_per_epoch: int
    seconds_per_step: float
    validation_seconds: float
    #: Epochs the run asks for, and what a --time-limit share leaves room for.
    epochs: int
    allowance: Optional[float]

    @property
    def epoch_seconds(self) -> float:
        return self.steps_per_epoch * self.seconds_per_step + self.validation_seconds

    @property
    def epochs_that_fit(self) -> Optional[int]:
        if self.allowance is None:
            return None
        return min(self.epochs, max(1, int(self.allowance // self.epoch_seconds)))


@dataclass(frozen=True)
class RunPlan:
    setup: RunSetup
    stages: list[StagePlan]
    peak_mb: float


def plan_run(config: TrainConfig) -> RunPlan:
    """Set the run up and time a few steps of each of its stages."""
    with distributed(config.device) as ctx:
        setup = prepare_run(config, ctx, show_download=False)
        plans = [_measure(setup, stage) for stage in setup.config.stages]
    return RunPlan(setup, plans, peak_rss() / 2**20)


def _measure(setup: RunSetup, stage: int) -> StagePlan:
    cfg, ctx = setup.config, setup.ctx
    model = copy.deepcopy(setup.model)
    params = model.set_stage(stage)
    optimizer = torch.optim.Adam(params, lr=cfg.lr[stage - 1])
    criterion = build_loss(cfg.loss, None, ignore_index=cfg.ignore_index).to(ctx.device)
    loss_module = STAGE_LOSSES[stage](model, criterion)
    cast = functools.partial(autocast, ctx.device, setup.precision)
    dataset = TileDataset(setup.train_tiles, setup.spec, crops=stage >= 2, train=True)
    batches = epoch_batches(len(dataset), cfg.batch_size, 0, cfg.seed)
    timed = []
    samples = list(iter_samples(dataset, batches[:1], 0))[0]
    for _ in range(MEASURED_STEPS + 1):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        _, inputs = step_inputs(stage, model, samples, ctx.device, cfg.sub_batch_size, cast)
        for args in inputs:
            with cast():
                loss = loss_module(*args)[0]
            loss.backward()
        optimizer.step()
        timed.append(time.perf_counter() - started)
    step = sorted(timed[1:])[len(timed[1:]) // 2]
    val_seconds = 0.0
    if setup.val_tiles:
        val = TileDataset(setup.val_tiles[:1], setup.spec, crops=stage >= 2, train=False)
        model.eval()
        started = time.perf_counter()
        with cast():
            predict(model, val[0], stage, ctx.device, cfg.sub_batch_size)
        val_seconds = (time.perf_counter() - started) * len(setup.val_tiles)
    allowance = (stage_allowance(cfg.time_limit, stage, cfg.stages, {})
                 if cfg.time_limit else None)
    crops = len(samples[0].boxes) if stage >= 2 else 0
    return StagePlan(stage, crops, len(batches), step, val_seconds, cfg.epochs[stage - 1],
                     allowance)
