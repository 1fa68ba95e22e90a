"""Batch runs over archives: expanding inputs, naming outputs, sharding, reporting.

Sharding is a pure function of the sorted scene list, the rank and the world
size, so under torchrun every scene is done by exactly one process without
any coordination.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterable, Optional, Sequence

from glnet_cli.errors import GlnetError, InputError
from glnet_cli.io.paths import check_distinct, write_text

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


def check_batch_outputs(scenes: Sequence[str],
                        outputs_for: Callable[[str], Iterable[Optional[str]]],
                        others: Iterable[Optional[str]] = ()) -> None:
    """Refuse, before the first scene, an output that is an input or that two outputs share.

    ``outputs_for(scene)`` names a scene's outputs (mask, probabilities);
    ``others`` are the batch's own (the report). Files are told apart by
    identity, so links count, in one pass however long the archive is
    (:func:`~glnet_cli.io.paths.check_distinct` words the refusal).
    """
    inputs = {_identity(s): s for s in scenes if not s.startswith("/vsi")}
    written: dict[Hashable, tuple[str, str]] = {}
    named = [(scene, out) for scene in scenes for out in outputs_for(scene)]
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


def shard(items: Sequence[str], rank: int, world_size: int) -> list[str]:
    """This rank's share: every ``world_size``-th item starting at ``rank``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    return list(items[rank::world_size])


@dataclass
class SceneReport:
    input: str
    output: str
    status: str  # ok | failed | skipped
    error: Optional[str] = None
    seconds: float = 0.0
    mpx_per_s: float = 0.0
    #: The scene's own exit code: 0, or the failure's (2 bad input, 1 environment).
    exit_code: int = 0


def run_batch(scenes: Sequence[str], output_for: Callable[[str], str],
              segment_one: Callable[[str, str], tuple[float, float]], *,
              skip_existing: bool = False, fail_fast: bool = False,
              on_scene: Optional[Callable[[int, int, str], None]] = None) -> list[SceneReport]:
    """Run ``segment_one(scene, output) -> (seconds, mpx_per_s)`` over scenes.

    A scene whose output exists is skipped with ``skip_existing``; a scene that
    fails with a glnet error is reported and the batch goes on (unless
    ``fail_fast``). Interruptions and internal errors still stop the batch.
    """
    reports = []
    for number, scene in enumerate(scenes, start=1):
        output = output_for(scene)
        if on_scene is not None:
            on_scene(number, len(scenes), scene)
        if skip_existing and os.path.exists(output):
            reports.append(SceneReport(scene, output, "skipped"))
            continue
        started = time.perf_counter()
        try:
            seconds, rate = segment_one(scene, output)
        except GlnetError as exc:
            if fail_fast:
                raise
            reports.append(SceneReport(scene, output, "failed", " ".join(str(exc).split()),
                                       time.perf_counter() - started, exit_code=exc.exit_code))
            continue
        reports.append(SceneReport(scene, output, "ok", None, seconds, rate))
    return reports


def write_report(path: str, reports: Sequence[SceneReport], *, overwrite: bool) -> None:
    """The JSON report, one object per scene, written atomically (never half a report)."""
    write_text(path, json.dumps([asdict(r) for r in reports], indent=2), overwrite=overwrite)
