"""Plain task executors run on reused threads, and a busy thread is never waited for."""

from __future__ import annotations

import os
import threading

import pytest

from cereal._thread_reuse import ReusableThreads
from tests._waiting import wait_until


def _run_and_wait(pool: ReusableThreads, name: str) -> threading.Thread:
    """Run one job on ``pool``; the thread that ran it."""
    done = threading.Event()
    seen: list[threading.Thread] = []

    def job() -> None:
        seen.append(threading.current_thread())
        done.set()

    pool.run(job, name)
    assert done.wait(10), "the job never ran"
    return seen[0]


async def test_a_finished_thread_takes_the_next_job() -> None:
    pool = ReusableThreads()
    first = _run_and_wait(pool, "job-1")
    await wait_until(lambda: pool.idle_count() == 1, what="the thread parked")
    second = _run_and_wait(pool, "job-2")
    assert first is second


def test_a_busy_thread_is_not_waited_for() -> None:
    pool = ReusableThreads()
    release = threading.Event()
    started = threading.Event()
    busy: list[threading.Thread] = []

    def blocking() -> None:
        busy.append(threading.current_thread())
        started.set()
        release.wait(10)

    pool.run(blocking, "stray")
    assert started.wait(10)
    try:
        other = _run_and_wait(pool, "next")  # would hang if it queued behind the stray
        assert other is not busy[0]
    finally:
        release.set()


def test_the_thread_is_named_after_its_current_job() -> None:
    pool = ReusableThreads()
    names: list[str] = []
    done = threading.Event()

    def job() -> None:
        names.append(threading.current_thread().name)
        done.set()

    pool.run(job, "cereal-task-resize")
    assert done.wait(10)
    assert names == ["cereal-task-resize"]


async def test_an_idle_thread_ends_after_its_idle_time() -> None:
    pool = ReusableThreads(idle_seconds=0.05)
    retired = _run_and_wait(pool, "short-lived")
    await wait_until(lambda: pool.idle_count() == 0, what="the idle thread retired")
    await wait_until(lambda: not retired.is_alive(), what="the retired thread ended")
    assert _run_and_wait(pool, "fresh") is not retired


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
async def test_a_forked_child_starts_its_own_threads() -> None:
    from cereal._thread_reuse import PLAIN_TASK_THREADS

    _run_and_wait(PLAIN_TASK_THREADS, "parent")
    await wait_until(lambda: PLAIN_TASK_THREADS.idle_count() >= 1, what="a parked thread")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its idle list must be empty, and a job must still run
        try:
            ok = PLAIN_TASK_THREADS.idle_count() == 0
            _run_and_wait(PLAIN_TASK_THREADS, "child")
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
