"""The progress callback every long-running library function takes.

The library reports, the CLI displays: a function calls
``progress(done, total, **info)`` and :class:`glnet_cli.progress.ProgressReporter`
(or any callable of this shape) shows it. Keeping the type here lets the
library name it without importing the display's rich.
"""

from __future__ import annotations

from typing import Any, Protocol


class ProgressCallback(Protocol):
    """``done`` of ``total`` units finished; ``info`` adds figures such as a rate or a loss."""

    def __call__(self, done: int, total: int, **info: Any) -> None: ...
