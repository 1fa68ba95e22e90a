"""What GLNet computes in each training stage, and its validation predictions.

Each stage's loss is an ``nn.Module`` so that DistributedDataParallel can wrap
it: one call of the module is one unit of work (stage 1: a batch of global
views; stage 2: a sub-batch of crops of one tile; stage 3: one tile), and the
gradients of all the units of a step are summed before the optimiser step, as
in the reference implementation. Losses are computed at the logits' 1/4
resolution with labels downsampled by nearest neighbour.
"""

from __future__ import annotations

from typing import Callable, ContextManager, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from glnet_cli.training.dataset import Sample, required
from models.fpn import Pyramid, SharedFeatures, resize
from models.glnet import FMREG_WEIGHT, GLNet, Ratio, TopLefts

Tensor = torch.Tensor
#: A stage's loss module returns the loss, the logits it scored and their labels.
StepOutput = tuple[Tensor, Tensor, Tensor]


def target_for(labels: Tensor, logits: Tensor) -> Tensor:
    """(N, H, W) labels downsampled (nearest) to the logits' size, as class ids."""
    small = F.interpolate(labels[:, None].float(), size=logits.shape[-2:], mode="nearest")
    return small[:, 0].long()


def parts(count: int, size: int) -> list[slice]:
    """As few consecutive sub-batches of at most ``size`` crops as cover ``count``, of even size.

    Even sizes keep the memory per pass level, and avoid a last sub-batch of
    one crop, which BatchNorm cannot train on when C5 is a single pixel.
    """
    n = -(-count // size)
    edges = [round(i * count / n) for i in range(n + 1)]
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


class StageLoss(nn.Module):
    """A stage's loss around the whole model (DDP only syncs what requires grad)."""

    def __init__(self, model: GLNet, criterion: nn.Module) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion


class GlobalLoss(StageLoss):
    """Stage 1: focal loss of the global branch on the downsampled tiles."""

    def forward(self, images: Tensor, labels: Tensor) -> StepOutput:
        logits = self.model.global_pyramid(images).logits
        target = target_for(labels, logits)
        return self.criterion(logits, target), logits, target


class LocalLoss(StageLoss):
    """Stage 2, one sub-batch of crops: local + aggregated focal loss + feature regulariser."""

    def forward(self, patches: Tensor, labels: Tensor, context: Pyramid, top_lefts: TopLefts,
                ratio: Ratio) -> StepOutput:
        local = self.model.local_pyramid(patches, context, top_lefts, ratio)
        logits, fmreg = self.model.aggregated(local.ps3, context.ps3, top_lefts, ratio)
        target = target_for(labels, logits)
        loss = (self.criterion(local.logits, target) + self.criterion(logits, target)
                + FMREG_WEIGHT * required(fmreg, "feature-map regulariser"))
        return loss, logits, target


class L2GLoss(StageLoss):
    """Stage 3, one tile: the L2G global branch's loss plus every crop's aggregated loss.

    The aggregation of each sub-batch is checkpointed: only its inputs are kept
    for the backward pass, so memory grows with the local ``ps3`` maps (which
    are needed anyway) rather than with every sub-batch's activations.
    """

    def forward(self, image_global: Tensor, label_global: Tensor, merged: SharedFeatures,
                local_ps3: Sequence[Tensor], patch_labels: Sequence[Tensor],
                top_lefts: Sequence[TopLefts], ratio: Ratio) -> StepOutput:
        final = self.model.l2g_pyramid(image_global, merged)
        loss = self.criterion(final.logits, target_for(label_global, final.logits))
        all_logits, all_targets = [], []
        for ps3, labels, places in zip(local_ps3, patch_labels, top_lefts):
            logits = checkpoint(self._aggregate, ps3, final.ps3, places, ratio,
                                use_reentrant=False)
            target = target_for(labels, logits)
            loss = loss + self.criterion(logits, target)
            all_logits.append(logits)
            all_targets.append(target)
        return loss, torch.cat(all_logits), torch.cat(all_targets)

    def _aggregate(self, local_ps3: Tensor, global_ps3: Tensor, top_lefts: TopLefts,
                   ratio: Ratio) -> Tensor:
        return self.model.aggregated(local_ps3, global_ps3, top_lefts, ratio)[0]


STAGE_LOSSES: dict[int, type[StageLoss]] = {1: GlobalLoss, 2: LocalLoss, 3: L2GLoss}


def step_inputs(stage: int, model: GLNet, batch: Sequence[Sample], device: torch.device,
                sub_batch: int, autocast: Callable[[], ContextManager]
                ) -> tuple[int, Iterator[tuple]]:
    """How many units a batch makes for ``stage``, and their arguments, made lazily.

    What the frozen branches compute for a unit (the stage-1 context pyramid,
    the merged local features, the local ``ps3``) is computed here without
    gradients.
    """
    if stage == 1:
        images = torch.stack([s.image_global for s in batch]).to(device)
        labels = torch.stack([required(s.label_global, "global labels") for s in batch])
        labels = labels.to(device)
        return 1, iter([(images, labels)])
    if stage == 2:
        count = sum(len(parts(len(s.boxes), sub_batch)) for s in batch)
        return count, _stage2_inputs(model, batch, device, sub_batch, autocast)
    return len(batch), _stage3_inputs(model, batch, device, sub_batch, autocast)


def _tile_inputs(model: GLNet, sample: Sample, device: torch.device,
                 autocast: Callable[[], ContextManager]) -> tuple[Tensor, Tensor, Tensor, Pyramid]:
    image = sample.image_global[None].to(device)
    with torch.no_grad(), autocast():
        context = model.global_pyramid(image)
    patches = required(sample.patches, "crops").to(device)
    return image, patches, required(sample.patch_labels, "crop labels").to(device), context


def _stage2_inputs(model: GLNet, batch: Sequence[Sample], device: torch.device,
                   sub_batch: int, autocast: Callable[[], ContextManager]) -> Iterator[tuple]:
    for sample in batch:
        _, patches, labels, context = _tile_inputs(model, sample, device, autocast)
        for part in parts(len(sample.boxes), sub_batch):
            yield patches[part], labels[part], context, sample.top_lefts[part], sample.ratio


def _stage3_inputs(model: GLNet, batch: Sequence[Sample], device: torch.device,
                   sub_batch: int, autocast: Callable[[], ContextManager]) -> Iterator[tuple]:
    for sample in batch:
        image, patches, labels, context = _tile_inputs(model, sample, device, autocast)
        places, ratio = sample.top_lefts, sample.ratio
        chunks = parts(len(places), sub_batch)
        with torch.no_grad(), autocast():
            merged, local_ps3 = model.merge_local_keeping_ps3(context, patches, places, ratio,
                                                              chunks)
        label_global = required(sample.label_global, "global labels")
        yield (image, label_global[None].to(device), merged, local_ps3,
               [labels[p] for p in chunks], [places[p] for p in chunks], ratio)


@torch.no_grad()
def predict(model: GLNet, sample: Sample, stage: int, device: torch.device,
            sub_batch: int) -> Tensor:
    """Class probabilities (C, H, W) of an un-augmented tile, as the model of ``stage`` sees it.

    Stage 1: the global logits upsampled and softmaxed. Stages 2 and 3: each
    crop's aggregated logits, upsampled and softmaxed, averaged where crops
    overlap.
    """
    image = sample.image_global[None].to(device)
    context = model.global_pyramid(image)
    if stage == 1:
        return resize(context.logits.float(), sample.shape).softmax(1)[0]
    patches = required(sample.patches, "crops").to(device)
    places, ratio = sample.top_lefts, sample.ratio
    final = context
    if stage == 3:
        final = model.l2g_pyramid(image, model.merge_local(context, patches, places, ratio,
                                                           sub_batch))
    probs = torch.zeros((model.config.n_classes, *sample.shape), device=device)
    count = torch.zeros(sample.shape, device=device)
    for part in parts(len(places), sub_batch):
        local = model.local_pyramid(patches[part], context, places[part], ratio)
        logits, _ = model.aggregated(local.ps3, final.ps3, places[part], ratio)
        crop_probs = resize(logits.float(), patches.shape[-2:]).softmax(1)
        for box, prob in zip(sample.boxes[part], crop_probs):
            probs[:, box.row:box.bottom, box.col:box.right] += prob
            count[box.row:box.bottom, box.col:box.right] += 1
    return probs / count.clamp_min(1)
