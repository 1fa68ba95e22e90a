"""Segmentation losses for training on imbalanced classes, and class weights from pixel counts.

Every loss takes logits (N, C, H, W), in any floating dtype (they are computed
in float32, so bf16/fp16 autocast outputs are fine), and integer targets
(N, H, W) where ``ignore_index`` marks unlabelled pixels. Each returns a scalar;
a batch without a single labelled pixel gives ``logits.sum() * 0``, a zero that
still has a gradient graph, so that DDP and the grad scaler see every parameter.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: The names ``build_loss`` knows; join them with ``+`` to sum losses.
LOSS_NAMES = ("focal", "ce", "dice", "lovasz")


def _valid_pixels(logits: torch.Tensor, target: torch.Tensor,
                  ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits of the labelled pixels as (P, C), and their labels as (P,)."""
    valid = target != ignore_index
    flat = logits.float().permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    mask = valid.reshape(-1)
    return flat[mask], target.reshape(-1)[mask].long()


def _weighted_mean(terms: torch.Tensor, labels: torch.Tensor,
                   weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of per-pixel terms; with class weights, ``sum(w_y * t) / sum(w_y)``.

    The weighted form is what ``nn.CrossEntropyLoss`` computes, so the loss keeps
    its scale (a weight vector of all 2s gives the unweighted loss), and a batch
    of zero-weight pixels gives 0 rather than NaN.
    """
    if weight is None:
        return terms.mean()
    pixel_weight = weight.to(terms.device, torch.float32)[labels]
    return (pixel_weight * terms).sum() / pixel_weight.sum().clamp(min=1e-12)


def _as_buffer(values: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if values is None else torch.as_tensor(values, dtype=torch.float32).flatten()


class FocalLoss(nn.Module):
    """Softmax focal loss averaged over the pixels whose label is not ``ignore_index``.

    Down-weights pixels the model already gets right, so rare classes (buildings
    in a rural scene, say) are not drowned by the easy background. ``alpha``
    (one weight per class) also scales each pixel's term by its class's weight;
    the mean is then normalised by the summed weights of the pixels (as
    ``nn.CrossEntropyLoss`` does), so the loss keeps its scale whatever the
    weights' magnitude and ``gamma=0`` is exactly weighted cross-entropy.
    """

    alpha: Optional[torch.Tensor]  # a buffer, per class

    def __init__(self, gamma: float = 3.0, ignore_index: int = 255,
                 alpha: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.register_buffer("alpha", _as_buffer(alpha), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (N, C, H, W) against integer ``target`` (N, H, W)."""
        scores, labels = _valid_pixels(logits, target, self.ignore_index)
        if labels.numel() == 0:
            return logits.sum() * 0.0
        log_p = F.log_softmax(scores, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
        modulation = (1.0 - log_p.exp()).clamp(min=0.0) ** self.gamma
        return _weighted_mean(-modulation * log_p, labels, self.alpha)


class CrossEntropy(nn.Module):
    """Cross-entropy in float32, optionally class-weighted, that is 0 (not NaN) on empty batches."""

    weight: Optional[torch.Tensor]  # a buffer, per class

    def __init__(self, ignore_index: int = 255, weight: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("weight", _as_buffer(weight), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scores, labels = _valid_pixels(logits, target, self.ignore_index)
        if labels.numel() == 0:
            return logits.sum() * 0.0
        terms = F.cross_entropy(scores, labels, reduction="none")
        return _weighted_mean(terms, labels, self.weight)


class DiceLoss(nn.Module):
    """Soft multi-class Dice loss on softmax probabilities, over the labelled pixels.

    The batch is pooled as one set of pixels, and ``1 - dice`` is averaged over
    the classes present in the target or in the (argmax) prediction: absent
    classes would score a perfect, uninformative 1, and a class predicted but
    absent must still be penalised. ``smooth`` keeps near-empty classes stable.
    """

    weight: Optional[torch.Tensor]  # a buffer, per class

    def __init__(self, ignore_index: int = 255, weight: Optional[torch.Tensor] = None,
                 smooth: float = 1.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.register_buffer("weight", _as_buffer(weight), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scores, labels = _valid_pixels(logits, target, self.ignore_index)
        if labels.numel() == 0:
            return logits.sum() * 0.0
        n_classes = scores.shape[1]
        probs = scores.softmax(dim=1)
        truth = F.one_hot(labels, n_classes).float()
        intersection = (probs * truth).sum(0)
        cardinality = probs.sum(0) + truth.sum(0)
        dice = (2.0 * intersection + self.smooth) / (cardinality + self.smooth)
        present = (truth.sum(0) > 0) | (torch.bincount(scores.argmax(1), minlength=n_classes) > 0)
        class_weight = present.float()
        if self.weight is not None:
            class_weight = class_weight * self.weight.to(scores.device)
        if not bool(class_weight.sum() > 0):
            return logits.sum() * 0.0
        return ((1.0 - dice) * class_weight).sum() / class_weight.sum()


class LovaszSoftmax(nn.Module):
    """The Lovász-softmax loss (Berman, Triki & Blaschko, CVPR 2018) over the present classes.

    A convex surrogate of the Jaccard (IoU) loss: it optimises the metric that
    selects models, which pixel-wise losses only approximate. For each class
    present in the target, the pixels' errors ``|fg - p|`` are sorted in
    decreasing order and dotted with the increments of the Jaccard loss of
    the growing set of mispredicted pixels (the Lovász extension's gradient).
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scores, labels = _valid_pixels(logits, target, self.ignore_index)
        if labels.numel() == 0:
            return logits.sum() * 0.0
        probs = scores.softmax(dim=1)
        fg = F.one_hot(labels, probs.shape[1]).float()
        present = fg.sum(0) > 0
        probs, fg = probs[:, present], fg[:, present]
        errors = (fg - probs).abs()
        # The order is a constant of the extension: gradients flow through the errors only.
        errors_sorted, order = errors.sort(dim=0, descending=True)
        fg_sorted = fg.gather(0, order)
        # After the first i sorted pixels are counted wrong, the Jaccard loss is
        # |M_i| / |F u M_i| = i / (|F| + number of background pixels among them).
        count = torch.arange(1, fg.shape[0] + 1, device=fg.device, dtype=fg.dtype).unsqueeze(1)
        jaccard = count / (fg.sum(0, keepdim=True) + (1.0 - fg_sorted).cumsum(0))
        increments = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
        return (errors_sorted * increments).sum(0).mean()


class SumLoss(nn.Module):
    """The sum of several losses (e.g. cross-entropy for calibration plus Dice for overlap)."""

    def __init__(self, *losses: nn.Module) -> None:
        super().__init__()
        if not losses:
            raise ValueError("SumLoss needs at least one loss")
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = self.losses[0](logits, target)
        for loss in self.losses[1:]:
            total = total + loss(logits, target)
        return total


def build_loss(spec: str, class_weights: Optional[torch.Tensor] = None,
               ignore_index: int = 255, gamma: float = 3.0) -> nn.Module:
    """The loss named by ``spec``: one of :data:`LOSS_NAMES`, or several joined by ``+``.

    ``class_weights`` become focal's ``alpha`` and the weights of ``ce`` and
    ``dice``; Lovász has no class weighting in its definition and ignores them.

    Raises:
        ValueError: an unknown, empty or repeated name; the message lists the valid ones.
    """
    names = [name.strip().lower() for name in spec.split("+")]
    allowed = ", ".join(LOSS_NAMES)
    for name in names:
        if name not in LOSS_NAMES:
            shown = f"unknown loss {name!r}" if name else "an empty loss name"
            raise ValueError(f"{spec!r}: {shown}; choose from {allowed}, "
                             "or join several with '+' (e.g. ce+dice)")
    if len(set(names)) != len(names):
        raise ValueError(f"{spec!r}: a loss is named twice; name each of {allowed} at most once")
    weights = _as_buffer(class_weights)

    def make(name: str) -> nn.Module:
        if name == "focal":
            return FocalLoss(gamma=gamma, ignore_index=ignore_index, alpha=weights)
        if name == "ce":
            return CrossEntropy(ignore_index=ignore_index, weight=weights)
        if name == "dice":
            return DiceLoss(ignore_index=ignore_index, weight=weights)
        return LovaszSoftmax(ignore_index=ignore_index)

    losses = [make(name) for name in names]
    return losses[0] if len(losses) == 1 else SumLoss(*losses)


def class_weights_from_frequencies(freqs: Sequence[float] | np.ndarray,
                                   cap: float = 10.0) -> np.ndarray:
    """Class weights ``w_c ~ 1 / sqrt(f_c)`` from pixel frequencies (or counts).

    The inverse square root lifts rare classes without letting a class of a few
    pixels dominate, as the plain inverse would. The weights are scaled so that
    ``sum(f_c * w_c) = 1`` (a pixel weighs 1 on average, so the loss keeps its
    scale), with no weight above ``cap``: capped classes are held at ``cap``
    and the others are rescaled to keep the sum (water-filling, exact).
    Classes without pixels get weight 0.

    Raises:
        ValueError: no frequencies, a negative or non-finite one, none positive, or ``cap < 1``.
    """
    f = np.asarray(freqs, dtype=np.float64).reshape(-1)
    if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f < 0) or not np.any(f > 0):
        raise ValueError(f"class frequencies must be finite, non-negative and not all zero, "
                         f"got {list(f)}")
    if not cap >= 1.0:
        raise ValueError(f"the class weight cap must be at least 1 (the mean weight), got {cap}")
    f = f / f.sum()
    present = f > 0
    raw = np.zeros_like(f)
    raw[present] = 1.0 / np.sqrt(f[present])
    capped = np.zeros_like(present)
    while True:
        free = present & ~capped
        scale = (1.0 - cap * f[capped].sum()) / (f[free] * raw[free]).sum()
        over = free & (scale * raw > cap * (1.0 + 1e-9))
        if not over.any():
            break
        capped |= over
    weights = np.where(capped, cap, scale * raw)
    weights[~present] = 0.0
    return weights
