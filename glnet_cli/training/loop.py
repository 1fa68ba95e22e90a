"""The training loop: stages, epochs, steps, validation and a checkpoint after every epoch.

Each stage starts from the previous one's best epoch (by the ``--monitor``
score; its last epoch without validation), as the reference does; stage 3
replaces ``MODEL.best.pt`` only where it beats stage 2's best. A stage
ends after its epochs, when its share of ``--time-limit`` is spent, or after
``--patience`` epochs without a better score. After every epoch the model
file is written with the :class:`~glnet_cli.training.state.TrainingState`
(optimiser, progress and RNG states), so ``resume`` continues exactly where it
stopped; ``MODEL.best.pt`` holds the best epoch of the latest stage (of stages 2 and 3),
``MODEL.metrics.jsonl`` one line per epoch, and ``MODEL.curves.png`` and
``MODEL.preview.png`` show the run so far.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from glnet_cli.device import autocast
from glnet_cli.errors import InputError
from glnet_cli.evaluation.metrics import ConfusionMatrix
from glnet_cli.io.model.checkpoint import ModelInfo, load_model, save_model
from glnet_cli.io.paths import write_text
from glnet_cli.progress_callback import ProgressCallback
from glnet_cli.training.budget import StageClock, lr_factor, stage_allowance
from glnet_cli.training.dataset import TileDataset, epoch_batches, iter_samples
from glnet_cli.training.setup import RunSetup
from glnet_cli.training.state import EpochRecord
from glnet_cli.training.steps import STAGE_LOSSES, step_inputs
from glnet_cli.training.validation import Validation, better, fill_record, signed, validate
from models.glnet import GLNet
from models.losses import build_loss

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


@dataclass
class _Stage:
    """What one stage trains with."""

    number: int
    optimizer: torch.optim.Optimizer
    clock: StageClock
    scaler: torch.amp.GradScaler
    loss_module: torch.nn.Module
    dataset: TileDataset


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
            self.best_state = load_model(setup.files.best).model.state_dict()
        self._autocast = functools.partial(autocast, self.ctx.device, setup.precision)
        weights = setup.class_weights
        self.criterion = build_loss(
            self.config.loss, None if weights is None else torch.tensor(
                weights, dtype=torch.float32, device=self.ctx.device),
            ignore_index=self.config.ignore_index)
        #: Files this run has written (it replaces them at every epoch).
        self._written: set[str] = set()
        #: Seconds the last validation and step took: kept free at the end of a timed stage.
        self._val_seconds = self._step_seconds = 0.0

    def run(self) -> TrainResult:
        stage, epoch = self.state.stage, self.state.epoch
        if self.config.resume:
            self.state.restore_rng()
        elif self.ctx.is_main:  # files left by the run that --overwrite replaces
            for stale in self.setup.files.companions:
                if os.path.exists(stale):
                    os.remove(stale)
        for current in self.config.stages:
            first = epoch if current == stage else 0
            done = current == stage and self.state.stage_finished
            if current < stage or done or first >= self.config.epochs[current - 1]:
                continue
            if self._train_stage(current, first):
                return self._result(finished=False)
        return self._result(finished=True)

    def _result(self, finished: bool) -> TrainResult:
        best = self.setup.files.best if self.setup.val_tiles else None
        return TrainResult(self.config.output, best, self.model, self.setup.info,
                           self.state.history, self.ctx.is_main, finished)

    def _begin_stage(self, number: int, resuming: bool) -> _Stage:
        cfg, model, state = self.config, self.model, self.state
        if not resuming:
            if self.best_state is not None:
                model.load_state_dict(self.best_state)
            if number == 2 and self.setup.recipe.local_from_global and self.setup.info.stage < 2:
                model.local_from_global()
            self.best_state = None
            if number < 3 or not any(r.stage == 2 for r in state.history):
                # Stage 3 must beat stage 2's best to replace MODEL.best.pt: both segment
                # whole scenes, and a fresh L2G branch can need longer than its share.
                state.best_miou = -math.inf
        optimizer = torch.optim.Adam(model.set_stage(number), lr=cfg.lr[number - 1],
                                     weight_decay=cfg.weight_decay)
        steps = len(epoch_batches(len(self.setup.train_tiles), cfg.batch_size, 0, cfg.seed,
                                  self.ctx.rank, self.ctx.world_size))
        allowance = None
        if cfg.time_limit:  # the set-up of this run counts against the limit too
            allowance = stage_allowance(cfg.time_limit - self.setup.seconds, number, cfg.stages,
                                        state.stage_seconds)
        done = state.scheduler or {} if resuming else {}
        clock = StageClock(steps * cfg.epochs[number - 1], allowance,
                           int(done.get("steps", done.get("last_epoch", 0))),
                           float(state.stage_seconds.get(number, 0.0)) if resuming else 0.0)
        scaler = torch.amp.GradScaler(
            "cuda", enabled=self.setup.precision == "fp16" and self.ctx.device.type == "cuda")
        if resuming:
            if state.optimizer is None:  # every epoch's checkpoint holds one
                raise InputError(f"{cfg.output}: holds no optimiser state to --resume")
            optimizer.load_state_dict(state.optimizer)
            if state.scaler and scaler.is_enabled():  # precision may change on resume
                scaler.load_state_dict(state.scaler)
        loss_module = self.ctx.wrap(STAGE_LOSSES[number](model, self.criterion))
        dataset = TileDataset(self.setup.train_tiles, self.setup.spec, crops=number >= 2,
                              train=True, color_jitter=cfg.color_jitter, seed=cfg.seed)
        model.stage = self.setup.info.stage = number
        return _Stage(number, optimizer, clock, scaler, loss_module, dataset)

    def _train_stage(self, number: int, first_epoch: int) -> bool:
        """Train one stage from ``first_epoch``; True if ``on_epoch`` asked to stop."""
        cfg, state = self.config, self.state
        stage = self._begin_stage(number, resuming=first_epoch > 0)
        epochs = cfg.epochs[number - 1]
        for epoch in range(first_epoch, epochs):
            started, lr = time.monotonic(), stage.optimizer.param_groups[0]["lr"]
            self.model.train()
            loss, train_cm = self._train_epoch(stage, epoch)
            self.ctx.broadcast_buffers(self.model)
            val = self._validate(number)
            record = EpochRecord(number, epoch + 1, epochs, loss, _optional(train_cm.miou), lr,
                                 time.monotonic() - started)
            if val is not None:
                fill_record(record, val, cfg.monitor, self.setup.spec.classes.names)
                record.best = better(cfg.monitor, record.monitor, state.best_miou)
            if record.best and record.monitor is not None:  # a better score is a score
                state.best_miou = signed(cfg.monitor, record.monitor)
                self.best_state = {k: v.detach().cpu().clone()
                                   for k, v in self.model.state_dict().items()}
            state.history.append(record)  # before _stage_end: patience counts this epoch
            record.stage_end = self._stage_end(stage, epoch + 1 == epochs, number)
            state.stage_finished = record.stage_end is not None
            state.stage_seconds[number] = stage.clock.seconds
            if self.ctx.is_main:
                self._save(stage, epoch + 1, record.best, val)
            stop = bool(self.on_epoch(record)) if self.on_epoch else False
            if self.ctx.any(stop):
                return True
            if record.stage_end:
                break
        return False

    def _stage_end(self, stage: _Stage, last_epoch: bool, number: int) -> Optional[str]:
        """Why the stage ends after this epoch, the last of the history (None: it goes on)."""
        if last_epoch:
            return "epochs"
        if self.ctx.any(stage.clock.out_of_time(self._val_seconds + self._step_seconds)):
            return "time"
        patience = self.config.patience
        records = [r for r in self.state.history if r.stage == number]
        if patience and self.setup.val_tiles:
            best_at = max((i for i, r in enumerate(records) if r.best), default=-1)
            if len(records) - 1 - best_at >= patience:
                return "patience"
        return None

    def _train_epoch(self, stage: _Stage, epoch: int) -> tuple[float, ConfusionMatrix]:
        cfg, ctx, recipe = self.config, self.ctx, self.setup.recipe
        batches = epoch_batches(len(stage.dataset), cfg.batch_size, epoch, cfg.seed, ctx.rank,
                                ctx.world_size, weights=self.setup.tile_probabilities)
        scores = ConfusionMatrix(len(self.setup.spec.classes))
        total, count = 0.0, 0
        base_lr = cfg.lr[stage.number - 1]
        step_started = time.monotonic()
        for step, batch in enumerate(iter_samples(stage.dataset, batches, cfg.num_workers), 1):
            for group in stage.optimizer.param_groups:
                group["lr"] = base_lr * lr_factor(stage.clock.progress, recipe.warmup,
                                                  recipe.schedule)
            stage.optimizer.zero_grad(set_to_none=True)
            units, inputs = step_inputs(stage.number, self.model, batch, ctx.device,
                                        cfg.sub_batch_size, self._autocast)
            for unit, args in enumerate(inputs, 1):
                with ctx.sync(stage.loss_module, last=unit == units):
                    with self._autocast():
                        loss, logits, target = stage.loss_module(*args)
                    stage.scaler.scale(loss).backward()
                total, count = total + loss.item(), count + 1
                scores.update(target.cpu().numpy(), logits.argmax(1).cpu().numpy())
            stage.scaler.step(stage.optimizer)
            stage.scaler.update()
            stage.clock.steps += 1
            if self.progress:
                self.progress(step, len(batches), stage=f"{stage.number}",
                              epoch=f"{epoch + 1}/{cfg.epochs[stage.number - 1]}",
                              loss=total / count, miou=scores.miou)
            self._step_seconds, step_started = time.monotonic() - step_started, time.monotonic()
            if ctx.any(stage.clock.out_of_time(self._val_seconds + self._step_seconds)):
                break  # no time for another step and a validation: validate what there is
        summed = ctx.all_sum(np.array([total, count], dtype=np.float64))
        scores = ConfusionMatrix.from_array(ctx.all_sum(scores.as_array()))
        return float(summed[0] / max(summed[1], 1)), scores

    def _validate(self, stage: int) -> Optional[Validation]:
        if not self.setup.val_tiles:
            return None
        started = time.monotonic()
        dataset = TileDataset(self.setup.val_tiles, self.setup.spec, crops=stage >= 2,
                              train=False)
        val = validate(self.model, dataset, stage, self.criterion, self.ctx,
                       self.config.sub_batch_size, self.config.num_workers, self._autocast)
        self._val_seconds = time.monotonic() - started
        return val

    def _save(self, stage: _Stage, epoch: int, best: bool, val: Optional[Validation]) -> None:
        """Best file first, then the last-epoch file with the state to resume from, the log
        and the pictures."""
        state, info, files = self.state, self.setup.info, self.setup.files
        last = state.history[-1]
        info.provenance["epochs_done"] = {
            str(s): max(r.epoch for r in state.history if r.stage == s)
            for s in sorted({r.stage for r in state.history})}
        info.provenance["metrics"] = {"val_miou": last.val_miou, "monitor": last.monitor,
                                      "val_accuracy": last.val_accuracy,
                                      "val_iou": last.val_iou, "train_loss": last.train_loss}
        if best:
            save_model(files.best, self.model, info, overwrite=self._may_replace(files.best))
        state.stage, state.epoch = stage.number, epoch
        state.optimizer, state.scheduler = stage.optimizer.state_dict(), stage.clock.state()
        state.scaler = stage.scaler.state_dict()
        state.best_stage = stage.number if self.best_state is not None else None
        state.capture_rng()
        save_model(self.config.output, self.model, info, training_state=state.to_dict(),
                   overwrite=self._may_replace(self.config.output))
        write_text(files.log, "".join(state.log_lines()), overwrite=self._may_replace(files.log))
        self._draw(val)

    def _draw(self, val: Optional[Validation]) -> None:
        from glnet_cli.training.pictures import write_curves, write_preview

        files = self.setup.files
        write_curves(self.state.history, self.config.monitor, files.curves)
        if val is not None and val.previews:
            write_preview(val.previews, self.setup.spec.classes, files.preview,
                          self.config.ignore_index)

    def _may_replace(self, path: str) -> bool:
        """Whether writing ``path`` may replace a file there.

        The run's own files, yes; before its first write, only under
        ``--overwrite`` or ``--resume``: a file that appeared since the start
        (another run writing the same model) is then refused, not replaced.
        """
        replace = self.config.overwrite or self.config.resume or path in self._written
        self._written.add(path)
        return replace


def _optional(value: float) -> Optional[float]:
    return None if value is None or math.isnan(value) else float(value)
