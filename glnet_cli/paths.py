"""Output-path rules shared by every command: never clobber, fail before work starts."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterable, Iterator

from glnet_cli.errors import OutputError, OutputExistsError


def check_output(path: str | os.PathLike, overwrite: bool,
                 companions: Iterable[str] = ()) -> None:
    """Refuse an existing output (and its sidecar files) unless ``overwrite``.

    Also refuses a missing or read-only folder now, before hours of work.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: output folder {folder} is not writable")
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a folder; give a file name")
    existing = [p for p in [path, *companions] if os.path.exists(p)]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]}: already exists (use --overwrite to replace it)")


def temp_path_beside(path: str | os.PathLike, suffix: str = "") -> str:
    """A fresh hidden temp name in the output's folder, so the final rename is atomic."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix + ".part",
                               dir=folder)
    os.close(fd)
    os.remove(tmp)
    return tmp


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temp path; rename it to ``path`` on success, delete it on any failure.

    A failed or interrupted run (error, Ctrl-C) leaves nothing at ``path``.
    """
    tmp = temp_path_beside(path, suffix)
    try:
        yield tmp
        os.replace(tmp, os.fspath(path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def removing(path: str) -> Iterator[str]:
    """Yield ``path`` for scratch use and delete it afterwards, whatever happened."""
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
