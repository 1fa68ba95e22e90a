"""The reads of a segment run, done ahead of the device loop by reader threads.

For each context block: its global view (decimated), at stage 3 the crops of
the block's own grid for the local-to-global pass, then the crops that take
their context from the block, in batches. Each thread has its own dataset
handle (GDAL's are not shareable); results come back in the order the device
loop wants them, as raw pixels with their valid masks (scaled on the device,
by :class:`~glnet_cli.inference.network.DeviceScaling`). A crop without a
valid pixel is not sent, only counted as skipped.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

import numpy as np
import torch

from glnet_cli.inference.grid import ScenePlan
from glnet_cli.inference.workers import Prefetcher
from glnet_cli.io.raster.read import SceneInfo, SceneReader
from glnet_cli.io.raster.windows import Box


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


#: Threads reading the scene, each with its own dataset handle (GDAL's are not shareable):
#: one on a small machine, where a second would decode again the blocks that neighbouring
#: windows share (a handle caches its own) on the same few cores; more where cores are
#: plenty and a GPU must not wait for them.
READ_THREADS = max(1, min(4, _cores() // 4))

#: Data types torch lacks, widened (exactly) for the trip to the device.
_WIDER = {"uint16": np.int32, "uint32": np.int64}


@dataclass
class Pixels:
    """Raw pixels of a batch and their valid masks, on the host; scaled on the device."""

    raw: torch.Tensor  # (B, C, h, w), the scene's data type (or a wider one)
    valid: torch.Tensor  # (B, h, w) bool
    all_valid: bool


@dataclass
class GlobalView:
    """A block's whole area, decimated to the global branch's input size."""

    block: int
    pixels: Pixels  # one image of size_g x size_g


@dataclass
class CropBatch:
    """Crops of one block at full resolution, for the main pass or the L2G pass."""

    block: int
    l2g_pass: bool
    indexes: list[int]  # crop indexes (main pass) or positions in the block grid (L2G pass)
    boxes: list[Box]
    pixels: Optional[Pixels]  # None when every crop was empty
    valid: list[np.ndarray]
    skipped: list[int] = field(default_factory=list)


@dataclass
class PassDone:
    """A block's L2G pass has been read in full: its global maps can be merged."""

    block: int


Item = Union[GlobalView, CropBatch, PassDone]


def l2g_crop_count(plan: ScenePlan, stage: int, overlap: int) -> int:
    """Crops the L2G pass reads besides the main pass (stage 3: each block's own crop grid)."""
    if stage != 3:
        return 0
    return sum(len(plan.block_crop_grid(b, overlap)) for b in plan.blocks)


class CropReader:
    """Every read of a run, in reader threads, a few items ahead; iterate to get them in order.

    ``read_log``, when given, collects every window read (for tests of what is read).
    """

    def __init__(self, scene: SceneInfo, plan: ScenePlan, *, stage: int, size_g: int,
                 batch_size: int, overlap: int, device: torch.device,
                 read_log: Optional[list] = None) -> None:
        self._plan = plan
        self._stage = stage
        self._size_g = size_g
        self._batch_size = batch_size
        self._overlap = overlap
        self._device = device
        self._prefetcher = Prefetcher(self._jobs(), lambda: _logged_reader(scene, read_log),
                                      READ_THREADS)

    @property
    def crop_passes(self) -> int:
        """Crops this run reads: every crop of the plan, plus the L2G pass's."""
        return len(self._plan.crops) + l2g_crop_count(self._plan, self._stage, self._overlap)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._prefetcher)

    def close(self) -> None:
        """Stop reading: what has not started is dropped, every handle closed."""
        self._prefetcher.close()

    def _jobs(self) -> Iterator[Callable[[SceneReader], Item]]:
        """Every read of a run, in the order the device loop wants the results."""
        plan = self._plan
        for b, block in enumerate(plan.blocks):
            yield functools.partial(self._read_view, b, block.box)
            if self._stage == 3:
                grid = plan.block_crop_grid(block, self._overlap)
                yield from self._batch_jobs(b, True, list(range(len(grid))), grid)
                yield functools.partial(_pass_done, b)
            yield from self._batch_jobs(b, False, list(block.crops),
                                        [plan.crops[i] for i in block.crops])

    def _batch_jobs(self, block: int, l2g_pass: bool, indexes: list[int],
                    boxes: list[Box]) -> Iterator[Callable[[SceneReader], CropBatch]]:
        size = self._batch_size
        for start in range(0, len(boxes), size):
            yield functools.partial(self._read_batch, block, l2g_pass,
                                    indexes[start:start + size], boxes[start:start + size])

    def _read_view(self, block: int, box: Box, reader: SceneReader) -> GlobalView:
        view = reader.read_decimated(box, (self._size_g, self._size_g))
        return GlobalView(block, self._host_pixels([view.data], [view.valid]))

    def _read_batch(self, block: int, l2g_pass: bool, indexes: list[int], boxes: list[Box],
                    reader: SceneReader) -> CropBatch:
        batch = CropBatch(block, l2g_pass, [], [], None, [])
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

    def _host_pixels(self, arrays: list[np.ndarray], valid: list[np.ndarray]) -> Pixels:
        """Raw pixels for the device (a quarter of the bytes of float32 for uint8 scenes)."""
        stacked = np.stack(arrays)
        raw = torch.from_numpy(stacked.astype(_WIDER.get(stacked.dtype.name, stacked.dtype),
                                              copy=False))
        mask = torch.from_numpy(np.stack(valid))
        if self._device.type == "cuda":  # page-locked, so the copy to the GPU runs async
            raw, mask = raw.pin_memory(), mask.pin_memory()
        return Pixels(raw, mask, all(v.all() for v in valid))


def _pass_done(block: int, reader: SceneReader) -> PassDone:
    return PassDone(block)


@contextlib.contextmanager
def _logged_reader(scene: SceneInfo, read_log: Optional[list]) -> Iterator[SceneReader]:
    """A reader for one thread; its reads join ``read_log`` (if given) when it closes."""
    with SceneReader(scene, record=read_log is not None) as reader:
        try:
            yield reader
        finally:
            if read_log is not None and reader.read_log is not None:
                read_log.extend(reader.read_log)
