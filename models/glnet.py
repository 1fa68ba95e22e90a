"""GLNet: a global branch on the downsampled image, a local branch on crops.

The branches share features both ways (global-to-local crops, local-to-global
merged canvases), and an aggregation conv combines both branches' ``ps3`` into
the final prediction. Training runs in three stages (see :meth:`GLNet.set_stage`).

Crop positions are given as the reference implementation gives them: each
crop's (top, left) as a fraction of the full image size, and ``ratio`` as the
(height, width) fraction that one crop covers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import build_backbone
from models.fpn import FPNHead, Pyramid, SharedFeatures, init_conv, resize

Tensor = torch.Tensor
TopLefts = Sequence[tuple[float, float]]
Ratio = tuple[float, float]

#: Weight of the feature-map regularisation (MSE between the branches' ps3).
FMREG_WEIGHT = 0.15


@dataclass(frozen=True)
class GLNetConfig:
    """What it takes to rebuild a GLNet: stored in every model file."""

    n_classes: int
    backbone: str = "resnet50"
    in_channels: int = 3
    width: int = 256

    def to_dict(self) -> dict:
        return asdict(self)


class Branch(nn.Module):
    """A backbone and its FPN head."""

    def __init__(self, config: GLNetConfig, shared: bool, pretrained: Optional[str]) -> None:
        super().__init__()
        self.backbone = build_backbone(config.backbone, config.in_channels, pretrained)
        self.head = FPNHead(self.backbone.out_channels, config.n_classes, config.width, shared)

    @property
    def dtype(self) -> torch.dtype:
        """The precision this branch computes in: that of its weights."""
        return self.backbone.conv1.weight.dtype

    def forward(self, x: Tensor, shared: Optional[SharedFeatures] = None) -> Pyramid:
        return self.head(self.backbone(x.to(self.dtype)), shared)


def _region(size: int, start: float, extent: float) -> tuple[int, int]:
    """Rows (or columns) of a feature map of ``size`` that a crop covers.

    Both start and extent are rounded on their own, as the reference does; the
    start is clamped so that a rounding overshoot never cuts the region short,
    and a region is never empty (a crop smaller than one cell of a coarse map
    still gets that cell, where the reference would fail).
    """
    length = max(1, int(round(size * extent)))
    first = min(int(round(start * size)), size - length)
    return first, length


def crop_regions(feature: Tensor, top_lefts: TopLefts, ratio: Ratio) -> Tensor:
    """Cut every crop's region out of a (1, C, H, W) map: (N, C, h, w), no resizing."""
    height, width = feature.shape[-2:]
    crops = []
    for top, left in top_lefts:
        y, h = _region(height, top, ratio[0])
        x, w = _region(width, left, ratio[1])
        crops.append(feature[0, :, y:y + h, x:x + w])
    return torch.stack(crops)


def crop_shared(features: SharedFeatures, top_lefts: TopLefts, ratio: Ratio) -> SharedFeatures:
    """Global-to-local: every level's region for every crop."""
    return features.map(lambda t: crop_regions(t, top_lefts, ratio))


def coverage_template(top_lefts: TopLefts, patch: tuple[int, int],
                      image: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """How many crops cover each full-resolution pixel, as a (1, 1, H, W) map."""
    count = torch.zeros((1, 1) + tuple(image), device=device)
    for top, left in top_lefts:
        y, x = int(round(top * image[0])), int(round(left * image[1]))
        count[..., y:y + patch[0], x:x + patch[1]] += 1
    return count


class LocalToGlobalCanvas:
    """Local-to-global: pastes crop features onto image-sized canvases.

    Each crop's feature map is resized to the region it covers at the global
    map's resolution and added there; :meth:`finish` divides by the overlap
    count (the full-resolution crop count resized to each level).
    """

    def __init__(self, like: SharedFeatures) -> None:
        # float32 sums whatever precision the features come in: bf16 would round
        # away a crop added onto several others.
        self.sums = like.map(lambda t: torch.zeros_like(t, dtype=torch.float32))

    @torch.no_grad()
    def add(self, local: SharedFeatures, top_lefts: TopLefts, ratio: Ratio) -> None:
        for canvas, part in zip(self.sums.tensors(), local.tensors()):
            height, width = canvas.shape[-2:]
            for i, (top, left) in enumerate(top_lefts):
                y, h = _region(height, top, ratio[0])
                x, w = _region(width, left, ratio[1])
                canvas[:, :, y:y + h, x:x + w] += resize(part[i:i + 1], (h, w))

    def finish(self, template: Tensor) -> SharedFeatures:
        """Divide by the overlap count; places no crop covered stay zero."""
        def average(total: Tensor) -> Tensor:
            count = resize(template, total.shape[-2:])
            return torch.where(count > 0, total / count.clamp_min(1e-6), torch.zeros_like(total))
        return self.sums.map(average)


class GLNet(nn.Module):
    """The Collaborative Global-Local Network.

    ``global_branch`` is the stage-1 global branch (it also feeds the local
    branch in stages 2 and 3), ``local_branch`` the stage-2 local branch, and
    ``l2g_branch`` the stage-3 global branch fed by merged local features; it
    exists once :meth:`add_l2g_branch` was called.
    """

    def __init__(self, n_classes: int, backbone: str = "resnet50", in_channels: int = 3,
                 width: int = 256, pretrained: Optional[str] = None,
                 l2g: bool = False) -> None:
        super().__init__()
        self.config = GLNetConfig(n_classes, backbone, in_channels, width)
        self.global_branch = Branch(self.config, shared=False, pretrained=pretrained)
        self.local_branch = Branch(self.config, shared=True, pretrained=pretrained)
        ps3 = self.global_branch.head.ps3_channels
        self.aggregate = nn.Conv2d(2 * ps3, n_classes, 3, padding=1)
        init_conv(self.aggregate)
        self.l2g_branch: Optional[Branch] = None
        if l2g:
            self.add_l2g_branch()
        self._frozen: list[nn.Module] = []
        #: Whether :meth:`aggregated` computes the feature-map regulariser. Prediction
        #: does not need it: 1-4% of a crop's time, and memory at its peak.
        self.fmreg = True
        #: The highest training stage these weights completed (0: untrained).
        self.stage = 0

    @classmethod
    def from_config(cls, config: GLNetConfig | dict, l2g: bool = False) -> "GLNet":
        fields = config if isinstance(config, dict) else config.to_dict()
        return cls(**fields, l2g=l2g)

    @property
    def has_l2g(self) -> bool:
        return self.l2g_branch is not None

    def add_l2g_branch(self) -> Branch:
        """Create the stage-3 global branch, starting from the stage-1 global one.

        Its backbone and classifier are copies of the trained global branch;
        the doubled-input layers start fresh, as in the reference.
        """
        branch = Branch(self.config, shared=True, pretrained=None)
        branch.backbone.load_state_dict(self.global_branch.backbone.state_dict())
        branch.head.classify.load_state_dict(self.global_branch.head.classify.state_dict())
        self.l2g_branch = branch.to(next(self.global_branch.parameters()).device)
        return self.l2g_branch

    # -- training stages -------------------------------------------------

    def local_from_global(self) -> None:
        """Start the local branch from the trained global branch (what fits of it).

        Without ImageNet weights the local branch would start from noise; the global
        branch knows the classes' look already. G2L layers keep their own start.
        """
        source = self.global_branch.state_dict()
        own = self.local_branch.state_dict()
        fitting = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        self.local_branch.load_state_dict(fitting, strict=False)

    def set_stage(self, stage: int) -> list[nn.Parameter]:
        """Freeze what ``stage`` must not change; return the parameters it trains.

        1: the global branch alone. 2: the local branch and aggregation, with the
        global branch frozen. 3: the local-to-global branch and aggregation, with
        the stage-1 global branch and the local branch frozen.
        """
        if stage == 3:
            l2g = self.l2g_branch if self.l2g_branch is not None else self.add_l2g_branch()
            trainable: list[nn.Module] = [l2g, self.aggregate]
        else:
            trainable = [self.global_branch] if stage == 1 else [self.local_branch, self.aggregate]
        self._frozen = [m for m in self.children() if all(m is not t for t in trainable)]
        for module in self.children():
            module.requires_grad_(any(module is t for t in trainable))
        self.train(self.training)
        return [p for module in trainable for p in module.parameters()]

    def train(self, mode: bool = True) -> "GLNet":
        """Like ``nn.Module.train``, but frozen branches stay in eval mode.

        Their BatchNorm statistics must not move while another stage trains.
        """
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    # -- building blocks -------------------------------------------------

    def global_pyramid(self, image_global: Tensor) -> Pyramid:
        """Stage-1 global branch on the downsampled image, kept in the local branch's precision.

        (The two differ only in a model prepared for inference in bf16 or fp16.)
        """
        return self.global_branch(image_global).to(self.local_branch.dtype)

    def local_pyramid(self, patches: Tensor, global_pyramid: Pyramid,
                      top_lefts: TopLefts, ratio: Ratio) -> Pyramid:
        """Local branch on full-resolution crops, fed their global regions (G2L)."""
        return self.local_branch(patches, crop_shared(global_pyramid.shared(), top_lefts, ratio))

    def l2g_pyramid(self, image_global: Tensor, merged: SharedFeatures) -> Pyramid:
        """Stage-3 global branch fed by the merged local features (L2G)."""
        if self.l2g_branch is None:
            raise RuntimeError("this model has no local-to-global branch (stage 3 not trained)")
        return self.l2g_branch(image_global, merged)

    def aggregated(self, local_ps3: Tensor, global_ps3: Tensor, top_lefts: TopLefts,
                   ratio: Ratio) -> tuple[Tensor, Optional[Tensor]]:
        """Aggregation logits of each crop and the feature-map regularisation term.

        The term is None when :attr:`fmreg` is off (a model prepared for inference).
        """
        region = resize(crop_regions(global_ps3, top_lefts, ratio), local_ps3.shape[-2:])
        logits = self.aggregate(torch.cat([local_ps3, region.to(local_ps3.dtype)], dim=1))
        return logits, F.mse_loss(local_ps3, region) if self.fmreg else None

    def merge_local(self, global_pyramid: Pyramid, patches: Tensor, top_lefts: TopLefts,
                    ratio: Ratio, batch_size: Optional[int] = None) -> SharedFeatures:
        """Run the local branch on all crops of one image and merge them (L2G input)."""
        batch_size = batch_size or len(top_lefts)
        parts = [slice(start, start + batch_size) for start in range(0, len(top_lefts), batch_size)]
        return self.merge_local_keeping_ps3(global_pyramid, patches, top_lefts, ratio, parts)[0]

    def merge_local_keeping_ps3(self, global_pyramid: Pyramid, patches: Tensor,
                                top_lefts: TopLefts, ratio: Ratio, parts: Sequence[slice]
                                ) -> tuple[SharedFeatures, list[Tensor]]:
        """:meth:`merge_local` over the crops in ``parts``, and each part's local ``ps3``.

        Stage-3 training needs both; one pass of the local branch gives them.
        """
        canvas = LocalToGlobalCanvas(global_pyramid.shared())
        kept = []
        for part in parts:
            with torch.no_grad():
                local = self.local_pyramid(patches[part], global_pyramid, top_lefts[part], ratio)
            canvas.add(local.shared(), top_lefts[part], ratio)
            kept.append(local.ps3)
        patch = (patches.shape[-2], patches.shape[-1])
        image = (int(round(patch[0] / ratio[0])), int(round(patch[1] / ratio[1])))
        return canvas.finish(coverage_template(top_lefts, patch, image, patches.device)), kept

    # -- reference semantics ---------------------------------------------

    def reference_forward(self, image_global: Tensor, patches: Tensor, top_lefts: TopLefts,
                          ratio: Ratio) -> dict[str, Optional[Tensor]]:
        """What the reference implementation computes for one image.

        Returns logits at 1/4 resolution: ``aggregated`` and ``local`` per crop,
        ``global`` for the image, and ``fmreg`` (the MSE between the local ps3
        and the cropped global ps3). Without an L2G branch this is the stage-2
        model; with one, the stage-3 model, where ``patches`` must be all the
        crops of the image.
        """
        context = self.global_pyramid(image_global)
        local = self.local_pyramid(patches, context, top_lefts, ratio)
        final = context
        if self.has_l2g:
            merged = self.merge_local(context, patches, top_lefts, ratio)
            final = self.l2g_pyramid(image_global, merged)
        aggregated, fmreg = self.aggregated(local.ps3, final.ps3, top_lefts, ratio)
        return {"aggregated": aggregated, "local": local.logits, "global": final.logits,
                "fmreg": fmreg}
