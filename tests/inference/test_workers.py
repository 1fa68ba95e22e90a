"""Reader and writer threads: order, a resource per thread, errors reach the caller, no hangs."""

from __future__ import annotations

import contextlib
import random
import threading
import time

import pytest

from glnet_cli.inference.workers import BackgroundWorker, Prefetcher, ThreadPool


class Handle:
    """A stand-in for a dataset handle: remembers its thread and whether it was closed."""

    def __init__(self, registry: list) -> None:
        self.thread = threading.get_ident()
        self.closed = False
        registry.append(self)

    def close(self) -> None:
        self.closed = True


def opener(registry: list):
    return lambda: contextlib.closing(Handle(registry))


def _join(thread: threading.Thread) -> None:
    """Fail (instead of hanging the suite) when ``thread`` does not end."""
    thread.join(timeout=20)
    assert not thread.is_alive(), "the call hung"


def _in_thread(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def _slow_identity(i: int):
    def job(handle: Handle) -> tuple[int, Handle]:
        time.sleep(random.random() / 200)
        assert handle.thread == threading.get_ident()  # each thread uses its own handle
        return i, handle
    return job


def test_prefetcher_yields_results_in_order_with_one_handle_per_thread():
    handles: list[Handle] = []
    reader = Prefetcher((_slow_identity(i) for i in range(60)), opener(handles), threads=3,
                        depth=6)
    results = list(reader)
    reader.close()
    assert [i for i, _ in results] == list(range(60))
    assert 1 <= len(handles) <= 3
    assert len({h.thread for h in handles}) == len(handles)
    assert all(h.closed for h in handles)


class Boom(Exception):
    pass


def test_an_error_in_a_reader_thread_reaches_the_caller_as_the_same_exception():
    error = Boom("disk on fire")

    def jobs():
        yield _slow_identity(0)
        yield _slow_identity(1)

        def fail(handle):
            raise error
        yield fail
        yield _slow_identity(3)

    handles: list[Handle] = []
    reader = Prefetcher(jobs(), opener(handles), threads=2)
    seen = []
    with pytest.raises(Boom) as caught:
        for i, _ in reader:
            seen.append(i)
    reader.close()
    assert caught.value is error
    assert seen == [0, 1]
    assert all(h.closed for h in handles)


def test_closing_a_prefetcher_midway_does_not_hang_and_closes_every_handle():
    handles: list[Handle] = []
    reader = Prefetcher((_slow_identity(i) for i in range(10_000)), opener(handles), threads=2,
                        depth=8)
    for i, _ in reader:
        if i == 5:
            break
    _join(_in_thread(reader.close))
    assert handles and all(h.closed for h in handles)


def test_thread_pool_opens_a_resource_per_thread_and_closes_them_all():
    handles: list[Handle] = []
    pool = ThreadPool(2, opener(handles))
    futures = [pool.submit(_slow_identity(i)) for i in range(20)]
    assert [f.result()[0] for f in futures] == list(range(20))
    pool.close()
    assert 1 <= len(handles) <= 2 and all(h.closed for h in handles)


@pytest.mark.parametrize("threads", [None, 3])
def test_background_worker_handles_items_in_submission_order(threads):
    handled = []
    if threads is None:
        worker = BackgroundWorker(handled.append)
    else:
        def square(i: int) -> int:
            time.sleep(random.random() / 200)
            return i * i
        worker = BackgroundWorker(handled.append, square, threads)
    for i in range(50):
        worker.submit(i)
    worker.finish()
    assert handled == [i if threads is None else i * i for i in range(50)]


@pytest.mark.parametrize("where", ["prepare", "handle"])
def test_an_error_in_the_writer_reaches_the_caller_as_the_same_exception(where):
    error = Boom("full disk")

    def step(i: int) -> int:
        if i == 3:
            raise error
        return i
    worker = (BackgroundWorker(lambda i: None, step, 2) if where == "prepare"
              else BackgroundWorker(step))
    with pytest.raises(Boom) as caught:
        for i in range(1000):
            worker.submit(i)
            time.sleep(0.001)
        worker.finish()
    assert caught.value is error
    worker.abandon()  # after a failure: returns, raises nothing


def test_abandon_drops_what_is_queued_and_does_not_wait_for_a_full_queue():
    started, release = threading.Event(), threading.Event()
    handled = []

    def stuck(i: int) -> None:
        started.set()
        release.wait(20)
        handled.append(i)
    worker = BackgroundWorker(stuck, depth=2)
    worker.submit(0)
    assert started.wait(10)
    worker.submit(1)
    worker.submit(2)  # the queue is full, its writer stuck on item 0
    _join(_in_thread(lambda: worker.abandon(timeout=0.2)))
    release.set()
    for _ in range(200):
        if handled:
            break
        time.sleep(0.05)
    time.sleep(0.1)
    assert handled == [0]  # 1 and 2 were dropped
