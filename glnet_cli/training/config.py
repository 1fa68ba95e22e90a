"""The options of a training run (``glnet train``), checked as they are set."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

from glnet_cli.errors import InputError
from glnet_cli.training.settings import PAPER_EPOCHS, PAPER_LR, WEIGHT_DECAY

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

    def to_plain(self) -> dict[str, Any]:
        """The options as plain values (tuples as lists), as the model file keeps them."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def resumed(self, saved: dict[str, Any]) -> "TrainConfig":
        """The ``saved`` run's options, with this run's :data:`RUNTIME_OPTIONS`."""
        return TrainConfig(**{**saved, **{k: getattr(self, k) for k in RUNTIME_OPTIONS}})


def _per_stage(values: Any, name: str) -> tuple:
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise InputError(f"--{name}: give one value, or three (stages 1, 2, 3)")
    return values


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
