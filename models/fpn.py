"""The FPN heads of GLNet's branches and the feature pyramid they exchange.

One head class serves all three uses. With ``shared=False`` it is the plain
global head. With ``shared=True`` every stage takes a second input of the same
level (the other branch's features) concatenated along channels, so its input
channels double and a ``smooth`` conv folds the doubled concatenation back:
that is the local head (fed global-to-local crops) and the local-to-global
global head (fed merged local features). Attribute names follow the reference
implementation so that its checkpoints map key for key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize without corner alignment, as every GLNet resize is done."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@dataclass
class SharedFeatures:
    """The features one branch hands to the other, level by level.

    ``c`` holds C2..C5; ``ps0``, ``ps1`` and ``ps2`` hold P5..P4..P3..P2 after
    the top-down pass and after the first and second smoothing stages.
    """

    c: list[Tensor]
    ps0: list[Tensor]
    ps1: list[Tensor]
    ps2: list[Tensor]

    def map(self, fn: Callable[[Tensor], Tensor]) -> "SharedFeatures":
        """Apply ``fn`` to every tensor, keeping the structure."""
        return SharedFeatures(*([fn(t) for t in group] for group in self.groups()))

    def groups(self) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        return (self.c, self.ps0, self.ps1, self.ps2)

    def tensors(self) -> list[Tensor]:
        return [t for group in self.groups() for t in group]


@dataclass
class Pyramid(SharedFeatures):
    """Everything a branch computes: shared levels, ``ps3`` and the logits."""

    ps3: Tensor
    logits: Tensor

    def shared(self) -> SharedFeatures:
        return SharedFeatures(self.c, self.ps0, self.ps1, self.ps2)

    def to(self, dtype: torch.dtype) -> "Pyramid":
        """Every map in ``dtype`` (the same object when they already are)."""
        if self.ps3.dtype == dtype:
            return self
        cast = self.map(lambda t: t.to(dtype))
        return Pyramid(*cast.groups(), self.ps3.to(dtype), self.logits.to(dtype))


def init_conv(conv: nn.Conv2d) -> None:
    """GLNet's start for a head convolution: weights N(0, 0.01), bias 0."""
    nn.init.normal_(conv.weight, std=0.01)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _join(x: Tensor, extra: Optional[Tensor]) -> Tensor:
    """Concatenate ``extra`` (resized to ``x``, in ``x``'s precision) after ``x`` along channels."""
    if extra is None:
        return x
    return torch.cat([x, resize(extra, x.shape[-2:]).to(x.dtype)], dim=1)


class FPNHead(nn.Module):
    """Top-down pathway, two smoothing stages, concatenation and classifier."""

    def __init__(self, in_channels: Sequence[int], n_classes: int, width: int = 256,
                 shared: bool = False) -> None:
        super().__init__()
        fold = 2 if shared else 1
        half = width // 2
        c2, c3, c4, c5 = in_channels
        self.shared = shared
        self.toplayer = nn.Conv2d(c5 * fold, width, 1)
        self.latlayer1 = nn.Conv2d(c4 * fold, width, 1)
        self.latlayer2 = nn.Conv2d(c3 * fold, width, 1)
        self.latlayer3 = nn.Conv2d(c2 * fold, width, 1)
        self.smooth_1 = nn.ModuleList(
            nn.Conv2d(width * fold, width, 3, padding=1) for _ in range(4))
        self.smooth_2 = nn.ModuleList(
            nn.Conv2d(width * fold, half, 3, padding=1) for _ in range(4))
        if shared:
            self.smooth = nn.Conv2d(4 * half * fold, 4 * half, 3, padding=1)
        self.classify = nn.Conv2d(4 * half, n_classes, 3, padding=1)
        self.ps3_channels = 4 * half
        #: Whether :meth:`forward` returns the levels the other branch shares (C2..C5,
        #: ps0..ps2). Training and stage 3 need them; predicting at stage 2 does not.
        self.keep_levels = True
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                init_conv(conv)

    def forward(self, c: list[Tensor], shared: Optional[SharedFeatures] = None) -> Pyramid:
        """The pyramid built on trunk features ``c`` (C2..C5), fed ``shared`` when built for it.

        With ``keep_levels`` off, only ``ps3`` and the logits are returned, and
        each stage's maps are dropped as soon as the next stage is computed (``c``
        is emptied for that): about half the peak memory of a crop at inference.
        """
        if (shared is not None) != self.shared:
            raise ValueError("shared features must be given exactly when the head was built "
                             "for them")
        nothing: list[Optional[Tensor]] = [None] * 4
        ext: tuple[Sequence[Optional[Tensor]], ...] = (
            shared.groups() if shared is not None else (nothing,) * 4)
        levels = list(c)
        if not self.keep_levels:
            c.clear()
        kept = []
        for step, extra in ((self._top_down, ext[0]), (partial(_smooth, self.smooth_1), ext[1]),
                            (partial(_smooth, self.smooth_2), ext[2])):
            if self.keep_levels:
                kept.append(levels)
            levels = step(levels, extra)
        if self.keep_levels:
            kept.append(levels)
        ps3 = self._concat(levels, ext[3])
        del levels
        if self.shared:
            ps3 = self.smooth(ps3)
        logits = self.classify(ps3)
        trunk, ps0, ps1, ps2 = kept or ([], [], [], [])
        return Pyramid(trunk, ps0, ps1, ps2, ps3, logits)

    def _top_down(self, c: list[Tensor], extra: Sequence[Optional[Tensor]]) -> list[Tensor]:
        """P5..P2 (``ps0``): the top-down pass over C5..C2 with lateral connections."""
        c2, c3, c4, c5 = c
        p5 = self.toplayer(_join(c5, extra[3]))
        p4 = _upsample_add(p5, self.latlayer1(_join(c4, extra[2])))
        p3 = _upsample_add(p4, self.latlayer2(_join(c3, extra[1])))
        p2 = _upsample_add(p3, self.latlayer3(_join(c2, extra[0])))
        return [p5, p4, p3, p2]

    @staticmethod
    def _concat(ps2: list[Tensor], extra: Sequence[Optional[Tensor]]) -> Tensor:
        """Every level joined with its shared map, resized to P2's size, side by side."""
        levels = [_join(p, e) for p, e in zip(ps2, extra)]
        size = levels[-1].shape[-2:]
        return torch.cat([resize(level, size) for level in levels[:-1]] + [levels[-1]], dim=1)


def _smooth(convs: nn.ModuleList, levels: list[Tensor],
            extra: Sequence[Optional[Tensor]]) -> list[Tensor]:
    """One smoothing stage: each level joined with its shared map, then its own conv."""
    return [conv(_join(p, e)) for conv, p, e in zip(convs, levels, extra)]


def _upsample_add(top: Tensor, lateral: Tensor) -> Tensor:
    return resize(top, lateral.shape[-2:]) + lateral
