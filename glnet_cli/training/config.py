"""The options of a training run (``glnet train``), checked as they are set."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from glnet_cli.errors import InputError
from glnet_cli.training.settings import DEFAULT_MONITOR, MONITORS, RECIPES, Recipe

#: Epochs of a stage under --time-limit when none are given: the clock ends it.
UNTIL_TIME_RUNS_OUT = (100_000, 100_000, 100_000)
#: What may change when a run is resumed; everything else is read from the model file.
RUNTIME_OPTIONS = ("output", "resume", "overwrite", "device", "precision", "num_workers")
#: What a recipe sets when the option is not given (epochs and lr besides, stage by stage).
RECIPE_OPTIONS = ("weight_decay", "loss", "class_weights", "oversample", "color_jitter")


@dataclass
class TrainConfig:
    """Every option of a training run (architecture options None: default or --init's)."""

    tiles: str
    output: str
    stage: str = "all"
    #: ``auto`` (chosen from the backbone's start) or ``paper``; the options below that
    #: are None take the recipe's value once the start is known (:meth:`with_recipe`).
    recipe: str = "auto"
    epochs: Optional[tuple[int, ...]] = None
    lr: Optional[tuple[float, ...]] = None
    weight_decay: Optional[float] = None
    #: ``focal``, ``ce``, ``dice``, ``lovasz`` or a ``+`` sum of them.
    loss: Optional[str] = None
    #: ``auto`` (from pixel frequencies), ``none`` or one weight per class.
    class_weights: Optional[str] = None
    oversample: Optional[bool] = None
    #: Wall-clock seconds for the whole run, split over the stages.
    time_limit: Optional[float] = None
    monitor: str = DEFAULT_MONITOR
    #: Epochs without a better monitored score before a stage stops early.
    patience: Optional[int] = None
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
    #: ``auto``: bf16 where the device computes it natively, else fp32 (see
    #: resolve_precision); fp16 only on request.
    precision: str = "auto"
    num_workers: int = 2
    color_jitter: Optional[bool] = None
    skip_bad: bool = False

    def __post_init__(self) -> None:
        self.stage = str(self.stage)
        if self.stage not in ("1", "2", "3", "all"):
            raise InputError(f"--stage {self.stage}: use 1, 2, 3 or all")
        if self.recipe not in RECIPES:
            raise InputError(f"--recipe {self.recipe}: use {' or '.join(RECIPES)}")
        if self.epochs is not None:
            self.epochs = _per_stage(self.epochs, "epochs")
        if self.lr is not None:
            self.lr = _per_stage(self.lr, "lr")
        self.bands = tuple(self.bands) if self.bands else None
        if self.monitor not in MONITORS and not self.monitor.startswith("iou:"):
            raise InputError(f"--monitor {self.monitor}: use {', '.join(MONITORS)} or iou:CLASS")
        if self.loss is not None:
            from models.losses import LOSS_NAMES  # torch: only once a run is configured

            unknown = [n for n in self.loss.lower().split("+") if n.strip() not in LOSS_NAMES]
            if unknown:
                raise InputError(f"--loss {self.loss}: {', '.join(unknown) or 'empty'} is not a "
                                 f"loss; use {', '.join(LOSS_NAMES)} or a sum such as ce+dice")
        if self.time_limit is not None and self.time_limit <= 0:
            raise InputError(f"--time-limit {self.time_limit:g}: give a positive duration")

    def with_recipe(self, recipe: Recipe) -> ResolvedTrainConfig:
        """These options, those left unset taking ``recipe``'s values."""
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        filled = {name: getattr(recipe, name) if given[name] is None else given[name]
                  for name in RECIPE_OPTIONS}
        filled["epochs"] = self.epochs or (UNTIL_TIME_RUNS_OUT if self.time_limit
                                           else recipe.epochs)
        filled["lr"] = self.lr or recipe.lr
        return ResolvedTrainConfig(**{**given, **filled})

    @property
    def stages(self) -> list[int]:
        return [1, 2, 3] if self.stage == "all" else [int(self.stage)]

    def to_plain(self) -> dict[str, Any]:
        """The options as plain values (tuples as lists), as the model file keeps them."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def resumed(self, saved: dict[str, Any]) -> "TrainConfig":
        """The ``saved`` run's options, with this run's :data:`RUNTIME_OPTIONS`."""
        return TrainConfig(**{**saved, **{k: getattr(self, k) for k in RUNTIME_OPTIONS}})


@dataclass
class ResolvedTrainConfig(TrainConfig):
    """A run's options once its recipe is known (:meth:`TrainConfig.with_recipe`): none of
    the recipe's options is left unset."""

    epochs: tuple[int, ...] = field(kw_only=True)
    lr: tuple[float, ...] = field(kw_only=True)
    weight_decay: float = field(kw_only=True)
    loss: str = field(kw_only=True)
    class_weights: str = field(kw_only=True)
    oversample: bool = field(kw_only=True)
    color_jitter: bool = field(kw_only=True)


def _per_stage(values: Any, name: str) -> tuple:
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise InputError(f"--{name}: give one value, or three (stages 1, 2, 3)")
    return values


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
