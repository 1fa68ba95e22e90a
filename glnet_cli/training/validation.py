"""Validation after every epoch: scores, loss, the monitored value and preview rows.

The validation loss is the training criterion applied to the blended class
probabilities at full resolution (their logarithm as logits), so it is
comparable across stages whatever the stage's network computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Optional, Sequence

import numpy as np
from torch import nn

from glnet_cli.evaluation.metrics import ConfusionMatrix
from glnet_cli.training.dataset import TileDataset, iter_samples, required
from glnet_cli.training.distributed import DistContext
from glnet_cli.training.state import EpochRecord
from glnet_cli.training.steps import predict
from models.glnet import GLNet

#: Validation tiles drawn in ``MODEL.preview.png``.
PREVIEW_TILES = 3


@dataclass
class Validation:
    """One pass over the validation tiles."""

    scores: ConfusionMatrix
    loss: float
    #: (image, truth, prediction) of the first tiles, at the global view's size.
    previews: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


def validate(model: GLNet, dataset: TileDataset, stage: int, criterion: nn.Module,
             ctx: DistContext, sub_batch: int, num_workers: int,
             autocast: Callable[[], ContextManager]) -> Validation:
    """Scores and loss of the whole validation set; each rank predicts its share of tiles."""
    mine = [[i] for i in range(ctx.rank, len(dataset), ctx.world_size)]
    scores = ConfusionMatrix(len(dataset.spec.classes))
    total = np.zeros(2, dtype=np.float64)
    previews: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    model.eval()
    for (sample,) in iter_samples(dataset, mine, num_workers):
        with autocast():
            probs = predict(model, sample, stage, ctx.device, sub_batch)
        truth = required(sample.label, "labels")
        label = truth.to(ctx.device).long()
        logits = probs.clamp_min(1e-6).log()[None]
        total += (float(criterion(logits, label[None])), 1.0)
        pred = probs.argmax(0).cpu().numpy()
        scores.update(truth.numpy(), pred)
        if len(previews) < PREVIEW_TILES and ctx.is_main:
            previews.append(_preview_row(sample.image_global.numpy(), truth.numpy(), pred))
    model.train()
    total = ctx.all_sum(total)
    return Validation(ConfusionMatrix.from_array(ctx.all_sum(scores.as_array())),
                      float(total[0] / max(total[1], 1)), previews)


def _preview_row(image: np.ndarray, truth: np.ndarray, pred: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from glnet_cli.training.pictures import display_rgb  # plotting helpers load on demand

    height, width = image.shape[-2:]
    rows = np.linspace(0, truth.shape[0] - 1, height).round().astype(int)
    cols = np.linspace(0, truth.shape[1] - 1, width).round().astype(int)
    return display_rgb(image), truth[np.ix_(rows, cols)], pred[np.ix_(rows, cols)]


def monitor_value(monitor: str, val: Validation, names: Sequence[str]) -> Optional[float]:
    """The --monitor score of a validation (None where it is undefined)."""
    cm = val.scores
    if monitor == "loss":
        value = val.loss
    elif monitor == "accuracy":
        value = cm.accuracy
    elif monitor == "miou-all" or len(names) == 1:
        value = cm.miou
    elif monitor == "miou":  # the non-background classes, as the reference scores
        iou = cm.iou[1:]
        value = float(np.nanmean(iou)) if not np.isnan(iou).all() else math.nan
    else:
        value = float(cm.iou[names.index(monitor[len("iou:"):])])
    return None if math.isnan(value) else float(value)


def better(monitor: str, value: Optional[float], best: float) -> bool:
    """Whether ``value`` beats ``best`` (stored negated for a loss, so higher is better)."""
    return value is not None and signed(monitor, value) > best


def signed(monitor: str, value: float) -> float:
    """``value`` as the loop keeps its best score: higher is better."""
    return -value if monitor == "loss" else value


def fill_record(record: EpochRecord, val: Validation, monitor: str,
                names: Sequence[str]) -> None:
    """Copy a validation's figures into the epoch's log line."""
    cm = val.scores

    def per_class(values: np.ndarray) -> dict[str, Optional[float]]:
        return {n: _optional(v) for n, v in zip(names, values)}

    record.val_miou, record.val_accuracy = _optional(cm.miou), _optional(cm.accuracy)
    record.val_loss = _optional(val.loss)
    record.val_iou, record.val_precision = per_class(cm.iou), per_class(cm.precision)
    record.val_recall, record.val_f1 = per_class(cm.recall), per_class(cm.f1)
    record.monitor = monitor_value(monitor, val, names)


def _optional(value: Optional[float]) -> Optional[float]:
    return None if value is None or math.isnan(value) else float(value)
