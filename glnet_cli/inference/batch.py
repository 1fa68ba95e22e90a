"""Batch runs over archives: expanding inputs, naming outputs, sharding, running, reporting.

Sharding is a pure function of the sorted scene list, the rank and the world
size, so under torchrun every scene is done by exactly one process without
any coordination.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, ContextManager, Hashable, Iterable, Optional,
                    Protocol, Sequence, TypeVar)

from glnet_cli.errors import (ENVIRONMENT_ERROR, USER_ERROR, GlnetError, InputError,
                              OutputError, OutputExistsError)
from glnet_cli.io.claims import EXISTS, claim_unless_done
from glnet_cli.io.paths import check_distinct, check_output, write_text
from glnet_cli.progress_callback import ProgressCallback

if TYPE_CHECKING:
    from glnet_cli.inference.engine import Segmenter, SegmentResult

T = TypeVar("T")

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".png", ".jpg", ".jpeg")


def expand_inputs(specs: Iterable[str]) -> list[str]:
    """Files, folders (their rasters), globs and ``@list.txt`` files, in a stable order.

    Duplicates are dropped; a spec that matches nothing is an error naming it.
    """
    found: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            listing = spec[1:]
            if not os.path.isfile(listing):
                raise InputError(f"{listing}: list file not found")
            with open(listing, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
            base = os.path.dirname(os.path.abspath(listing))
            found.extend(ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines)
        elif os.path.isdir(spec):
            found.extend(sorted(str(p) for p in Path(spec).iterdir()
                                if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES))
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise InputError(f"{spec}: matches no file")
            found.extend(matches)
        else:
            found.append(spec)
    unique = list(dict.fromkeys(os.path.normpath(p) for p in found))
    if not unique:
        raise InputError("no input scenes found")
    return unique


def output_name(scene: str, folder: str, suffix: str = "_mask") -> str:
    """``folder/<scene stem><suffix>.tif``."""
    return os.path.join(folder, Path(scene).stem + suffix + ".tif")


@dataclass(frozen=True)
class SceneJob:
    """One scene and the files its run writes."""

    scene: str
    mask: str
    probabilities: Optional[str] = None


@dataclass(frozen=True)
class ResolvedOutputs:
    """What ``glnet segment INPUTS -o OUTPUT`` means: the mode, and each scene's outputs."""

    #: Several scenes into a folder (else one scene into one mask file).
    batch: bool
    jobs: list[SceneJob]


def is_batch(inputs: Sequence[str], output: str) -> bool:
    """Batch mode: several inputs, a folder, glob or ``@list`` among them, or a folder out."""
    return (len(inputs) > 1 or os.path.isdir(output) or output.endswith(("/", os.sep))
            or any(os.path.isdir(i) or glob.has_magic(i) or i.startswith("@") for i in inputs))


def resolve_outputs(inputs: Sequence[str], output: str, probabilities: Optional[str] = None,
                    report: Optional[str] = None, *, overwrite: bool = False, prepare: bool = True,
                    scenes: Optional[Sequence[tuple[str, str]]] = None) -> ResolvedOutputs:
    """The scenes, single or batch mode, and the outputs of each scene (as rio's ``resolve_inout``).

    In batch mode ``output`` (and ``probabilities``) are folders holding
    ``<scene>_mask.tif`` (``<scene>_probs.tif``). With ``prepare`` (every run
    but a dry run) the folders are made and the outputs checked now, so that a
    bad name is refused before the first scene, not after hours of work. ``scenes``, when
    given, are a batch's (scene, name) pairs: a STAC catalogue's items, named by their ids.
    """
    if scenes is None and not is_batch(inputs, output):
        job = SceneJob(inputs[0], output, probabilities)
        if prepare:
            check_distinct([output, probabilities], [job.scene])
        return ResolvedOutputs(False, [job])
    jobs = [SceneJob(scene, output_name(name, output),
                     output_name(name, probabilities, "_probs") if probabilities else None)
            for scene, name in scenes or [(s, s) for s in expand_inputs(inputs)]]
    if prepare:
        _prepare_folder(output)
        if probabilities:
            _prepare_folder(probabilities)
        if report:
            check_output(report, overwrite)
        check_batch_outputs(jobs, [report])
    return ResolvedOutputs(True, jobs)


def _prepare_folder(folder: str) -> None:
    """Make an output folder; refuse one whose parent is missing or that cannot be written."""
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        problem = "is not a folder" if os.path.exists(parent) else "does not exist"
        raise OutputError(f"{folder}: its parent folder {parent} {problem}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot make the output folder: "
                          f"{exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: output folder is not writable")


def check_batch_outputs(jobs: Sequence[SceneJob], others: Iterable[Optional[str]] = ()) -> None:
    """Refuse, before the first scene, an output that is an input or that two outputs share.

    ``others`` are the batch's own outputs (the report). Files are told apart
    by identity, so links count, in one pass however long the archive is
    (:func:`~glnet_cli.io.paths.check_distinct` words the refusal).
    """
    inputs = {_identity(job.scene): job.scene for job in jobs if not job.scene.startswith("/vsi")}
    written: dict[Hashable, tuple[str, str]] = {}
    named = [(job.scene, out) for job in jobs for out in (job.mask, job.probabilities)]
    for scene, out in named + [("", out) for out in others]:
        if not out:
            continue
        key = _identity(out)
        if key in inputs:
            check_distinct([out], [inputs[key]])
        if key in written:
            other_scene, other_out = written[key]
            if scene and other_scene and scene != other_scene:
                raise InputError(f"{scene} and {other_scene} would both be written to {out}; "
                                 "rename one or run them separately")
            check_distinct([other_out, out])
        written[key] = (scene, out)


def _identity(path: str) -> Hashable:
    """What makes two paths one file: device and inode when it exists, else its real path."""
    try:
        stat = os.stat(path)
    except OSError:
        return os.path.normcase(os.path.realpath(path))
    return stat.st_dev, stat.st_ino


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

    rank: int
    world_size: int

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's list, concatenated in rank order, on every rank."""


@dataclass(frozen=True)
class _Alone:
    """No torchrun: one process does every scene."""

    rank: int = 0
    world_size: int = 1

    def gather(self, items: list[Any]) -> list[Any]:
        return items


def segment_many(segmenter: Segmenter, jobs: Sequence[SceneJob], *,
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
    (``cog``, ``creation_options``) go to :meth:`Segmenter.run`.
    """
    team = team or _Alone()

    def segment_one(job: SceneJob) -> tuple[float, float]:
        with progress(job.scene) as callback:
            result = segmenter.run(job.scene, job.mask, probabilities=job.probabilities,
                                   overwrite=overwrite, progress=callback, **run_options)
        on_result(result)
        return result.seconds, result.mpx_per_s

    reports = _run_jobs(shard(jobs, team.rank, team.world_size), segment_one,
                        skip_existing=skip_existing, fail_fast=fail_fast)
    for failed in (r for r in reports if r.status == "failed"):
        on_failure(failed)
    reports = team.gather(reports)
    if report and team.rank == 0:
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
