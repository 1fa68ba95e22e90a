"""Threads that keep the device busy: parallel prefetching readers and a writer.

Reads run in a few threads, each with its own resource (a GDAL dataset handle
is not safe to share between threads), a bounded number of items ahead, and
come back in order. Finished work is prepared (blended) in a few threads and
handled (written) in one, in submission order, through a bounded queue. An
exception in any of these threads is re-raised in the caller's thread at the
next hand-over, as the same exception object, never lost.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, ContextManager, Generic, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")
U = TypeVar("U")

_DONE = object()


class ThreadPool(Generic[R]):
    """``threads`` threads, each owning a resource opened on its first job and closed at the end.

    ``open_resource`` returns a context manager (a dataset reader, say); jobs
    are callables that take the running thread's resource.
    """

    def __init__(self, threads: int, open_resource: Callable[[], ContextManager[R]],
                 name: str = "glnet-pool") -> None:
        self._executor = ThreadPoolExecutor(max(1, threads), thread_name_prefix=name)
        self._open = open_resource
        self._local = threading.local()
        self._resources = contextlib.ExitStack()
        self._lock = threading.Lock()

    def submit(self, job: Callable[[R], T]) -> "Future[T]":
        return self._executor.submit(self._run, job)

    def _run(self, job: Callable[[R], T]) -> T:
        if not hasattr(self._local, "resource"):
            with self._lock:
                self._local.resource = self._resources.enter_context(self._open())
        return job(self._local.resource)

    def close(self) -> None:
        """Drop the jobs not started, wait for the running ones, close every resource."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._resources.close()


class Prefetcher(Generic[R, T]):
    """Run ``jobs`` in a :class:`ThreadPool`, ``depth`` jobs ahead; iterate their results in order.

    The jobs iterator itself is advanced in the consuming thread, so it only
    has to describe the work (cheap closures), not do it.
    """

    def __init__(self, jobs: Iterable[Callable[[R], T]],
                 open_resource: Callable[[], ContextManager[R]], threads: int = 2,
                 depth: int = 4) -> None:
        self._jobs = iter(jobs)
        self._pool = ThreadPool(threads, open_resource, name="glnet-reader")
        self._pending: collections.deque[Future[T]] = collections.deque()
        self._depth = max(1, depth)

    def __iter__(self) -> Iterator[T]:
        while True:
            for job in self._jobs:
                self._pending.append(self._pool.submit(job))
                if len(self._pending) >= self._depth:
                    break
            if not self._pending:
                return
            yield self._pending.popleft().result()

    def close(self) -> None:
        """Stop reading: cancel what has not started, wait for the rest, close the resources."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.close()


class BackgroundWorker(Generic[T, U]):
    """Apply ``handle`` to submitted items in order, in one background thread.

    With ``prepare``, every item first goes through ``prepare`` in one of
    ``threads`` threads (concurrently), and ``handle`` gets the results in
    submission order. At most ``depth`` items wait at any time.
    """

    def __init__(self, handle: Callable[[U], None], prepare: Optional[Callable[[T], U]] = None,
                 threads: int = 1, depth: int = 16) -> None:
        self._handle = handle
        self._prepare = prepare
        self._pool = (ThreadPoolExecutor(max(1, threads), thread_name_prefix="glnet-blend")
                      if prepare is not None else None)
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
                    self._handle(item.result() if self._pool is not None else item)
                except BaseException as exc:  # re-raised by submit() or finish()
                    self._error = exc
            elif self._pool is not None:
                item.cancel()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, item: T) -> None:
        self._check()
        prepare, pool = self._prepare, self._pool
        self._queue.put(pool.submit(prepare, item) if pool is not None and prepare is not None
                        else item)

    def finish(self) -> None:
        """Wait until every submitted item is handled; re-raise the first failure."""
        self._stop()
        self._check()

    def abandon(self, timeout: float = 60) -> None:
        """Drop the queued items and stop (on failure or interruption); never raises.

        Waits up to ``timeout`` seconds for the item being handled.
        """
        self._error = self._error or RuntimeError("abandoned")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if self._pool is not None:
                item.cancel()
        self._stop(timeout)

    def _stop(self, timeout: Optional[float] = None) -> None:
        self._queue.put(_DONE)
        self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=timeout is None, cancel_futures=True)
