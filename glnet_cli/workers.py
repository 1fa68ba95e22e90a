"""Two small threads that keep the device busy: a prefetching reader and a writer.

Both run one Python thread beside the main one and pass work through bounded
queues, so memory stays bounded. An exception in either thread is re-raised
in the main thread at the next hand-over, never lost.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Iterate ``produce()`` in a background thread, ``depth`` items ahead."""

    def __init__(self, produce: Callable[[], Iterator[T]], depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), daemon=True,
                                        name="glnet-reader")
        self._thread.start()

    def _run(self, produce: Callable[[], Iterator[T]]) -> None:
        try:
            for item in produce():
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the main thread
            self._put(_Failure(exc))
            return
        self._put(_DONE)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the producer (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        self._thread.join(timeout=30)


class BackgroundWorker(Generic[T]):
    """Apply ``handle`` to submitted items in order, in one background thread."""

    def __init__(self, handle: Callable[[T], None], depth: int = 16) -> None:
        self._handle = handle
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="glnet-writer")
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._handle(item)
                except BaseException as exc:  # re-raised by submit() or finish()
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, item: T) -> None:
        self._check()
        self._queue.put(item)

    def finish(self) -> None:
        """Wait until every submitted item is handled; re-raise the first failure."""
        self._queue.put(_DONE)
        self._thread.join()
        self._check()

    def abandon(self) -> None:
        """Stop after the items already queued (on failure or interruption)."""
        self._error = self._error or RuntimeError("abandoned")
        self._queue.put(_DONE)
        self._thread.join(timeout=60)
