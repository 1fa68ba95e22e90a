"""Output-path rules shared by every command: never clobber, fail before work starts.

Every file glnet writes goes first to a temp name beside the target
(``.<name>.glnet-partial-<token><suffix>``), is checked, flushed to disk and
only then published under its real name. A run holds an advisory lock
(``.<name>.glnet-partial-<token>.lock``) for as long as its temp files live,
so a later run on the same target can tell the leftovers of a killed run
(lock free) from those of a run still going (lock held), and remove only the
former.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import warnings
from typing import Callable, Iterable, Iterator, Optional

from glnet_cli.errors import (
    GlnetError,
    GlnetWarning,
    InputError,
    OutputError,
    OutputExistsError,
    OutputWriteError,
)

#: Marks glnet's temp files, so that they are recognisable and safe to clean up.
PARTIAL_MARK = ".glnet-partial-"


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


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: links of either kind count, as do files not yet made."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_distinct(outputs: Iterable[Optional[str]], inputs: Iterable[Optional[str]] = ()) -> None:
    """Refuse an output that is an input, or that another output also writes.

    ``None`` entries (options not given) are ignored. Paths of GDAL virtual
    file systems (``/vsicurl/...``) never match a local output.
    """
    sources = [i for i in inputs if i and not i.startswith("/vsi")]
    seen: list[str] = []
    for output in (o for o in outputs if o):
        for source in sources:
            if same_file(output, source):
                raise InputError(f"{output}: is the same file as the input {source}; "
                                 "choose another output")
        for other in seen:
            if same_file(output, other):
                raise InputError(f"{output}: is named as two outputs ({other}); "
                                 "give each output its own file")
        seen.append(output)


def _partial_prefix(path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(path)),
                        f".{os.path.basename(path)}{PARTIAL_MARK}")


def remove_stale_partials(path: str | os.PathLike) -> list[str]:
    """Delete temp files that killed runs left for ``path``; return their names.

    A group of temp files is stale when its lock file exists and no process
    holds it (its run died); temp files without a lock are never touched,
    since they may belong to a run that is just starting.
    """
    prefix = _partial_prefix(os.fspath(path))
    folder, start = os.path.dirname(prefix), os.path.basename(prefix)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed: list[str] = []
    for lock_name in (n for n in names if n.startswith(start) and n.endswith(".lock")):
        token = lock_name[len(start):-len(".lock")]
        lock_path = os.path.join(folder, lock_name)
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live run holds it
        try:
            for name in names:
                if name.startswith(start + token) and name != lock_name:
                    _remove_any(os.path.join(folder, name))
                    removed.append(name)
            os.remove(lock_path)
        finally:
            os.close(fd)
    return removed


def _remove_any(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class PartialFiles:
    """The temp names of one run for one target, under a held lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        removed = remove_stale_partials(path)
        if removed:
            warnings.warn(f"{path}: removed {len(removed)} temp file(s) left by an interrupted "
                          f"run ({', '.join(sorted(removed)[:3])})", GlnetWarning, stacklevel=3)
        self._base = _partial_prefix(path) + secrets.token_hex(4)
        self._lock_path = self._base + ".lock"
        try:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise write_failure(path, exc) from exc
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._made: list[str] = []

    def name(self, suffix: str = "") -> str:
        """A fresh temp path (not created) that is cleaned up with the others."""
        name = f"{self._base}{suffix}"
        self._made.append(name)
        return name

    def discard(self) -> None:
        """Remove every temp file of this run and release the lock."""
        for name in self._made:
            _remove_any(name)
        self.release()

    def release(self) -> None:
        if self._lock_fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._lock_path)
        os.close(self._lock_fd)
        self._lock_fd = -1


def write_failure(path: str, exc: OSError) -> OutputError:
    """The error for an OSError met while writing ``path``: environment or user problem."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{path}: cannot write there: {reason}")
    return OutputWriteError(f"{path}: writing failed: {reason}; nothing was written")


def fsync_file(path: str) -> None:
    """Flush a finished file to the disk before it is published under its real name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str, path: str, overwrite: bool) -> None:
    """Give the finished ``tmp`` its real name, atomically.

    Without ``overwrite`` the step fails if ``path`` appeared since the run
    began (another run wrote it): a hard link cannot replace an existing
    name, so two runs cannot both succeed on one target.
    """
    try:
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise OutputExistsError(f"{path}: already exists (another run wrote it meanwhile; "
                                    "use --overwrite to replace it)") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                                 errno.EMLINK):
                raise
            _publish_without_links(tmp, path)
            return
        os.remove(tmp)
    except OSError as exc:
        if isinstance(exc, GlnetError):
            raise
        raise write_failure(path, exc) from exc


def _publish_without_links(tmp: str, path: str) -> None:
    """For file systems without hard links: claim the name exclusively, then replace it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        raise OutputExistsError(f"{path}: already exists (another run wrote it meanwhile; "
                                "use --overwrite to replace it)") from None
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "", *, overwrite: bool,
                  verify: Optional[Callable[[str], None]] = None) -> Iterator[str]:
    """Yield a temp path; publish it as ``path`` only when everything succeeded.

    On success the file is checked with ``verify(tmp)`` (which raises if the
    file is unusable), flushed to disk and published (see :func:`publish`).
    On any failure or interruption the temp files are removed and ``path`` is
    left as it was. An ``OSError`` from the write (disk full, file size limit)
    becomes an :class:`OutputWriteError` naming ``path``.
    """
    path = os.fspath(path)
    partial = PartialFiles(path)
    tmp = partial.name(suffix)
    try:
        try:
            yield tmp
            if verify is not None:
                verify(tmp)
            fsync_file(tmp)
        except OSError as exc:
            if isinstance(exc, GlnetError):
                raise
            raise write_failure(path, exc) from exc
        publish(tmp, path, overwrite)
    except BaseException:
        partial.discard()
        raise
    partial.release()


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool) -> None:
    """Write a small text output (a report, JSON) atomically; errors name ``path``."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


@contextlib.contextmanager
def removing(path: str) -> Iterator[str]:
    """Yield ``path`` for scratch use and delete it afterwards, whatever happened."""
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
