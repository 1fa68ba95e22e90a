"""GLNet's three training stages on a folder of tiles (``glnet train``).

Stage 1 trains the global branch, stage 2 the local branch and aggregation
with the global branch frozen, stage 3 the local-to-global branch and
aggregation with both others frozen. Each stage starts from the previous
one's best epoch (by validation mIoU; its last epoch without validation), as
the reference does. After every epoch the model file is written with the
optimiser, scheduler and RNG states, so ``resume`` continues exactly where it
stopped; ``MODEL.best.pt`` holds the best epoch of the latest stage and
``MODEL.metrics.jsonl`` one line per epoch.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional

import numpy as np
import torch

from glnet_cli.classes import ClassTable, load_class_table
from glnet_cli.device import autocast
from glnet_cli.errors import DataError, GlnetWarning, InputError, PretrainedWeightsMissing
from glnet_cli.evaluation.metrics import ConfusionMatrix
from glnet_cli.io.checkpoint import ModelFile, ModelInfo, load_model, save_model
from glnet_cli.io.paths import atomic_output, check_distinct, check_output
from glnet_cli.progress_callback import ProgressCallback
from glnet_cli.training.data import (ReadSpec, TileDataset, TileInfo, check_tiles, discover_tiles,
                                     epoch_batches, infer_classes, inspect_pairs, iter_samples,
                                     measure_scaling, settle_problems, split_by_name)
from glnet_cli.training.distributed import DistContext, distributed
from glnet_cli.training.settings import PAPER_EPOCHS, PAPER_LR, WEIGHT_DECAY
from glnet_cli.training.steps import STAGE_LOSSES, predict, step_inputs
from models.backbone import PretrainedWeightsUnavailable, fetch_imagenet
from models.glnet import GLNet
from models.losses import FocalLoss

log = logging.getLogger(__name__)

POLY_POWER = 0.9
FOCAL_GAMMA = 3.0
#: Architecture defaults, used unless --init/--resume names a model.
DEFAULTS = {"backbone": "resnet50", "width": 256, "size_g": 508, "size_p": 508}
#: What may change when a run is resumed; everything else is read from the model file.
RUNTIME_OPTIONS = ("output", "resume", "overwrite", "device", "precision", "num_workers")


@dataclass
class TrainConfig:
    """Every option of a training run (architecture options None: default or --init's)."""

    tiles: str
    output: str
    stage: str = "all"
    epochs: tuple[int, ...] = PAPER_EPOCHS
    lr: tuple[float, ...] = PAPER_LR
    weight_decay: float = WEIGHT_DECAY
    backbone: Optional[str] = None
    width: Optional[int] = None
    size_g: Optional[int] = None
    size_p: Optional[int] = None
    batch_size: int = 6
    sub_batch_size: int = 6
    val: Optional[str] = None
    val_split: float = 0.1
    classes: Optional[str] = None
    ignore_index: int = 255
    bands: Optional[tuple[int, ...]] = None
    #: imagenet (insist), none, a model file, or None: ImageNet when it can be had, else random.
    pretrained: Optional[str] = None
    init: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    num_workers: int = 2
    color_jitter: bool = False
    skip_bad: bool = False

    def __post_init__(self) -> None:
        self.stage = str(self.stage)
        if self.stage not in ("1", "2", "3", "all"):
            raise InputError(f"--stage {self.stage}: use 1, 2, 3 or all")
        self.epochs, self.lr = _per_stage(self.epochs, "epochs"), _per_stage(self.lr, "lr")
        self.bands = tuple(self.bands) if self.bands else None

    @property
    def stages(self) -> list[int]:
        return [1, 2, 3] if self.stage == "all" else [int(self.stage)]


def _per_stage(values: Any, name: str) -> tuple:
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise InputError(f"--{name}: give one value, or three (stages 1, 2, 3)")
    return values


@dataclass
class EpochRecord:
    """One line of the metrics log."""

    stage: int
    epoch: int
    epochs: int
    train_loss: float
    train_miou: Optional[float]
    lr: float
    seconds: float
    val_miou: Optional[float] = None
    val_accuracy: Optional[float] = None
    val_iou: dict[str, Optional[float]] = field(default_factory=dict)
    best: bool = False


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


def companion_paths(output: str) -> tuple[str, str]:
    """``MODEL.best.pt`` and ``MODEL.metrics.jsonl`` beside ``MODEL.pt``."""
    root, ext = os.path.splitext(output)
    return f"{root}.best{ext or '.pt'}", f"{root}.metrics.jsonl"


def train(config: TrainConfig, progress: Optional[ProgressCallback] = None,
          on_epoch: Optional[Callable[[EpochRecord], Optional[bool]]] = None) -> TrainResult:
    """Run (or resume) the training stages that ``config`` asks for.

    Args:
        config: The run's options.
        progress: ``progress(step, steps, **info)`` after every step (rank 0 only).
        on_epoch: Called after each epoch's checkpoint is written (rank 0 only);
            returning True stops the run there (``resume`` continues it).

    Raises:
        GlnetError: Bad tiles, options or model files, before training starts.
    """
    with distributed(config.device) as ctx:
        return _Run(config, ctx, progress, on_epoch).run()


def _warn(message: str) -> None:
    warnings.warn(message, GlnetWarning, stacklevel=2)


def _optional(value: float) -> Optional[float]:
    return None if value is None or math.isnan(value) else float(value)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (data order and augmentation have their own seeds)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors, lists and numbers (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _poly(step: int, total: int) -> float:
    return (1.0 - min(step, total - 1) / total) ** POLY_POWER


class _Run:
    """One training job: its data, model, stages and checkpoints."""

    def __init__(self, config: TrainConfig, ctx: DistContext,
                 progress: Optional[ProgressCallback],
                 on_epoch: Optional[Callable[[EpochRecord], Optional[bool]]]) -> None:
        self.ctx = ctx
        self.progress = progress if ctx.is_main else None
        self.on_epoch = on_epoch if ctx.is_main else None
        self.best_path, self.log_path = companion_paths(config.output)
        self.config, start, self.state = self._starting_point(config)
        config = self.config
        seed_everything(config.seed)
        known = start.info if start else None
        self.size_g, self.size_p, backbone, width = self._architecture(known)
        self.train_tiles, self.val_tiles, self.spec = self._load_data(known)
        self.model = self._build_model(start, backbone, width).to(ctx.device)
        self.info = self._describe(known)
        self.history = [EpochRecord(**r) for r in self.state["history"]] if self.state else []
        self.best_miou = self.state["best_miou"] if self.state else -math.inf
        #: The best epoch's weights of the stage being trained (or just finished).
        self.best_state = None
        if self.state and self.state["best_stage"] == self.state["stage"]:
            self.best_state = load_model(self.best_path).model.state_dict()
        self._autocast = functools.partial(autocast, ctx.device, config.precision)
        #: Files this run has written (it replaces them at every epoch).
        self._written: set[str] = set()

    # -- setup -------------------------------------------------------------

    def _starting_point(self, config: TrainConfig) -> tuple[
            TrainConfig, Optional[ModelFile], Optional[dict[str, Any]]]:
        """The run's options, and the model (and training state) it starts from."""
        if config.resume and config.init:
            raise InputError("--resume continues the run in the output file; leave out --init")
        if config.resume:
            start = load_model(config.output)
            if start.training_state is None:
                raise InputError(f"{config.output}: holds no training state to --resume")
            saved = dict(start.training_state["config"])
            saved.update({k: getattr(config, k) for k in RUNTIME_OPTIONS})
            return TrainConfig(**saved), start, start.training_state
        check_distinct([config.output, self.best_path, self.log_path],
                       [config.init, _model_file(config.pretrained)])
        if self.ctx.is_main:
            check_output(config.output, config.overwrite, [self.best_path, self.log_path])
        start = load_model(config.init) if config.init else None
        first = config.stages[0]
        if first > 1 and (start is None or start.info.stage < first - 1):
            raise InputError(f"--stage {first} starts from a model that completed stage "
                             f"{first - 1}: give it with --init MODEL.pt (or use --resume)")
        return config, start, None

    def _architecture(self, known: Optional[ModelInfo]) -> tuple[int, int, str, int]:
        """size_g, size_p, backbone, width: as given, else the starting model's, else defaults."""
        values = dict(DEFAULTS)
        if known:
            values = {"backbone": known.config.backbone, "width": known.config.width,
                      "size_g": known.size_g, "size_p": known.size_p}
        for name, value in values.items():
            given = getattr(self.config, name)
            if known and given is not None and given != value:
                raise InputError(f"--{name.replace('_', '-')} {given} differs from the starting "
                                 f"model's {value}; leave it out")
            values[name] = value if given is None else given
        return values["size_g"], values["size_p"], values["backbone"], values["width"]

    def _checked(self, folder: str, classes: Optional[ClassTable],
                 bands: Optional[tuple[int, ...]]) -> tuple[list[TileInfo], ClassTable, tuple]:
        """Every pair of a folder checked (split across ranks); problems stop the run."""
        cfg, ctx = self.config, self.ctx
        pairs, problems = discover_tiles(folder)
        min_size = self.size_p if max(cfg.stages) >= 2 else 1
        mine = inspect_pairs(pairs[ctx.rank::ctx.world_size], classes, min_size, cfg.num_workers)
        infos = sorted(ctx.gather(mine), key=lambda i: i.name)
        if classes is None:
            classes = infer_classes([i for i in infos if isinstance(i, TileInfo)],
                                    cfg.ignore_index)
            log.info("%d classes found in the masks of %s", len(classes), folder)
        if cfg.ignore_index < len(classes):
            raise InputError(f"--ignore-index {cfg.ignore_index} is a class id "
                             f"(0..{len(classes) - 1})")
        tiles, more, bands = check_tiles(infos, classes, cfg.ignore_index, bands)
        settle_problems(problems + more, cfg.skip_bad, folder, _warn if ctx.is_main else log.debug)
        if not tiles:
            raise DataError(f"{folder}: no usable tile pairs")
        return tiles, classes, bands

    def _load_data(self, known: Optional[ModelInfo]
                   ) -> tuple[list[TileInfo], list[TileInfo], ReadSpec]:
        cfg = self.config
        classes = load_class_table(cfg.classes) if cfg.classes else None
        if known and classes and classes.to_list() != known.classes.to_list():
            raise InputError(f"--classes {cfg.classes} differs from the starting model's classes")
        classes = classes or (known.classes if known else None)
        tiles, classes, bands = self._checked(cfg.tiles, classes, cfg.bands)
        if cfg.val:
            train_tiles = tiles
            val_tiles = self._checked(cfg.val, classes, bands)[0]
        else:
            train_tiles, val_tiles = split_by_name(tiles, cfg.val_split)
        if known:
            known.scaling.check(train_tiles[0].dtype, cfg.tiles)
            if len(bands) != known.config.in_channels:
                raise InputError(f"the starting model takes {known.config.in_channels} bands, "
                                 f"the tiles give {len(bands)}; choose them with --bands")
        scaling = known.scaling if known else measure_scaling(train_tiles, bands)
        log.info("%d training tiles, %d validation tiles", len(train_tiles), len(val_tiles))
        spec = ReadSpec(bands, scaling, classes, cfg.ignore_index, self.size_g, self.size_p)
        return train_tiles, val_tiles, spec

    def _build_model(self, start: Optional[ModelFile], backbone: str, width: int) -> GLNet:
        cfg = self.config
        #: What the weights started from, for the provenance (a resumed run keeps its own).
        self.started_from = (start.info.provenance.get("pretrained") if start and cfg.resume
                             else cfg.pretrained)
        if start:
            return start.model
        build = functools.partial(GLNet, len(self.spec.classes), backbone, len(self.spec.bands),
                                  width)
        if cfg.pretrained in (None, "imagenet"):
            try:
                fetch_imagenet(backbone, progress=self.progress is not None)
                self.started_from = "imagenet"
                return build(pretrained="imagenet")
            except PretrainedWeightsUnavailable as exc:
                if cfg.pretrained == "imagenet":
                    raise PretrainedWeightsMissing(str(exc)) from None
                (_warn if self.ctx.is_main else log.debug)(
                    f"ImageNet weights for {backbone} could not be loaded ({exc.reason}); "
                    "starting from random weights")
                self.started_from = "none"
        model = build(pretrained=None)
        if _model_file(cfg.pretrained):
            source = load_model(cfg.pretrained).model.state_dict()
            own = model.state_dict()
            fitting = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
            if not fitting:
                raise InputError(f"{cfg.pretrained}: no weights fit this architecture")
            model.load_state_dict(fitting, strict=False)
            log.info("%d of %d tensors from %s", len(fitting), len(own), cfg.pretrained)
        return model

    def _describe(self, known: Optional[ModelInfo]) -> ModelInfo:
        cfg, tiles = self.config, self.train_tiles
        gsds = [t.gsd for t in tiles if t.gsd]
        provenance = {
            "tiles": os.path.abspath(cfg.tiles), "n_tiles": len(tiles),
            "val": os.path.abspath(cfg.val) if cfg.val else None, "val_split": cfg.val_split,
            "n_val": len(self.val_tiles), "stages": cfg.stages,
            "epochs": list(cfg.epochs), "lr": list(cfg.lr), "batch_size": cfg.batch_size,
            "sub_batch_size": cfg.sub_batch_size, "seed": cfg.seed,
            "world_size": self.ctx.world_size, "pretrained": self.started_from,
            "init": cfg.init}
        return ModelInfo(
            config=self.model.config, classes=self.spec.classes, size_g=self.size_g,
            size_p=self.size_p, scaling=self.spec.scaling,
            context_size=int(np.median([s for t in tiles for s in (t.height, t.width)])),
            stage=known.stage if known else 0,
            gsd=float(np.median(gsds)) if gsds else None, provenance=provenance)

    # -- the stages ------------------------------------------------------------

    def run(self) -> TrainResult:
        stage, epoch = (self.state["stage"], self.state["epoch"]) if self.state else (0, 0)
        if self.state:
            restore_rng(self.state["rng"])
        elif self.ctx.is_main:
            for stale in (self.best_path, self.log_path):  # left by a run --overwrite replaces
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
        best = self.best_path if self.val_tiles else None
        return TrainResult(self.config.output, best, self.model, self.info, self.history,
                           self.ctx.is_main, finished)

    def _train_stage(self, stage: int, first_epoch: int) -> bool:
        """Train one stage from ``first_epoch``; True if ``on_epoch`` asked to stop."""
        cfg, model = self.config, self.model
        resuming = first_epoch > 0
        if not resuming:
            if self.best_state is not None:
                model.load_state_dict(self.best_state)
            self.best_state, self.best_miou = None, -math.inf
        optimizer = torch.optim.Adam(model.set_stage(stage), lr=cfg.lr[stage - 1],
                                     weight_decay=cfg.weight_decay)
        epochs = cfg.epochs[stage - 1]
        steps = len(epoch_batches(len(self.train_tiles), cfg.batch_size, 0, cfg.seed,
                                  self.ctx.rank, self.ctx.world_size))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(_poly, total=steps * epochs))
        scaler = torch.amp.GradScaler(
            "cuda", enabled=cfg.precision == "fp16" and self.ctx.device.type == "cuda")
        if resuming:
            optimizer.load_state_dict(self.state["optimizer"])
            scheduler.load_state_dict(self.state["scheduler"])
            if self.state["scaler"] and scaler.is_enabled():  # precision may change on resume
                scaler.load_state_dict(self.state["scaler"])
        loss_module = self.ctx.wrap(STAGE_LOSSES[stage](model, FocalLoss(FOCAL_GAMMA)))
        dataset = TileDataset(self.train_tiles, self.spec, crops=stage >= 2, train=True,
                              color_jitter=cfg.color_jitter, seed=cfg.seed)
        model.stage = self.info.stage = stage
        for epoch in range(first_epoch, epochs):
            started, lr = time.monotonic(), optimizer.param_groups[0]["lr"]
            model.train()
            loss, train_cm = self._train_epoch(stage, epoch, loss_module, optimizer, scheduler,
                                               scaler, dataset)
            self.ctx.broadcast_buffers(model)
            val = self._validate(stage)
            best = val is not None and val.miou > self.best_miou
            if best:
                self.best_miou = val.miou
                self.best_state = {k: v.detach().cpu().clone()
                                   for k, v in model.state_dict().items()}
            record = EpochRecord(stage, epoch + 1, epochs, loss, _optional(train_cm.miou), lr,
                                 time.monotonic() - started, best=best)
            if val is not None:
                record.val_miou, record.val_accuracy = _optional(val.miou), _optional(val.accuracy)
                record.val_iou = {n: _optional(v) for n, v in zip(self.spec.classes.names, val.iou)}
            self.history.append(record)
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
        scores = ConfusionMatrix(len(self.spec.classes))
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
        if not self.val_tiles:
            return None
        ctx, cfg = self.ctx, self.config
        dataset = TileDataset(self.val_tiles, self.spec, crops=stage >= 2, train=False)
        mine = [[i] for i in range(ctx.rank, len(dataset), ctx.world_size)]
        scores = ConfusionMatrix(len(self.spec.classes))
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
        last = self.history[-1]
        self.info.provenance["epochs_done"] = {
            str(s): max(r.epoch for r in self.history if r.stage == s)
            for s in sorted({r.stage for r in self.history})}
        self.info.provenance["metrics"] = {"val_miou": last.val_miou,
                                           "val_accuracy": last.val_accuracy,
                                           "val_iou": last.val_iou, "train_loss": last.train_loss}
        if best:
            save_model(self.best_path, self.model, self.info,
                       overwrite=self._may_replace(self.best_path))
        state = {"config": {f.name: _plain(getattr(self.config, f.name))
                            for f in fields(self.config)},
                 "stage": stage, "epoch": epoch, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                 "best_miou": self.best_miou,
                 "best_stage": stage if self.best_state is not None else None,
                 "rng": rng_state(),
                 "history": [asdict(r) for r in self.history]}
        save_model(self.config.output, self.model, self.info, training_state=state,
                   overwrite=self._may_replace(self.config.output))
        with atomic_output(self.log_path, overwrite=self._may_replace(self.log_path)) as tmp, \
                open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(asdict(r)) + "\n" for r in self.history)

    def _may_replace(self, path: str) -> bool:
        """Whether writing ``path`` may replace a file there.

        The run's own files, yes; before its first write, only under
        ``--overwrite`` or ``--resume``: a file that appeared since the start
        (another run writing the same model) is then refused, not replaced.
        """
        replace = self.config.overwrite or self.config.resume or path in self._written
        self._written.add(path)
        return replace


def _model_file(pretrained: Optional[str]) -> Optional[str]:
    """``--pretrained`` when it names a model file (not imagenet or none)."""
    return None if pretrained in (None, "imagenet", "none") else pretrained


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
