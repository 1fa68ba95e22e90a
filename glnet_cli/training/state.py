"""Where a training run stands: what a checkpoint holds to resume it, and the metrics log.

:class:`TrainingState` is written into the model file after every epoch (its
``to_dict``), read back by ``--resume`` (``from_dict``), and its history is the
metrics log, so the three agree by construction.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, cast

import numpy as np
import torch


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
    val_loss: Optional[float] = None
    val_precision: dict[str, Optional[float]] = field(default_factory=dict)
    val_recall: dict[str, Optional[float]] = field(default_factory=dict)
    val_f1: dict[str, Optional[float]] = field(default_factory=dict)
    #: The --monitor score of this epoch (what picks ``MODEL.best.pt``).
    monitor: Optional[float] = None
    #: Why the stage ended after this epoch (``epochs``, ``time``, ``patience``), if it did.
    stage_end: Optional[str] = None


@dataclass
class TrainingState:
    """The run's progress, and the optimiser, scheduler, scaler and RNG states to resume from.

    ``stage`` and ``epoch`` count what is done (0, 0 before the first epoch);
    ``best_stage`` is the stage whose best epoch ``MODEL.best.pt`` holds, when
    that stage is still the one being trained.
    """

    #: The run's options, as plain values (:class:`~glnet_cli.training.config.TrainConfig`).
    config: dict[str, Any]
    stage: int = 0
    epoch: int = 0
    optimizer: Optional[dict[str, Any]] = None
    scheduler: Optional[dict[str, Any]] = None
    scaler: Optional[dict[str, Any]] = None
    #: The best monitored score of the current stage (higher is better: a loss is negated).
    best_miou: float = -math.inf
    best_stage: Optional[int] = None
    #: Seconds each stage has taken (keys are stage numbers), for --time-limit across resumes.
    stage_seconds: dict[int, float] = field(default_factory=dict)
    #: Whether ``stage`` ended (by epochs, time or patience) after ``epoch``.
    stage_finished: bool = False
    rng: Optional[dict[str, Any]] = None
    history: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Tensors, lists and numbers only: the model file loads with ``weights_only``."""
        return {"config": self.config, "stage": self.stage, "epoch": self.epoch,
                "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler,
                "best_miou": self.best_miou, "best_stage": self.best_stage, "rng": self.rng,
                "stage_seconds": {int(k): float(v) for k, v in self.stage_seconds.items()},
                "stage_finished": self.stage_finished,
                "history": [asdict(r) for r in self.history]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingState":
        values = {**data, "config": dict(data["config"]),
                  "stage_seconds": {int(k): v for k, v in data.get("stage_seconds", {}).items()},
                  "history": [EpochRecord(**r) for r in data["history"]]}
        return cls(**values)

    def log_lines(self) -> list[str]:
        """The metrics log (``MODEL.metrics.jsonl``): one JSON line per epoch."""
        return [json.dumps(asdict(r)) + "\n" for r in self.history]

    def capture_rng(self) -> None:
        """Record the global RNG states (as tensors, lists and numbers)."""
        # the legacy tuple: numpy's global generator is an MT19937
        kind, keys, pos, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float],
                                                 np.random.get_state())
        version, internal, gauss_next = random.getstate()
        self.rng = {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
                    "python": [version, list(internal), gauss_next]}

    def restore_rng(self) -> None:
        """Put the recorded RNG states back (CUDA's only on as many devices as recorded)."""
        state = self.rng
        if state is None:  # none recorded
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (data order and augmentation have their own seeds)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
