"""The training loop: stages, epochs, steps, validation and a checkpoint after every epoch.

Each stage starts from the previous one's best epoch (by validation mIoU; its
last epoch without validation), as the reference does. After every epoch the
model file is written with the :class:`~glnet_cli.training.state.TrainingState`
(optimiser, scheduler and RNG states), so ``resume`` continues exactly where it
stopped; ``MODEL.best.pt`` holds the best epoch of the latest stage and
``MODEL.metrics.jsonl`` one line per epoch.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from glnet_cli.device import autocast
from glnet_cli.evaluation.metrics import ConfusionMatrix
from glnet_cli.io.checkpoint import ModelInfo, load_model, save_model
from glnet_cli.io.paths import atomic_output
from glnet_cli.progress_callback import ProgressCallback
from glnet_cli.training.dataset import TileDataset, epoch_batches, iter_samples
from glnet_cli.training.setup import RunSetup
from glnet_cli.training.state import EpochRecord
from glnet_cli.training.steps import STAGE_LOSSES, predict, step_inputs
from models.glnet import GLNet
from models.losses import FocalLoss

POLY_POWER = 0.9
FOCAL_GAMMA = 3.0

#: Called after each epoch's checkpoint is written; returning True stops the run there.
EpochCallback = Callable[[EpochRecord], Optional[bool]]


@dataclass
class TrainResult:
    """What a run left behind (on every rank; only rank 0 wrote files)."""

    output: str
    best: Optional[str]
    model: GLNet
    info: ModelInfo
    history: list[EpochRecord]
    is_main: bool
    finished: bool


def _optional(value: float) -> Optional[float]:
    return None if value is None or math.isnan(value) else float(value)


def _poly(step: int, total: int) -> float:
    return (1.0 - min(step, total - 1) / total) ** POLY_POWER


class TrainingLoop:
    """Trains the stages of a set-up run; ``progress`` and ``on_epoch`` run on rank 0 only."""

    def __init__(self, setup: RunSetup, progress: Optional[ProgressCallback] = None,
                 on_epoch: Optional[EpochCallback] = None) -> None:
        self.setup, self.config, self.ctx = setup, setup.config, setup.ctx
        self.model, self.state = setup.model, setup.state
        self.progress = progress if self.ctx.is_main else None
        self.on_epoch = on_epoch if self.ctx.is_main else None
        #: The best epoch's weights of the stage being trained (or just finished).
        self.best_state = None
        if self.state.best_stage == self.state.stage:
            self.best_state = load_model(setup.best_path).model.state_dict()
        self._autocast = functools.partial(autocast, self.ctx.device, self.config.precision)
        #: Files this run has written (it replaces them at every epoch).
        self._written: set[str] = set()

    def run(self) -> TrainResult:
        stage, epoch = self.state.stage, self.state.epoch
        if self.config.resume:
            self.state.restore_rng()
        elif self.ctx.is_main:  # files left by the run that --overwrite replaces
            for stale in (self.setup.best_path, self.setup.log_path):
                if os.path.exists(stale):
                    os.remove(stale)
        for current in self.config.stages:
            first = epoch if current == stage else 0
            if current < stage or first >= self.config.epochs[current - 1]:
                continue
            if self._train_stage(current, first):
                return self._result(finished=False)
        return self._result(finished=True)

    def _result(self, finished: bool) -> TrainResult:
        best = self.setup.best_path if self.setup.val_tiles else None
        return TrainResult(self.config.output, best, self.model, self.setup.info,
                           self.state.history, self.ctx.is_main, finished)

    def _train_stage(self, stage: int, first_epoch: int) -> bool:
        """Train one stage from ``first_epoch``; True if ``on_epoch`` asked to stop."""
        cfg, model, state = self.config, self.model, self.state
        resuming = first_epoch > 0
        if not resuming:
            if self.best_state is not None:
                model.load_state_dict(self.best_state)
            self.best_state, state.best_miou = None, -math.inf
        optimizer = torch.optim.Adam(model.set_stage(stage), lr=cfg.lr[stage - 1],
                                     weight_decay=cfg.weight_decay)
        epochs = cfg.epochs[stage - 1]
        steps = len(epoch_batches(len(self.setup.train_tiles), cfg.batch_size, 0, cfg.seed,
                                  self.ctx.rank, self.ctx.world_size))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(_poly, total=steps * epochs))
        scaler = torch.amp.GradScaler(
            "cuda", enabled=cfg.precision == "fp16" and self.ctx.device.type == "cuda")
        if resuming:
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
            if state.scaler and scaler.is_enabled():  # precision may change on resume
                scaler.load_state_dict(state.scaler)
        loss_module = self.ctx.wrap(STAGE_LOSSES[stage](model, FocalLoss(FOCAL_GAMMA)))
        dataset = TileDataset(self.setup.train_tiles, self.setup.spec, crops=stage >= 2,
                              train=True, color_jitter=cfg.color_jitter, seed=cfg.seed)
        model.stage = self.setup.info.stage = stage
        for epoch in range(first_epoch, epochs):
            started, lr = time.monotonic(), optimizer.param_groups[0]["lr"]
            model.train()
            loss, train_cm = self._train_epoch(stage, epoch, loss_module, optimizer, scheduler,
                                               scaler, dataset)
            self.ctx.broadcast_buffers(model)
            val = self._validate(stage)
            best = val is not None and val.miou > state.best_miou
            if best:
                state.best_miou = val.miou
                self.best_state = {k: v.detach().cpu().clone()
                                   for k, v in model.state_dict().items()}
            record = EpochRecord(stage, epoch + 1, epochs, loss, _optional(train_cm.miou), lr,
                                 time.monotonic() - started, best=best)
            if val is not None:
                record.val_miou, record.val_accuracy = _optional(val.miou), _optional(val.accuracy)
                record.val_iou = {n: _optional(v)
                                  for n, v in zip(self.setup.spec.classes.names, val.iou)}
            state.history.append(record)
            if self.ctx.is_main:
                self._save(stage, epoch + 1, best, optimizer, scheduler, scaler)
            stop = bool(self.on_epoch(record)) if self.on_epoch else False
            if self.ctx.any(stop):
                return True
        return False

    def _train_epoch(self, stage: int, epoch: int, loss_module: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: Any,
                     scaler: torch.amp.GradScaler, dataset: TileDataset
                     ) -> tuple[float, ConfusionMatrix]:
        cfg, ctx = self.config, self.ctx
        batches = epoch_batches(len(dataset), cfg.batch_size, epoch, cfg.seed, ctx.rank,
                                ctx.world_size)
        scores = ConfusionMatrix(len(self.setup.spec.classes))
        total, count = 0.0, 0
        for step, batch in enumerate(iter_samples(dataset, batches, cfg.num_workers), 1):
            optimizer.zero_grad(set_to_none=True)
            units, inputs = step_inputs(stage, self.model, batch, ctx.device,
                                        cfg.sub_batch_size, self._autocast)
            for unit, args in enumerate(inputs, 1):
                with ctx.sync(loss_module, last=unit == units):
                    with self._autocast():
                        loss, logits, target = loss_module(*args)
                    scaler.scale(loss).backward()
                total, count = total + loss.item(), count + 1
                scores.update(target.cpu().numpy(), logits.argmax(1).cpu().numpy())
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if self.progress:
                self.progress(step, len(batches), stage=f"{stage}",
                              epoch=f"{epoch + 1}/{cfg.epochs[stage - 1]}",
                              loss=total / count, miou=scores.miou)
        summed = ctx.all_sum(np.array([total, count], dtype=np.float64))
        scores = ConfusionMatrix.from_array(ctx.all_sum(scores.as_array()))
        return float(summed[0] / max(summed[1], 1)), scores

    def _validate(self, stage: int) -> Optional[ConfusionMatrix]:
        """Scores of the whole validation set; each rank predicts its share of tiles."""
        if not self.setup.val_tiles:
            return None
        ctx, cfg = self.ctx, self.config
        dataset = TileDataset(self.setup.val_tiles, self.setup.spec, crops=stage >= 2,
                              train=False)
        mine = [[i] for i in range(ctx.rank, len(dataset), ctx.world_size)]
        scores = ConfusionMatrix(len(self.setup.spec.classes))
        self.model.eval()
        for (sample,) in iter_samples(dataset, mine, cfg.num_workers):
            with self._autocast():
                pred = predict(self.model, sample, stage, ctx.device, cfg.sub_batch_size)
            scores.update(sample.label.numpy(), pred.cpu().numpy())
        self.model.train()
        return ConfusionMatrix.from_array(ctx.all_sum(scores.as_array()))

    def _save(self, stage: int, epoch: int, best: bool, optimizer: torch.optim.Optimizer,
              scheduler: Any, scaler: torch.amp.GradScaler) -> None:
        """Best file first, then the last-epoch file with the state to resume from, then the log."""
        state, info, setup = self.state, self.setup.info, self.setup
        last = state.history[-1]
        info.provenance["epochs_done"] = {
            str(s): max(r.epoch for r in state.history if r.stage == s)
            for s in sorted({r.stage for r in state.history})}
        info.provenance["metrics"] = {"val_miou": last.val_miou,
                                      "val_accuracy": last.val_accuracy,
                                      "val_iou": last.val_iou, "train_loss": last.train_loss}
        if best:
            save_model(setup.best_path, self.model, info,
                       overwrite=self._may_replace(setup.best_path))
        state.stage, state.epoch = stage, epoch
        state.optimizer, state.scheduler = optimizer.state_dict(), scheduler.state_dict()
        state.scaler = scaler.state_dict()
        state.best_stage = stage if self.best_state is not None else None
        state.capture_rng()
        save_model(self.config.output, self.model, info, training_state=state.to_dict(),
                   overwrite=self._may_replace(self.config.output))
        with atomic_output(setup.log_path, overwrite=self._may_replace(setup.log_path)) as tmp, \
                open(tmp, "w", encoding="utf-8") as f:
            f.writelines(state.log_lines())

    def _may_replace(self, path: str) -> bool:
        """Whether writing ``path`` may replace a file there.

        The run's own files, yes; before its first write, only under
        ``--overwrite`` or ``--resume``: a file that appeared since the start
        (another run writing the same model) is then refused, not replaced.
        """
        replace = self.config.overwrite or self.config.resume or path in self._written
        self._written.add(path)
        return replace
