"""Where a segment run's memory goes, estimated before it runs.

``--dry-run`` prints the parts and ``--batch-size auto`` picks the largest
batch of crops whose estimate fits the memory budget. The activation figures
are the tensors alive at a crop's peak (the aggregation conv: ``ps3``, the
global region, their concatenation and oneDNN's reordered copy of it),
measured on ResNet-50 at size 508 and written here as multiples of the
network's width, so they scale to any configuration.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

#: Default budget for ``--batch-size auto``: host memory on the CPU, GPU memory on CUDA.
MEMORY_BUDGET_MB = 1536
#: The largest automatic batch: the paper's sub-batch.
MAX_AUTO_BATCH = 6
#: On a CPU a batch only spreads per-call overheads: once its activations pass this many
#: MB, a larger one buys no speed, only memory (ResNet-50, bf16, crops of 508 px and
#: 134 MB: 0.86, 0.91 and 0.92 s a crop in batches of 1, 2 and 3; a 2448 px scene in
#: 35.3 s and 1137 MB in batches of 1, 36.8 s and 1262 MB in batches of 2).
CPU_BATCH_MB = 160
#: Numbers alive per cell of a crop's 1/4-resolution grid at its peak, in units of the
#: FPN width (ps3 is 2 widths; with the global region, the concatenation and its
#: reordered copy, 12; a whole run measures 17 with the allocator's slack).
CROP_PEAK_WIDTHS = 17
#: The global maps of a block and the transients of computing them, in pyramids.
GLOBAL_PYRAMIDS = 2.0
#: What a whole CPU run holds beyond the parts above, in MB: the reader, blender and
#: writer threads' malloc arenas and the allocator's slack (measured on ResNet-50 runs
#: at batch sizes 2 to 4: 99 to 126 MB).
RUN_SLACK_MB = 110

MB = 2 ** 20


@dataclass(frozen=True)
class NetworkShape:
    """What the memory of a forward pass depends on."""

    size_p: int
    size_g: int
    trunk_channels: Sequence[int]
    width: int
    #: Bytes per activation of the local branch (2 for bf16/fp16, 4 for fp32).
    itemsize: int
    #: 3 for the full GLNet (local levels kept for the L2G pass), else 2.
    stage: int


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of a run by part, in MB: host parts and, on CUDA, GPU parts."""

    host: dict[str, float]
    gpu: Optional[dict[str, float]] = None
    #: The host peak this process has reached already (loading the model), in MB.
    reached_mb: float = 0.0

    @property
    def host_mb(self) -> float:
        return max(sum(self.host.values()), self.reached_mb)

    @property
    def gpu_mb(self) -> Optional[float]:
        return None if self.gpu is None else sum(self.gpu.values())


def pyramid_numbers(q: int, trunk: Sequence[int], width: int) -> float:
    """Numbers in one branch's pyramid whose finest level (C2, P2) is ``q`` x ``q``."""
    cells = sum(q * q / 4 ** i for i in range(4))  # strides 4, 8, 16, 32
    trunk_numbers = sum(c * q * q / 4 ** i for i, c in enumerate(trunk))
    return trunk_numbers + cells * (2 * width + width / 2) + 2 * width * q * q


def crop_bytes(net: NetworkShape) -> float:
    """Peak activations of one crop in a batch."""
    q = net.size_p // 4
    numbers: float = CROP_PEAK_WIDTHS * net.width * q * q
    if net.stage == 3:  # the L2G pass keeps every level of the local pyramid
        numbers += pyramid_numbers(q, net.trunk_channels, net.width)
    return numbers * net.itemsize


def global_bytes(net: NetworkShape) -> float:
    """The global maps a block keeps while its crops run, and their transients."""
    pyramid = pyramid_numbers(net.size_g // 4, net.trunk_channels, net.width)
    total = GLOBAL_PYRAMIDS * pyramid * net.itemsize
    if net.stage == 3:  # the L2G canvases and the stage-3 global pyramid, both float32
        total += 2 * pyramid * 4
    return total


def current_rss() -> int:
    """This process's resident memory in bytes (its peak so far where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss()


def peak_rss() -> int:
    """The most resident memory this process has held, in bytes.

    Linux's high-water mark of this process's own memory (``VmHWM``): getrusage's
    maxrss also counts the process this one was started from (Linux carries it
    over exec), so a run started from a large Python process would report that
    process's peak as its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's parameters and buffers, in the precision each is stored in."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def estimate(net: NetworkShape, batch_size: int, weights: int, engine: float, cache: float,
             on_gpu: bool) -> MemoryEstimate:
    """The parts of a run's peak, from this process as it stands (model loaded and prepared).

    ``engine`` is the crops and tiles the engine holds in flight, ``cache`` GDAL's
    block cache, both in bytes.
    """
    network = {f"global maps ({net.size_g} px view)": global_bytes(net),
               f"activations ({batch_size} crop{'s' * (batch_size > 1)} of {net.size_p} px)":
                   batch_size * crop_bytes(net)}
    libraries = current_rss() - (0 if on_gpu else weights)
    host: dict[str, float] = {"torch, GDAL and Python": libraries}
    if not on_gpu:
        host["weights"] = weights
    host.update({"GDAL block cache": cache, "crops and tiles in flight": engine,
                 "threads and allocator slack": RUN_SLACK_MB * MB})
    gpu = None
    if on_gpu:
        gpu = {"weights": weights, **network}
    else:
        host.update(network)
    return MemoryEstimate({k: v / MB for k, v in host.items()},
                          None if gpu is None else {k: v / MB for k, v in gpu.items()},
                          peak_rss() / MB)


def largest_auto_batch(net: NetworkShape, on_gpu: bool) -> int:
    """The largest batch worth its memory: the paper's 6 on a GPU, fewer big crops on a CPU."""
    if on_gpu:
        return MAX_AUTO_BATCH
    return max(1, min(MAX_AUTO_BATCH, int(CPU_BATCH_MB * MB // crop_bytes(net))))


def auto_batch_size(fits: Callable[[int], bool], largest: int) -> int:
    """The largest batch up to ``largest`` that ``fits`` the budget; at least 1."""
    for size in range(largest, 1, -1):
        if fits(size):
            return size
    return 1
