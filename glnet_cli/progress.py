"""Progress display for the CLI: a rich bar on a terminal, plain log lines elsewhere.

The library never imports this: its long-running functions take a
``progress(done, total, **info)`` callback, and commands pass a
:class:`ProgressReporter`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Shared stderr console: progress and warnings never mix with stdout results.
stderr_console = Console(stderr=True)


class ProgressReporter:
    """Callable progress sink; use as a context manager around the work."""

    def __init__(self, description: str, quiet: bool = False, unit: str = "items",
                 log_every_s: float = 15.0) -> None:
        self.description = description
        self.quiet = quiet
        self.unit = unit
        self.log_every_s = log_every_s
        self.interactive = stderr_console.is_terminal and not quiet
        self._progress: Optional[Progress] = None
        self._task: Optional[TaskID] = None
        self._last_log = 0.0
        self._last_fraction = -1.0

    def __enter__(self) -> "ProgressReporter":
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TaskProgressColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=stderr_console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=None, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def describe(self, description: str) -> None:
        """Change the label (a new scene, a new training stage)."""
        self.description = description
        self._last_fraction = -1.0
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)

    def __call__(self, done: int, total: Optional[int] = None, **info: Any) -> None:
        text = "  ".join(f"{_label(k)} {_fmt(v)}" for k, v in info.items())
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, total=total, info=text)
            return
        if self.quiet:
            return
        now = time.monotonic()
        fraction = done / total if total else 0.0
        finished = total is not None and done >= total
        if finished or now - self._last_log >= self.log_every_s or \
                fraction - self._last_fraction >= 0.1:
            self._last_log, self._last_fraction = now, fraction
            of = f"/{total}" if total else ""
            click.echo(f"{self.description}: {done}{of} {self.unit} {text}".rstrip(),
                       err=True)
            sys.stderr.flush()


def _label(key: str) -> str:
    """``mpx_per_s`` -> ``Mpx/s``: keyword names as a reader expects them."""
    return key.replace("mpx", "Mpx").replace("_per_s", "/s").replace("_", " ")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
