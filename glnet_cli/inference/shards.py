"""Cluster job arrays: which disjoint part of a batch this task runs.

A shard is ``K/N`` (1-based K, as a person counts "the 2nd of 8"), given
with ``--shard`` or read from the variables a scheduler sets in each task of
an array: Slurm, AWS Batch, or a Kubernetes indexed job (whose size only
the user knows: ``--shard-count``). The scenes of shard K are
:func:`~glnet_cli.inference.batch.shard` of the sorted scene list, so the
N tasks of an array split it without talking to each other; torchrun's
ranks, when there are any, split each shard again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, TypeVar

from glnet_cli.errors import InputError
from glnet_cli.inference.batch import shard as split

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (0-based) of ``count`` disjoint parts of a batch."""

    index: int
    count: int
    #: Where the shard came from: ``--shard`` or the scheduler's variables.
    source: str = "--shard"

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError(f"{self.source}: shard {self.index + 1} of {self.count} does not "
                             f"exist; shards are 1..{max(self.count, 1)}")

    @property
    def label(self) -> str:
        """``shard-2-of-8``: what the shard's own outputs (report, catalogue) are named after."""
        return f"shard-{self.index + 1}-of-{self.count}"

    def select(self, items: Sequence[T]) -> list[T]:
        """This shard's items: every ``count``-th, from ``index`` on."""
        return split(items, self.index, self.count)

    def name(self, path: str) -> str:
        """``run.json`` -> ``run.shard-2-of-8.json``: each task of an array its own file."""
        stem, ext = os.path.splitext(path)
        return f"{stem}.{self.label}{ext}"


def parse_shard(spec: str) -> Shard:
    """``K/N`` with 1 <= K <= N, as ``--shard`` takes it."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match:
        raise InputError(f"--shard {spec}: expected K/N, e.g. 2/8 for the 2nd of 8 parts")
    return Shard(int(match[1]) - 1, int(match[2]))


def _int(environ: Mapping[str, str], name: str) -> Optional[int]:
    value = environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{name}={value!r}: not a number; is this a job array?") from None


def array_shard(given: Optional[Shard], count: Optional[int],
                environ: Mapping[str, str] = os.environ) -> Optional[Shard]:
    """This task's shard: ``--shard``, else the scheduler's array variables, else None.

    Slurm numbers tasks from ``SLURM_ARRAY_TASK_MIN`` in steps of
    ``SLURM_ARRAY_TASK_STEP`` (``--array=1-8`` starts at 1); AWS Batch and
    Kubernetes from 0. ``count`` (``--shard-count``) gives the number of
    parts where the scheduler does not say it, and overrides it where it does.
    """
    if given is not None:
        if count is not None and count != given.count:
            raise InputError(f"--shard {given.index + 1}/{given.count} and --shard-count "
                             f"{count} disagree; give one of them")
        return given
    slurm = _int(environ, "SLURM_ARRAY_TASK_ID")
    if slurm is not None:
        first = _int(environ, "SLURM_ARRAY_TASK_MIN") or 0
        step = _int(environ, "SLURM_ARRAY_TASK_STEP") or 1
        total = count or _int(environ, "SLURM_ARRAY_TASK_COUNT")
        return _from_index((slurm - first) // step, total, "SLURM_ARRAY_TASK_ID")
    for index_name, size_name in (("AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE"),
                                  ("JOB_COMPLETION_INDEX", None)):
        index = _int(environ, index_name)
        if index is not None:
            total = count or (_int(environ, size_name) if size_name else None)
            return _from_index(index, total, index_name)
    if count is not None:
        raise InputError(f"--shard-count {count}: no array index found (SLURM_ARRAY_TASK_ID, "
                         "AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX); "
                         "give --shard K/N instead")
    return None


def _from_index(index: int, count: Optional[int], variable: str) -> Shard:
    if count is None:
        raise InputError(f"{variable} is set but not the number of tasks: give --shard-count N "
                         "(the array's size)")
    return Shard(index, count, variable)
