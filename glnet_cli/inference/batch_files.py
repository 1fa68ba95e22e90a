"""A batch's files: the scenes its inputs name, and the outputs each scene writes.

Every output is checked before the first scene runs, so that a bad name is
refused at once, not after hours of work.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable, Optional, Sequence

from glnet_cli.errors import InputError, OutputError
from glnet_cli.io.paths import check_distinct, check_output
from glnet_cli.io.text import read_listing

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".png", ".jpg", ".jpeg")


def expand_inputs(specs: Iterable[str]) -> list[str]:
    """Files, folders (their rasters), globs and ``@list.txt`` files, in a stable order.

    Duplicates are dropped; a spec that matches nothing is an error naming it.
    """
    found: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            found.extend(read_listing(spec[1:]))
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
