"""Batch runs over archives: sharding, running and reporting.

What a batch reads and writes (expanding inputs, naming and checking
outputs) is :mod:`~glnet_cli.inference.batch_files`, whose names this module
also offers. Sharding is a pure function of the sorted scene list, the rank
and the world size, so under torchrun every scene is done by exactly one
process without any coordination.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ContextManager,
    Iterable,
    Optional,
    Protocol,
    Sequence,
    TypeVar,
)

from glnet_cli.errors import ENVIRONMENT_ERROR, USER_ERROR, GlnetError, OutputExistsError
from glnet_cli.inference.batch_files import (
    RASTER_SUFFIXES,
    ResolvedOutputs,
    SceneJob,
    check_batch_outputs,
    expand_inputs,
    is_batch,
    output_name,
    resolve_outputs,
)
from glnet_cli.io.claims import EXISTS, claim_unless_done
from glnet_cli.io.paths import write_text
from glnet_cli.progress_callback import ProgressCallback

if TYPE_CHECKING:
    from glnet_cli.inference.engine import SegmentResult

__all__ = [
    "RASTER_SUFFIXES", "ResolvedOutputs", "SceneJob", "SceneReport", "SceneSegmenter", "Team",
    "batch_exit_code", "check_batch_outputs", "expand_inputs", "is_batch", "output_name",
    "resolve_outputs", "segment_many", "shard", "write_report"]

T = TypeVar("T")


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's share: every ``world_size``-th item starting at ``rank``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    return list(items[rank::world_size])


@dataclass
class SceneReport:
    """One scene's entry in the batch summary and the JSON report."""

    input: str
    output: str
    status: str  # ok | failed | skipped
    error: Optional[str] = None
    seconds: float = 0.0
    mpx_per_s: float = 0.0
    #: The scene's own exit code: 0, or the failure's (2 bad input, 1 environment).
    exit_code: int = 0
    #: Why a scene whose mask did not exist was skipped: another run had it or published it.
    reason: Optional[str] = None


class Team(Protocol):
    """This process's place among torchrun's ranks (``training.distributed.DistContext`` is one)."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's list, concatenated in rank order, on every rank."""


@dataclass(frozen=True)
class _Alone:
    """No torchrun: one process does every scene."""

    rank: int = 0
    world_size: int = 1

    def gather(self, items: list[Any]) -> list[Any]:
        return items


class SceneSegmenter(Protocol):
    """What :func:`segment_many` runs: a :class:`~glnet_cli.inference.engine.Segmenter`, or
    an :class:`~glnet_cli.inference.archive.ArchiveSegmenter` around one."""

    def run(self, path: str, output: str, *, probabilities: Optional[str] = None,
            overwrite: bool = False, progress: Optional[ProgressCallback] = None
            ) -> SegmentResult: ...


def segment_many(segmenter: SceneSegmenter, jobs: Sequence[SceneJob], *,
                 skip_existing: bool = False, fail_fast: bool = False,
                 report: Optional[str] = None, overwrite: bool = False,
                 team: Optional[Team] = None,
                 progress: Callable[[str], ContextManager[Optional[ProgressCallback]]] = (
                     lambda scene: contextlib.nullcontext()),
                 on_result: Callable[[SegmentResult], None] = lambda _: None,
                 on_failure: Callable[[SceneReport], None] = lambda _: None,
                 **run_options: Any) -> list[SceneReport]:
    """Segment this rank's share of ``jobs``; return every rank's scene reports.

    A scene whose mask exists is skipped with ``skip_existing``; a scene that
    fails with a glnet error is reported and the batch goes on (unless
    ``fail_fast``). Interruptions and internal errors still stop the batch.
    ``progress(scene)`` gives each scene's progress callback, ``on_result``
    hears of each scene done and ``on_failure`` of this rank's failures once
    its share is over. Rank 0 writes the JSON ``report``; ``run_options``
    (``cog``, ``creation_options``) go to the segmenter's ``run``.
    """
    ranks: Team = team or _Alone()

    def segment_one(job: SceneJob) -> tuple[float, float]:
        with progress(job.scene) as callback:
            result = segmenter.run(job.scene, job.mask, probabilities=job.probabilities,
                                   overwrite=overwrite, progress=callback, **run_options)
        on_result(result)
        return result.seconds, result.mpx_per_s

    reports = _run_jobs(shard(jobs, ranks.rank, ranks.world_size), segment_one,
                        skip_existing=skip_existing, fail_fast=fail_fast)
    for failed in (r for r in reports if r.status == "failed"):
        on_failure(failed)
    reports = ranks.gather(reports)
    if report and ranks.rank == 0:
        write_report(report, reports, overwrite=overwrite)
    return reports


def _run_jobs(jobs: Sequence[SceneJob], segment_one: Callable[[SceneJob], tuple[float, float]],
              *, skip_existing: bool, fail_fast: bool) -> list[SceneReport]:
    """``segment_one(job) -> (seconds, mpx_per_s)`` over the jobs, one report each."""
    reports = []
    for job in jobs:  # with skip_existing, under a claim (glnet_cli.io.claims): one run per scene
        with claim_unless_done(job.mask) if skip_existing else contextlib.nullcontext() as busy:
            if busy:
                reports.append(SceneReport(job.scene, job.mask, "skipped",
                                           reason=None if busy == EXISTS else busy))
                continue
            started = time.perf_counter()
            try:
                seconds, rate = segment_one(job)
            except GlnetError as exc:
                if skip_existing and isinstance(exc, OutputExistsError) and \
                        os.path.exists(job.mask):  # another run published it meanwhile
                    reports.append(SceneReport(job.scene, job.mask, "skipped",
                                               reason="another run published it"))
                    continue
                if fail_fast:
                    raise
                reports.append(SceneReport(job.scene, job.mask, "failed",
                                           " ".join(str(exc).split()),
                                           time.perf_counter() - started, exit_code=exc.exit_code))
                continue
            reports.append(SceneReport(job.scene, job.mask, "ok", None, seconds, rate))
    return reports


def batch_exit_code(reports: Iterable[SceneReport]) -> int:
    """0 when no scene failed; else 1 if one failed for its environment (a full disk), else 2.

    A failing environment outranks bad input: retrying elsewhere may help.
    """
    failures = {r.exit_code for r in reports if r.status == "failed"}
    if not failures:
        return 0
    return ENVIRONMENT_ERROR if ENVIRONMENT_ERROR in failures else USER_ERROR


def write_report(path: str, reports: Sequence[SceneReport], *, overwrite: bool) -> None:
    """The JSON report, one object per scene, written atomically (never half a report)."""
    write_text(path, json.dumps([asdict(r) for r in reports], indent=2), overwrite=overwrite)
