"""The inference engine: global context per block, local crops in batches, blended tiles.

For each context block the global branch runs once on a decimated read of the
block (stage 3 first merges the local features of the block's own crop grid
into the local-to-global branch). The crops that take their context from the
block are then read window by window by reader threads
(:mod:`~glnet_cli.inference.reader`), run in batches on the device
(:mod:`~glnet_cli.inference.network`), and their class probabilities cached
there at the network's 1/4 resolution until every crop touching an output
tile is done (:mod:`~glnet_cli.inference.scheduler`); the tile is then blended
and reduced to uint8 classes on the device by blending threads
(:mod:`~glnet_cli.inference.blend`), and written by a writer thread. Memory
holds the blocks and tiles in flight, never a scene-sized array.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import torch

from glnet_cli.classes import IGNORE_INDEX
from glnet_cli.device import DTYPES, resolve_precision
from glnet_cli.errors import GlnetWarning, InputError
from glnet_cli.inference.blend import CropResult, TileBlender
from glnet_cli.inference.estimate import PlanSummary, RunEstimator
from glnet_cli.inference.fit import check_fit, choose_stage
from glnet_cli.inference.grid import ScenePlan, plan_scene
from glnet_cli.inference.memory import MB, peak_rss
from glnet_cli.inference.network import BlockContext, BlockNetwork
from glnet_cli.inference.reader import (
    READ_THREADS,
    CropBatch,
    CropReader,
    GlobalView,
    PassDone,
    Pixels,
)
from glnet_cli.inference.scheduler import TileScheduler
from glnet_cli.inference.segment_options import ResolvedSegmentOptions, SegmentOptions
from glnet_cli.inference.workers import BackgroundWorker
from glnet_cli.io.model.checkpoint import ModelFile
from glnet_cli.io.paths import atomic_output, check_distinct, check_output
from glnet_cli.io.raster.read import SceneInfo, bounded_block_cache
from glnet_cli.io.raster.windows import Box
from glnet_cli.io.raster.writer import (
    FinishedTile,
    MaskWriter,
    OutputFile,
    OutputOptions,
    output_options,
)
from glnet_cli.progress_callback import ProgressCallback
from models.inference import prepare_for_inference

__all__ = ["PlanSummary", "SegmentOptions", "SegmentResult", "Segmenter"]

#: Threads blending finished tiles (on the CPU; on a GPU they only queue its work), beside
#: the one that writes them: the costliest step when the network is fast, split in two.
BLEND_THREADS = max(2, READ_THREADS)
#: An output tile whose crops are all done, with their results: what the blenders take.
TileJob = tuple[Box, list[CropResult]]


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


class Segmenter:
    """A loaded model on a device, ready to segment any number of scenes."""

    def __init__(self, model_file: ModelFile, device: torch.device,
                 options: SegmentOptions = SegmentOptions()) -> None:  # noqa: B008 (frozen)
        self.model_file = model_file
        self.info = model_file.info
        self.device = device
        overlap = (min(64, self.info.size_p // 4) if options.overlap is None
                   else options.overlap)
        if overlap >= self.info.size_p:
            raise InputError(f"--overlap {overlap} must be smaller than the crop size "
                             f"{self.info.size_p}")
        self.stage = choose_stage(model_file, options.stage)
        #: The precision the network computes in (``auto`` resolved for this device).
        self.precision = resolve_precision(device, options.precision)
        # In place: the model file's network becomes this segmenter's (a copy would
        # double the weights' memory).
        self.model = prepare_for_inference(model_file.model, self.stage,
                                           DTYPES[self.precision]).to(device)
        self.network = BlockNetwork(self.model, self.stage, self.info.size_p, self.info.scaling,
                                    device)
        self.estimator = RunEstimator(self.info, self.model, self.stage, self.precision,
                                      overlap, device)
        batch_size = (self.estimator.auto_batch_size() if options.batch_size is None
                      else options.batch_size)
        #: The options given, with the overlap and batch size chosen for this model and device.
        self.options: ResolvedSegmentOptions = options.resolved(overlap, batch_size)

    # -- planning ------------------------------------------------------------

    def inspect(self, path: str, bands: Optional[Sequence[int]] = None) -> SceneInfo:
        """Open and check a scene against the model (:func:`check_fit`): refuse or warn.

        ``bands`` are this scene's own (a STAC asset's, by ``eo:bands``), over the options'.
        """
        fit = check_fit(path, self.info, bands or self.options.bands, self.options.nodata)
        if fit.errors:
            raise InputError(fit.errors[0])
        for message in fit.warnings:
            warnings.warn(message, GlnetWarning, stacklevel=2)
        return fit.scene

    def plan(self, scene: SceneInfo) -> ScenePlan:
        return plan_scene(scene.height, scene.width, self.info.size_p, self.info.context_size,
                          self.options.overlap)

    def dry_run(self, path: str, bands: Optional[Sequence[int]] = None) -> PlanSummary:
        """The plan, an estimate of empty crops and of memory, without running the network."""
        scene = self.inspect(path, bands)
        return self.estimator.summary(scene, self.plan(scene), self.options.batch_size)

    # -- running -------------------------------------------------------------

    def run(self, path: str, output: str, *, overwrite: bool = False, cog: bool = False,
            probabilities: Optional[str] = None, creation_options: Iterable[tuple[str, str]] = (),
            progress: Optional[ProgressCallback] = None, record_reads: bool = False,
            bands: Optional[Sequence[int]] = None) -> SegmentResult:
        """Segment ``path`` (its ``bands``, see :meth:`inspect`) into ``output``; nothing is
        left at ``output`` if it fails."""
        options = output_options(creation_options, cog)
        check_distinct([output, probabilities], [path])
        scene = self.inspect(path, bands)
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
        result.peak_host_mb = peak_rss() / MB
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
        output: BackgroundWorker[TileJob, FinishedTile] = BackgroundWorker(
            writer.write, lambda job: blender.finish(*job), BLEND_THREADS)
        read_log: Optional[list] = [] if record_reads else None
        reader = CropReader(scene, plan, stage=self.stage, size_g=self.info.size_g,
                            batch_size=self.options.batch_size, overlap=self.options.overlap,
                            device=self.device, read_log=read_log)
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
        result.read_log = read_log
        histogram = writer.histogram
        result.histogram = {classes.name_of(i): int(n) for i, n in enumerate(histogram[:255])
                            if n}
        result.all_nodata = int(histogram[IGNORE_INDEX]) == scene.pixels

    def _device_loop(self, plan: ScenePlan, reader: CropReader,
                     output: BackgroundWorker[TileJob, FinishedTile],
                     result: SegmentResult, progress: Optional[ProgressCallback]) -> None:
        """Global maps per block, then its crops' predictions; finished tiles to ``output``."""
        scheduler = TileScheduler(plan)
        total = reader.crop_passes
        done = 0
        started = time.perf_counter()
        context: Optional[BlockContext] = None
        for item in reader:
            if isinstance(item, GlobalView):
                context = self.network.block(plan.blocks[item.block].box, item.pixels)
                continue
            if context is None:
                raise RuntimeError("the reader gave crops before their block's global view")
            if isinstance(item, PassDone):
                self.network.finish_l2g(context)
                continue
            done += len(item.boxes) + len(item.skipped)
            if item.pixels is not None:
                self._run_crops(item, item.pixels, context, scheduler, result)
            if not item.l2g_pass:
                result.crops_skipped += len(item.skipped)
                for crop in list(item.indexes) + item.skipped:
                    for tile in scheduler.done(crop):
                        output.submit(tile)
            if progress is not None:
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress(done, total, mpx_per_s=plan.height * plan.width / 1e6 * done / total
                         / elapsed, **{"pass": "L2G" if item.l2g_pass else "prediction"})

    def _run_crops(self, batch: CropBatch, pixels: Pixels, context: BlockContext,
                   scheduler: TileScheduler, result: SegmentResult) -> None:
        """The network on a batch's ``pixels``: onto the L2G canvas, or predictions to the
        scheduler."""
        if batch.l2g_pass:
            self.network.add_l2g(context, pixels, batch.boxes)
            result.l2g_passes += len(batch.boxes)
            return
        probs = self.network.predict(context, pixels, batch.boxes)
        for index, box, valid, p in zip(batch.indexes, batch.boxes, batch.valid, probs):
            scheduler.add(index, CropResult(box, p, valid))
        result.crops_run += len(batch.boxes)
