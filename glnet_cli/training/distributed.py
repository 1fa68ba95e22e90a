"""Data-parallel training under torchrun: one process per GPU (or per CPU worker).

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them
training runs in one process and every helper here is a no-op. Rank 0 alone
writes files and draws progress; every rank computes the same validation
scores (confusion matrices are summed across ranks), so they all agree on
which epoch is best and when to stop.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any, ContextManager, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from glnet_cli.device import resolve_device

log = logging.getLogger(__name__)

#: The DDP argument that turns off the buffer broadcast at every forward (renamed in torch 2.14).
_NO_FORWARD_BUFFER_SYNC = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else "broadcast_buffers")


@dataclass
class DistContext:
    """Where this process stands in a (possibly one-process) training job."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP over the parameters that train now (frozen ones are left out).

        Buffers are not broadcast at every forward: ranks may run different
        numbers of forward passes per step (tiles of other sizes have more
        crops), and a collective per forward would then deadlock. They are
        synchronised with :meth:`broadcast_buffers` before validation instead.
        """
        if not self.active:
            return module
        options: dict[str, Any] = {_NO_FORWARD_BUFFER_SYNC: False}  # named by torch version
        return DistributedDataParallel(module, **options)

    def sync(self, wrapped: nn.Module, last: bool) -> ContextManager:
        """Accumulate gradients locally except on the step's last backward pass."""
        if isinstance(wrapped, DistributedDataParallel) and not last:  # wrap() made it
            return wrapped.no_sync()
        return contextlib.nullcontext()

    def all_sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum over ranks (float64 or int64 arrays)."""
        if not self.active:
            return array
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self._comm_device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on one."""
        return bool(self.all_sum(np.array([int(flag)], dtype=np.int64))[0])

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's list, concatenated in rank order, on every rank."""
        if not self.active:
            return items
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, items)
        return [item for part in parts for item in part]

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's BatchNorm statistics everywhere, as DDP would have it."""
        if not self.active:
            return
        for buffer in module.buffers():
            moved = buffer.detach().to(self._comm_device)
            dist.broadcast(moved, 0)
            buffer.copy_(moved)

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


@contextlib.contextmanager
def distributed(device_spec: str = "auto") -> Iterator[DistContext]:
    """Join the torchrun job if there is one (NCCL on CUDA, gloo on CPU), leave it at the end."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield DistContext(resolve_device(device_spec))
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    log.info("rank %d of %d on %s", rank, world_size, device)
    try:
        yield DistContext(device, rank, world_size, local_rank)
    finally:
        if started:
            dist.destroy_process_group()


def launched_as_main() -> bool:
    """Whether this process is rank 0 of its torchrun job, or not under torchrun at all."""
    return int(os.environ.get("RANK", "0")) == 0
