"""SIGTERM (batch schedulers, ``timeout``, ``kill``) cleans up exactly like Ctrl-C.

Python turns SIGINT into :class:`KeyboardInterrupt` in the main thread, which
unwinds every ``with`` block: background threads are stopped and temp files
removed. SIGTERM would otherwise kill the process on the spot and leave them.
Here it raises :class:`Terminated`, a ``KeyboardInterrupt``, so the same
unwinding runs; the CLI then exits with 128 + 15 as a killed process would.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Optional


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM; raised in the main thread."""

    signal_name = "SIGTERM"
    exit_code = 128 + signal.SIGTERM


def _terminate(signum: int, frame: Optional[FrameType]) -> None:
    # Raise once; a second SIGTERM must not cut the clean-up the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def install_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
