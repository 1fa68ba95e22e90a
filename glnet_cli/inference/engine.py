"""The inference engine: global context per block, local crops in batches, blended tiles.

For each context block the global branch runs once on a decimated read of the
block (stage 3 first merges the local features of the block's own crop grid
into the local-to-global branch). The crops that take their context from the
block are then read window by window by reader threads (raw pixels, scaled on
the device), run in batches on the device, and their class probabilities
cached there at the network's 1/4 resolution until every crop touching an
output tile is done; the tile is then blended and reduced to uint8 classes on
the device by blending threads, and written by a writer thread. Memory holds
the blocks and tiles in flight, never a scene-sized array.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import resource
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from glnet_cli.classes import IGNORE_INDEX
from glnet_cli.device import DTYPES, resolve_precision
from glnet_cli.errors import GlnetWarning, InputError
from glnet_cli.inference.blend import CropResult, TileBlender
from glnet_cli.inference.grid import Block, ScenePlan, plan_scene
from glnet_cli.inference.memory import (MB, MEMORY_BUDGET_MB, MemoryEstimate, NetworkShape,
                                        auto_batch_size, estimate, largest_auto_batch, weight_bytes)
from glnet_cli.inference.workers import BackgroundWorker, Prefetcher
from glnet_cli.io.checkpoint import ModelFile
from glnet_cli.io.paths import atomic_output, check_distinct, check_output
from glnet_cli.io.raster import (BLOCK_CACHE_MB, SceneInfo, SceneReader, bounded_block_cache,
                                 inspect_scene)
from glnet_cli.io.windows import TILE_SIZE, Box
from glnet_cli.io.writer import MaskWriter, OutputFile, OutputOptions, output_options
from glnet_cli.progress_callback import ProgressCallback
from models.fpn import Pyramid
from models.glnet import LocalToGlobalCanvas, coverage_template
from models.inference import prepare_for_inference

log = logging.getLogger(__name__)

#: Scene / model pixel-size ratios that run without a warning about scale.
GSD_RATIO_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class SegmentOptions:
    """How to run the network; one set serves every scene of a batch."""

    stage: Optional[int] = None
    #: Crops per forward pass; None: the most the memory budget allows (up to 6).
    batch_size: Optional[int] = None
    #: Least overlap between neighbouring crops; None: 64 px, or a quarter of a small crop.
    overlap: Optional[int] = None
    #: fp32, fp16, bf16, or auto: what the device computes fastest (see resolve_precision).
    precision: str = "fp32"
    bands: Optional[Sequence[int]] = None
    #: The scenes' nodata value when their files declare none (``--nodata``).
    nodata: Optional[float] = None


@dataclass
class SegmentResult:
    """What one scene's run did, for the summary line and the batch report."""

    input: str
    output: str
    seconds: float = 0.0
    pixels: int = 0
    crops_run: int = 0
    crops_skipped: int = 0
    #: The precision the network computed in (``auto`` resolved).
    precision: str = "fp32"
    #: Stage 3's local-to-global passes over crops (besides ``crops_run``).
    l2g_passes: int = 0
    histogram: dict[str, int] = field(default_factory=dict)
    peak_host_mb: float = 0.0
    peak_gpu_mb: Optional[float] = None
    all_nodata: bool = False
    read_log: Optional[list] = None

    @property
    def mpx_per_s(self) -> float:
        return self.pixels / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass
class PlanSummary:
    """``--dry-run``: what a run would do, without running the network."""

    scene: SceneInfo
    plan: ScenePlan
    stage: int
    crops_empty: int
    #: Network passes over crops: the main pass, plus the L2G pass at stage 3.
    crops_to_run: int
    #: The precision the network would compute in, and the crops per forward pass.
    precision: str
    batch_size: int
    memory: MemoryEstimate

    @property
    def estimated_peak_mb(self) -> float:
        return self.memory.host_mb

    @property
    def estimated_gpu_mb(self) -> Optional[float]:
        return self.memory.gpu_mb


# -- items the reader threads hand to the device loop --------------------------

def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


#: Threads reading the scene, each with its own dataset handle (GDAL's are not shareable):
#: one on a small machine, where a second would decode again the blocks that neighbouring
#: windows share (a handle caches its own) on the same few cores; more where cores are
#: plenty and a GPU must not wait for them.
READ_THREADS = max(1, min(4, _cores() // 4))
#: Threads blending finished tiles (on the CPU; on a GPU they only queue its work), beside
#: the one that writes them: the costliest step when the network is fast, split in two.
BLEND_THREADS = max(2, READ_THREADS)

#: Data types torch lacks, widened (exactly) for the trip to the device.
_WIDER = {"uint16": np.int32, "uint32": np.int64}


@dataclass
class _Pixels:
    """Raw pixels of a batch and their valid masks, on the host; scaled on the device."""

    raw: torch.Tensor  # (B, C, h, w), the scene's data type (or a wider one)
    valid: torch.Tensor  # (B, h, w) bool
    all_valid: bool


@dataclass
class _GlobalView:
    block: int
    pixels: _Pixels  # one image of size_g x size_g


@dataclass
class _CropBatch:
    block: int
    l2g_pass: bool
    indexes: list[int]  # crop indexes (main pass) or positions in the block grid (L2G pass)
    boxes: list[Box]
    pixels: Optional[_Pixels]  # None when every crop was empty
    valid: list[np.ndarray]
    skipped: list[int] = field(default_factory=list)


@dataclass
class _PassDone:
    block: int


_Item = Union[_GlobalView, _CropBatch, _PassDone]


class Segmenter:
    """A loaded model on a device, ready to segment any number of scenes."""

    def __init__(self, model_file: ModelFile, device: torch.device,
                 options: SegmentOptions = SegmentOptions()) -> None:
        self.model_file = model_file
        self.info = model_file.info
        self.device = device
        if options.overlap is None:
            options = dataclasses.replace(options, overlap=min(64, self.info.size_p // 4))
        if options.overlap >= self.info.size_p:
            raise InputError(f"--overlap {options.overlap} must be smaller than the crop size "
                             f"{self.info.size_p}")
        self.stage = self._choose_stage(options.stage)
        #: The precision the network computes in (``auto`` resolved for this device).
        self.precision = resolve_precision(device, options.precision)
        # In place: the model file's network becomes this segmenter's (a copy would
        # double the weights' memory).
        self.model = prepare_for_inference(model_file.model, self.stage,
                                           DTYPES[self.precision]).to(device)
        self.options = options
        if options.batch_size is None:
            self.options = dataclasses.replace(options, batch_size=self._auto_batch_size())

    def _choose_stage(self, asked: Optional[int]) -> int:
        available = self.info.stage
        has_l2g = self.model_file.model.has_l2g
        if asked is None:
            if available < 2:
                raise InputError("the model file holds only a trained global branch (stage 1); "
                                 "train stage 2 first (glnet train --stage 2)")
            return 3 if has_l2g and available >= 3 else 2
        if asked == 3 and not (has_l2g and available >= 3):
            raise InputError(f"--stage 3 needs a model trained through stage 3; this one "
                             f"reached stage {available}")
        if asked == 2 and available < 2:
            raise InputError("--stage 2 needs a model trained through stage 2")
        return asked

    # -- planning ------------------------------------------------------------

    def inspect(self, path: str) -> SceneInfo:
        """Open and check a scene against the model (bands, data type, scale)."""
        scene = inspect_scene(path, self.options.bands, self.info.config.in_channels,
                              self.options.nodata)
        self.info.scaling.check(scene.dtype, path)
        low, high = GSD_RATIO_RANGE
        if scene.gsd and self.info.gsd and not low <= scene.gsd / self.info.gsd <= high:
            warnings.warn(f"{path}: pixels are {scene.gsd:.3g} units, the model was trained on "
                          f"{self.info.gsd:.3g}; results may suffer", GlnetWarning, stacklevel=2)
        return scene

    def plan(self, scene: SceneInfo) -> ScenePlan:
        return plan_scene(scene.height, scene.width, self.info.size_p, self.info.context_size,
                          self.options.overlap)

    def dry_run(self, path: str) -> PlanSummary:
        """The plan and an estimate of empty crops (from one small decimated mask read)."""
        scene = self.inspect(path)
        plan = self.plan(scene)
        empty = _estimate_empty(scene, plan)
        runs = len(plan.crops) - empty + self._l2g_crop_count(plan)
        return PlanSummary(scene, plan, self.stage, empty, runs, self.precision,
                           self.options.batch_size, self._estimate_memory(plan.width))

    def _l2g_crop_count(self, plan: ScenePlan) -> int:
        if self.stage != 3:
            return 0
        return sum(len(plan.block_crop_grid(b, self.options.overlap)) for b in plan.blocks)

    def _estimate_memory(self, scene_width: int,
                         batch_size: Optional[int] = None) -> MemoryEstimate:
        """Peak memory of a run over a scene ``scene_width`` pixels wide, by part.

        From this process as it stands (libraries and prepared model loaded), plus
        GDAL's capped block cache, the crops and tiles in flight and the network's
        activations (on the host, or on the GPU with the weights).
        """
        cfg = self.info.config
        q = self.info.size_p // 4
        cached_crop = cfg.n_classes * q * q * 2 + self.info.size_p ** 2
        step = max(1, self.info.size_p - self.options.overlap)
        crops_in_flight = math.ceil(scene_width / step) * (
            math.ceil(self.info.context_size / step) // 2 + 2)
        tiles = 2 * TILE_SIZE ** 2 * (cfg.n_classes * 4 + 8)  # the tile being blended, its output
        return estimate(self._network_shape(), batch_size or self.options.batch_size,
                        weight_bytes(self.model), crops_in_flight * cached_crop + tiles,
                        BLOCK_CACHE_MB * MB, self.device.type == "cuda")

    def _network_shape(self) -> NetworkShape:
        return NetworkShape(self.info.size_p, self.info.size_g,
                            self.model.global_branch.backbone.out_channels,
                            self.info.config.width, DTYPES[self.precision].itemsize, self.stage)

    def _auto_batch_size(self) -> int:
        """The largest batch worth its memory (:func:`largest_auto_batch`) that fits the budget.

        Judged for a scene one context block wide: wider scenes hold a few more
        crops in flight, which the budget's margin absorbs.
        """
        def fits(size: int) -> bool:
            memory = self._estimate_memory(self.info.context_size, size)
            peak = memory.gpu_mb if memory.gpu is not None else memory.host_mb
            return peak <= MEMORY_BUDGET_MB
        largest = largest_auto_batch(self._network_shape(), self.device.type == "cuda")
        return auto_batch_size(fits, largest)

    # -- running -------------------------------------------------------------

    def run(self, path: str, output: str, *, overwrite: bool = False, cog: bool = False,
            probabilities: Optional[str] = None, creation_options: Iterable[tuple[str, str]] = (),
            progress: Optional[ProgressCallback] = None,
            record_reads: bool = False) -> SegmentResult:
        """Segment ``path`` into ``output``; nothing is left at ``output`` if it fails."""
        options = output_options(creation_options, cog)
        check_distinct([output, probabilities], [path])
        scene = self.inspect(path)
        check_output(output, overwrite)
        if probabilities:
            check_output(probabilities, overwrite)
        plan = self.plan(scene)
        result = SegmentResult(input=path, output=output, pixels=scene.pixels,
                               precision=self.precision)
        started = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        with contextlib.ExitStack() as stack:
            stack.enter_context(bounded_block_cache())
            # Entered last, published first: the mask is the output that matters most.
            probs = (OutputFile(stack.enter_context(atomic_output(
                probabilities, ".tif", overwrite=overwrite)), probabilities)
                if probabilities else None)
            mask = OutputFile(stack.enter_context(atomic_output(output, ".tif",
                                                                overwrite=overwrite)), output)
            self._stream(scene, plan, mask, probs, options, result, progress, record_reads)
        result.seconds = time.perf_counter() - started
        result.peak_host_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.device.type == "cuda":
            result.peak_gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        if result.all_nodata:
            warnings.warn(f"{path}: has no valid pixels; wrote an all-nodata mask",
                          GlnetWarning, stacklevel=2)
        return result

    def _stream(self, scene: SceneInfo, plan: ScenePlan, mask: OutputFile,
                probs: Optional[OutputFile], options: OutputOptions, result: SegmentResult,
                progress: Optional[ProgressCallback], record_reads: bool) -> None:
        classes = self.info.classes
        tags = {"GLNET_MODEL_STAGE": str(self.stage),
                "GLNET_MODEL": json.dumps(self.info.to_dict()["architecture"])}
        writer = MaskWriter(mask, scene, classes, tags, options, probs)
        blender = TileBlender(self.info.size_p, self.options.overlap, len(classes),
                              probs is not None)
        output = BackgroundWorker(writer.write, lambda job: blender.finish(*job), BLEND_THREADS)
        read_log: list = []
        reader = Prefetcher(self._read_jobs(plan),
                            lambda: _logged_reader(scene, read_log if record_reads else None),
                            READ_THREADS)
        try:
            self._device_loop(plan, reader, output, result, progress)
            output.finish()
            writer.finish()
        except BaseException:
            output.abandon()
            raise
        finally:
            reader.close()
            writer.close()  # on failure; a no-op after finish()
        result.read_log = read_log if record_reads else None
        histogram = writer.histogram
        result.histogram = {classes.name_of(i): int(n) for i, n in enumerate(histogram[:255])
                            if n}
        result.all_nodata = int(histogram[IGNORE_INDEX]) == scene.pixels

    def _device_loop(self, plan: ScenePlan, items: Iterable, output: BackgroundWorker,
                     result: SegmentResult, progress: Optional[ProgressCallback]) -> None:
        tiles_left = [len(crops) for crops in plan.tile_crops]
        crops_left = [len(tiles) for tiles in plan.crop_tiles]
        cache: dict[int, CropResult] = {}
        total = len(plan.crops) + self._l2g_crop_count(plan)
        done = 0
        started = time.perf_counter()
        context: Optional[Pyramid] = None
        final: Optional[Pyramid] = None
        canvas: Optional[LocalToGlobalCanvas] = None
        ran_l2g: list[tuple[float, float]] = []
        image: Optional[torch.Tensor] = None
        for item in items:
            if isinstance(item, _GlobalView):
                image = self._network_input(item.pixels)
                context = final = self._forward(lambda: self.model.global_pyramid(image))
                canvas = LocalToGlobalCanvas(context.shared()) if self.stage == 3 else None
                ran_l2g = []
                continue
            block = plan.blocks[item.block]
            if isinstance(item, _PassDone):
                final = self._finish_l2g(image, canvas, ran_l2g, block)
                continue
            done += len(item.boxes) + len(item.skipped)
            if item.pixels is not None:
                patches = self._network_input(item.pixels)
                tl, ratio = _fractions(item.boxes, block.box)
                if item.l2g_pass:
                    local = self._forward(lambda: self.model.local_pyramid(patches, context, tl,
                                                                           ratio))
                    canvas.add(local.shared(), tl, ratio)
                    ran_l2g.extend(tl)
                    result.l2g_passes += len(item.boxes)
                else:
                    probs = self._predict(patches, context, final, tl, ratio)
                    for index, box, valid, p in zip(item.indexes, item.boxes, item.valid, probs):
                        cache[index] = CropResult(box, p, valid)
                    result.crops_run += len(item.boxes)
            if not item.l2g_pass:
                result.crops_skipped += len(item.skipped)
                for index in list(item.indexes) + item.skipped:
                    self._release(index, plan, tiles_left, crops_left, cache, output)
            if progress is not None:
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress(done, total, mpx_per_s=plan.height * plan.width / 1e6 * done / total
                         / elapsed, **{"pass": "L2G" if item.l2g_pass else "prediction"})

    def _release(self, crop: int, plan: ScenePlan, tiles_left: list[int],
                 crops_left: list[int], cache: dict[int, CropResult],
                 output: BackgroundWorker) -> None:
        """A crop is done: hand every tile it completes to the writer, drop unneeded crops."""
        for tile in plan.crop_tiles[crop]:
            tiles_left[tile] -= 1
            if tiles_left[tile]:
                continue
            members = plan.tile_crops[tile]
            output.submit((plan.tiles[tile], [cache[c] for c in members if c in cache]))
            for member in members:
                crops_left[member] -= 1
                if not crops_left[member]:
                    cache.pop(member, None)

    def _forward(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` without autograd; each branch computes in its weights' precision."""
        with torch.inference_mode():
            return fn()

    def _predict(self, patches: torch.Tensor, context: Pyramid, final: Pyramid,
                 tl: list[tuple[float, float]], ratio: tuple[float, float]) -> torch.Tensor:
        def run() -> torch.Tensor:
            local = self.model.local_pyramid(patches, context, tl, ratio)
            logits, _ = self.model.aggregated(local.ps3, final.ps3, tl, ratio)
            return torch.softmax(logits.float(), dim=1)
        return self._forward(run).to(torch.float16)  # stays on the device for blending

    def _finish_l2g(self, image: torch.Tensor, canvas: LocalToGlobalCanvas,
                    ran: list[tuple[float, float]], block: Block) -> Pyramid:
        size = (block.box.height, block.box.width)
        patch = (self.info.size_p, self.info.size_p)
        template = coverage_template(ran, patch, size, self.device)
        merged = canvas.finish(template)
        return self._forward(lambda: self.model.l2g_pyramid(image, merged))

    # -- the reader threads --------------------------------------------------

    def _read_jobs(self, plan: ScenePlan) -> Iterator[Callable[[SceneReader], _Item]]:
        """Every read of a run, in the order the device loop wants the results."""
        for b, block in enumerate(plan.blocks):
            yield functools.partial(self._read_view, b, block.box)
            if self.stage == 3:
                grid = plan.block_crop_grid(block, self.options.overlap)
                yield from self._batch_jobs(b, True, list(range(len(grid))), grid)
                yield functools.partial(_pass_done, b)
            yield from self._batch_jobs(b, False, list(block.crops),
                                        [plan.crops[i] for i in block.crops])

    def _batch_jobs(self, block: int, l2g_pass: bool, indexes: list[int],
                    boxes: list[Box]) -> Iterator[Callable[[SceneReader], _CropBatch]]:
        size = self.options.batch_size
        for start in range(0, len(boxes), size):
            yield functools.partial(self._read_batch, block, l2g_pass,
                                    indexes[start:start + size], boxes[start:start + size])

    def _read_view(self, block: int, box: Box, reader: SceneReader) -> _GlobalView:
        size_g = self.info.size_g
        view = reader.read_decimated(box, (size_g, size_g))
        return _GlobalView(block, self._host_pixels([view.data], [view.valid]))

    def _read_batch(self, block: int, l2g_pass: bool, indexes: list[int], boxes: list[Box],
                    reader: SceneReader) -> _CropBatch:
        batch = _CropBatch(block, l2g_pass, [], [], None, [])
        data = []
        for index, box in zip(indexes, boxes):
            patch = reader.read(box)
            if not patch.valid.any():
                batch.skipped.append(index)
                continue
            batch.indexes.append(index)
            batch.boxes.append(box)
            batch.valid.append(patch.valid)
            data.append(patch.data)
        if data:
            batch.pixels = self._host_pixels(data, batch.valid)
        return batch

    def _host_pixels(self, arrays: list[np.ndarray], valid: list[np.ndarray]) -> _Pixels:
        """Raw pixels for the device (a quarter of the bytes of float32 for uint8 scenes)."""
        raw = np.stack(arrays)
        raw = torch.from_numpy(raw.astype(_WIDER.get(raw.dtype.name, raw.dtype), copy=False))
        mask = torch.from_numpy(np.stack(valid))
        if self.device.type == "cuda":  # page-locked, so the copy to the GPU runs async
            raw, mask = raw.pin_memory(), mask.pin_memory()
        return _Pixels(raw, mask, all(v.all() for v in valid))

    def _network_input(self, pixels: _Pixels) -> torch.Tensor:
        """Scale raw pixels as in training (:meth:`InputScaling.apply`); invalid ones become 0.

        In place, skipping what changes no value (subtracting 0, multiplying by 1).
        """
        raw = pixels.raw.to(self.device, non_blocking=True)
        if raw.dtype.is_floating_point:  # as numpy: float32 first, whatever the file holds
            raw = raw.to(torch.float32)
        offset, scale = self._input_scaling  # float32 tensors: integers convert on the way
        x = raw * scale if offset is None else (raw - offset).mul_(scale)
        if not pixels.all_valid:
            x.mul_(pixels.valid.to(self.device, non_blocking=True)[:, None])
        return x

    @functools.cached_property
    def _input_scaling(self) -> tuple[Optional[torch.Tensor], torch.Tensor]:
        """(offset or None where it is all 0, scale), shaped (1, C, 1, 1) on the device."""
        def on_device(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        offset = self.info.scaling.offset
        return (on_device(offset) if any(offset) else None), on_device(self.info.scaling.scale)


def _pass_done(block: int, reader: SceneReader) -> _PassDone:
    return _PassDone(block)


@contextlib.contextmanager
def _logged_reader(scene: SceneInfo, read_log: Optional[list]) -> Iterator[SceneReader]:
    """A reader for one thread; its reads join ``read_log`` (if given) when it closes."""
    with SceneReader(scene, record=read_log is not None) as reader:
        try:
            yield reader
        finally:
            if read_log is not None:
                read_log.extend(reader.read_log)


def _fractions(boxes: Sequence[Box], block: Box) -> tuple[list[tuple[float, float]],
                                                          tuple[float, float]]:
    """Crop positions relative to their block, as GLNet's feature sharing wants them."""
    tl = [((b.row - block.row) / block.height, (b.col - block.col) / block.width) for b in boxes]
    size = boxes[0].height
    return tl, (size / block.height, size / block.width)


def _estimate_empty(scene: SceneInfo, plan: ScenePlan, longest: int = 1024) -> int:
    """Crops with no valid pixel, judged from one decimated read of the whole mask."""
    factor = max(1.0, max(scene.height, scene.width) / longest)
    shape = (max(1, round(scene.height / factor)), max(1, round(scene.width / factor)))
    with SceneReader(scene) as reader:
        valid = reader.read_decimated(Box(0, 0, scene.height, scene.width), shape).valid
    sy, sx = shape[0] / scene.height, shape[1] / scene.width
    empty = 0
    for crop in plan.crops:
        rows = slice(int(crop.row * sy), max(int(crop.row * sy) + 1, math.ceil(crop.bottom * sy)))
        cols = slice(int(crop.col * sx), max(int(crop.col * sx) + 1, math.ceil(crop.right * sx)))
        empty += not valid[rows, cols].any()
    return empty
