"""GDAL's own messages, turned into glnet warnings and write failures.

rasterio and fiona hand what GDAL reports (``CPLError``) to Python loggers:
warnings as ``"CPLE_... in <text>"``, failures at INFO level as ``"GDAL
signalled an error: ..."``. Left alone they reach the user raw, or not at all,
and a write that GDAL says failed ("No space left on device", "not
successfully written") still looks like a success. This module listens to
those loggers once for the whole process:

* :func:`install` (called by the CLI for every command) prints each GDAL
  warning once as ``glnet: warning: <text>``, through :mod:`warnings`;
* :func:`capture_gdal_messages` collects every message, from every thread,
  while a file is written, so the writer can fail the run when one of them
  means lost data::

      with capture_gdal_messages() as messages:
          write_the_file(tmp)
      messages.raise_for_losses(path)  # OutputWriteError (exit 1)
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Collection, Iterator, Optional

from glnet_cli.errors import GlnetWarning, OutputWriteError

#: The loggers rasterio and fiona route GDAL's messages to.
GDAL_LOGGERS = ("rasterio._env", "rasterio._err", "fiona._env", "fiona._err")

#: GDAL's CPLE_* error numbers, as rasterio and fiona name them (looked up with a log
#: record's arguments, which may be anything).
_CODES: dict[object, str] = {
    1: "CPLE_AppDefined", 2: "CPLE_OutOfMemory", 3: "CPLE_FileIO", 4: "CPLE_OpenFailed",
    5: "CPLE_IllegalArg", 6: "CPLE_NotSupported", 7: "CPLE_AssertionFailed",
    8: "CPLE_NoWriteAccess", 9: "CPLE_UserInterrupt", 10: "CPLE_ObjectNull"}

#: Codes that, even as a warning, mean bytes did not reach the file.
_LOSS_CODES = frozenset({"CPLE_FileIO", "CPLE_NoWriteAccess", "CPLE_OutOfMemory"})

#: Warning texts that mean data did not reach the file.
_LOSS_TEXT = re.compile(
    r"not successfully written|no space left|file too large|disk quota|"
    r"write (?:error|failed)|error writing|failed to write|cannot write|could not write|"
    r"i/o error|input/output error|short write", re.IGNORECASE)

_ERROR_PREFIX = "GDAL signalled an error"
_CODE_IN = re.compile(r"^(CPLE_\w+|ObjectNull) in (.*)$", re.DOTALL)


def rasterio_gdal() -> Optional[ctypes.CDLL]:
    """The GDAL library rasterio runs on, for the few calls rasterio does not wrap.

    Symbols are looked up through rasterio's own extension module, so they
    come from the copy it is linked to (a wheel, conda or the system), never
    from another one such as fiona's.
    """
    import rasterio._base

    try:
        return ctypes.CDLL(rasterio._base.__file__)
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def quiet_libtiff() -> None:
    """Keep libtiff from printing I/O errors to stderr on its own.

    A full disk shows as a raw ``_tiffWriteProc: No space left on device``
    line from libtiff's default handler; GDAL reports the failure again
    ("Write error at scanline N"), and glnet's writer turns that into its
    one error line, naming the reason.
    """
    setter = getattr(rasterio_gdal(), "TIFFSetErrorHandler", None)
    if setter is not None:
        setter.restype, setter.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        setter(None)


class GdalWarning(GlnetWarning):
    """A warning GDAL gave (a creation option ignored, a value rounded)."""


@dataclass(frozen=True)
class GdalMessage:
    """One message GDAL reported."""

    #: ``logging.WARNING`` for a GDAL warning, ``logging.ERROR`` for a failure.
    level: int
    #: ``CPLE_...`` name, or ``""`` when the logger did not say.
    code: str
    text: str
    #: ``threading.get_ident()`` of the thread GDAL reported it in (None when
    #: ``logging.logThreads`` is off).
    thread: Optional[int]

    @property
    def is_error(self) -> bool:
        return self.level >= logging.ERROR

    @property
    def about_writing(self) -> bool:
        """Whether GDAL says bytes did not reach a file (whatever file, whatever thread)."""
        return self.code == "CPLE_NoWriteAccess" or bool(_LOSS_TEXT.search(self.text))

    @property
    def loses_data(self) -> bool:
        """Whether this message, met while writing a file, means the file is incomplete."""
        return self.is_error or self.code in _LOSS_CODES or self.about_writing


def parse_record(record: logging.LogRecord) -> Optional[GdalMessage]:
    """The GDAL message in a rasterio/fiona log record (None for their debug chatter)."""
    if record.levelno < logging.INFO:
        return None
    args = record.args if isinstance(record.args, tuple) else ()
    if str(record.msg).startswith(_ERROR_PREFIX) and len(args) == 2:
        number, text = args
        return GdalMessage(logging.ERROR, _CODES.get(number, ""), _clean(text), record.thread)
    if record.levelno == logging.INFO:
        return None  # rasterio's own notes ("Unknown error number ..."), not GDAL's
    text = record.getMessage()
    match = _CODE_IN.match(text)
    code, text = (match.group(1), match.group(2)) if match else ("", text)
    level = logging.ERROR if record.levelno >= logging.ERROR else logging.WARNING
    return GdalMessage(level, code, _clean(text), record.thread)


def _clean(text: object) -> str:
    return " ".join(str(text).split())


class GdalMessages:
    """What GDAL reported during one :func:`capture_gdal_messages` block."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self._lock = threading.Lock()
        self._messages: list[GdalMessage] = []

    def add(self, message: GdalMessage) -> None:
        with self._lock:
            self._messages.append(message)

    @property
    def messages(self) -> list[GdalMessage]:
        with self._lock:
            return list(self._messages)

    def losses(self, threads: Optional[Collection[int]] = None) -> list[GdalMessage]:
        """The messages that mean lost data.

        With ``threads`` (those that wrote the file), another thread's message
        counts only when it is about writing: GDAL may flush a file's blocks
        from whichever thread fills its cache, while that thread's own
        failures (say, reading an input) are not the file's.
        """
        return [m for m in self.messages if m.loses_data
                and (threads is None or m.thread in threads or m.about_writing)]

    def raise_for_losses(self, path: str, threads: Optional[Collection[int]] = None) -> None:
        """Raise :class:`OutputWriteError` naming ``path`` if GDAL reported lost data."""
        losses = self.losses(threads)
        if losses:
            raise OutputWriteError(f"{path}: writing failed: {losses[0].text}; "
                                   "nothing was written")


class _Router(logging.Handler):
    """The one handler on GDAL's loggers: feeds captures, prints warnings once."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.captures: list[GdalMessages] = []
        self.echo = False
        self._said: set[str] = set()
        self._state = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = parse_record(record)
        if message is None:
            return
        with self._state:
            captures = list(self.captures)
            first = message.text not in self._said
            self._said.add(message.text)
        for capture in captures:
            capture.add(message)
        # Failures surface as exceptions or, inside a capture, as a write error;
        # a warning that means lost data is the capture's to turn into an error.
        if (self.echo and first and not message.is_error and all(c.echo for c in captures)
                and not (captures and message.loses_data)):
            warnings.warn(message.text, GdalWarning, stacklevel=2)


_router = _Router()
_install_lock = threading.Lock()
_installed = False


def _attach(propagate: Optional[bool]) -> None:
    """Hang the router on GDAL's loggers and let their INFO records (failures) through.

    ``propagate`` None leaves the app's own handlers as they were (library use).
    """
    for name in GDAL_LOGGERS:
        logger = logging.getLogger(name)
        if _router not in logger.handlers:
            logger.addHandler(_router)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        if propagate is not None:
            logger.propagate = propagate


def install(verbose: int = 0) -> None:
    """Route GDAL's messages for the rest of the process (the CLI calls this once).

    Each GDAL warning is printed once, as a :class:`GdalWarning`; with
    ``verbose`` the raw log records also reach the log output.
    """
    global _installed
    with _install_lock:
        _attach(propagate=verbose > 0)
        _router.echo = True
        _installed = True


@contextlib.contextmanager
def capture_gdal_messages(echo: bool = True) -> Iterator[GdalMessages]:
    """Collect every GDAL message, from every thread, while the block runs.

    Threads can be told apart by :attr:`GdalMessage.thread`. Captures nest
    and may overlap; each sees every message reported while it is open.
    ``echo=False`` keeps GDAL's warnings from being printed meanwhile (the
    caller reports them itself).
    """
    messages = GdalMessages(echo)
    with _install_lock:
        if not _installed:
            _attach(propagate=None)
    with _router._state:
        _router.captures.append(messages)
    try:
        yield messages
    finally:
        with _router._state:
            _router.captures.remove(messages)
