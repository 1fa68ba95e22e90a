"""The prepared network on its device, block by block: global maps, L2G merge, crop predictions.

Raw pixels arrive from the reader threads and are scaled here, on the device,
as training scaled them. Each branch computes in its weights' precision
(:func:`models.inference.prepare_for_inference`), without autograd; the class
probabilities stay on the device, in float16, for blending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from glnet_cli.inference.reader import Pixels
from glnet_cli.io.model.checkpoint import InputScaling
from glnet_cli.io.raster.windows import Box
from models.fpn import Pyramid
from models.glnet import GLNet, LocalToGlobalCanvas, coverage_template


class DeviceScaling:
    """Raw pixels to network input on the device, as in training (:meth:`InputScaling.apply`).

    Invalid pixels become 0. In place, skipping what changes no value
    (subtracting 0, multiplying by 1).
    """

    def __init__(self, scaling: InputScaling, device: torch.device) -> None:
        def on_device(values: list[float]) -> torch.Tensor:  # shaped (1, C, 1, 1)
            return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(device)
        self._device = device
        self._offset = on_device(scaling.offset) if any(scaling.offset) else None
        self._scale = on_device(scaling.scale)

    def __call__(self, pixels: Pixels) -> torch.Tensor:
        raw = pixels.raw.to(self._device, non_blocking=True)
        if raw.dtype.is_floating_point:  # as numpy: float32 first, whatever the file holds
            raw = raw.to(torch.float32)
        # float32 offset and scale: integers convert on the way
        x = raw * self._scale if self._offset is None else (raw - self._offset).mul_(self._scale)
        if not pixels.all_valid:
            x.mul_(pixels.valid.to(self._device, non_blocking=True)[:, None])
        return x


@dataclass
class BlockContext:
    """A block's global view and maps, while its crops run."""

    box: Box
    image: torch.Tensor
    #: The global maps the local branch reads.
    maps: Pyramid
    #: The global maps aggregation reads: ``maps``, or at stage 3 the L2G-merged ones.
    final: Pyramid
    canvas: Optional[LocalToGlobalCanvas]
    #: Positions of the crops the L2G pass ran.
    ran_l2g: list[tuple[float, float]] = field(default_factory=list)

    @property
    def l2g_canvas(self) -> LocalToGlobalCanvas:
        """The canvas of the local-to-global pass (stage 3 only)."""
        if self.canvas is None:
            raise ValueError("a local-to-global pass needs a stage-3 block")
        return self.canvas


class BlockNetwork:
    """A prepared GLNet on one device, run one context block at a time."""

    def __init__(self, model: GLNet, stage: int, size_p: int, scaling: InputScaling,
                 device: torch.device) -> None:
        self.model = model
        self.stage = stage
        self.size_p = size_p
        self.device = device
        self._scale = DeviceScaling(scaling, device)

    def block(self, box: Box, view: Pixels) -> BlockContext:
        """The global maps of the block ``box`` from its decimated ``view``."""
        image = self._scale(view)
        maps = _forward(lambda: self.model.global_pyramid(image))
        canvas = LocalToGlobalCanvas(maps.shared()) if self.stage == 3 else None
        return BlockContext(box, image, maps, maps, canvas)

    def add_l2g(self, context: BlockContext, pixels: Pixels, boxes: Sequence[Box]) -> None:
        """Stage 3: crops of the block's own grid onto its local-to-global canvas."""
        patches = self._scale(pixels)
        tl, ratio = _fractions(boxes, context.box)
        local = _forward(lambda: self.model.local_pyramid(patches, context.maps, tl, ratio))
        context.l2g_canvas.add(local.shared(), tl, ratio)
        context.ran_l2g.extend(tl)

    def finish_l2g(self, context: BlockContext) -> None:
        """Stage 3: the block's global maps, merged with every crop the L2G pass added."""
        size = (context.box.height, context.box.width)
        patch = (self.size_p, self.size_p)
        template = coverage_template(context.ran_l2g, patch, size, self.device)
        merged = context.l2g_canvas.finish(template)
        context.final = _forward(lambda: self.model.l2g_pyramid(context.image, merged))

    def predict(self, context: BlockContext, pixels: Pixels,
                boxes: Sequence[Box]) -> torch.Tensor:
        """Class probabilities of crops, (B, n_classes, h/4, w/4) float16 on the device."""
        patches = self._scale(pixels)
        tl, ratio = _fractions(boxes, context.box)

        def run() -> torch.Tensor:
            local = self.model.local_pyramid(patches, context.maps, tl, ratio)
            logits, _ = self.model.aggregated(local.ps3, context.final.ps3, tl, ratio)
            return torch.softmax(logits.float(), dim=1)
        return _forward(run).to(torch.float16)  # stays on the device for blending


def _forward(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` without autograd; each branch computes in its weights' precision."""
    with torch.inference_mode():
        return fn()


def _fractions(boxes: Sequence[Box], block: Box) -> tuple[list[tuple[float, float]],
                                                          tuple[float, float]]:
    """Crop positions relative to their block, as GLNet's feature sharing wants them."""
    tl = [((b.row - block.row) / block.height, (b.col - block.col) / block.width) for b in boxes]
    size = boxes[0].height
    return tl, (size / block.height, size / block.width)
