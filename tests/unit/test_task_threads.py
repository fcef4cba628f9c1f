"""Threads for plain task executors: one per running job, reused between jobs."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from cereal.task_threads import IDLE_NAME, ThreadReuse
from tests._waiting import wait_until_sync


def test_a_job_runs_on_a_thread_named_after_it_which_then_waits_idle() -> None:
    threads = ThreadReuse()
    seen: list[tuple[str, bool]] = []
    ran_on: list[threading.Thread] = []
    done = threading.Event()

    def job() -> None:
        current = threading.current_thread()
        seen.append((current.name, current is threading.main_thread()))
        ran_on.append(current)
        done.set()

    threads.run(job, "cereal-task-one")
    assert done.wait(10)
    wait_until_sync(lambda: threads.idle == 1, what="the thread to wait for a next job")
    assert seen == [("cereal-task-one", False)]
    assert ran_on[0].name == IDLE_NAME


def test_a_thread_whose_job_ended_runs_the_next_job() -> None:
    threads = ThreadReuse()
    ran: list[threading.Thread] = []
    for n in range(5):
        threads.run(lambda: ran.append(threading.current_thread()), f"job-{n}")
        wait_until_sync(lambda: threads.idle == 1, what="the job to end")
    assert threads.started == 1
    assert len(set(ran)) == 1


def test_a_job_that_does_not_return_never_holds_up_another() -> None:
    threads = ThreadReuse()
    gate = threading.Event()
    second = threading.Event()
    try:
        threads.run(lambda: gate.wait(30), "hangs")
        threads.run(second.set, "second")
        assert second.wait(10)  # it had a thread of its own
        assert threads.started == 2
    finally:
        gate.set()


def test_idle_threads_exit_after_their_idle_time() -> None:
    threads = ThreadReuse(idle_seconds=0.05)
    holder: list[threading.Thread] = []
    threads.run(lambda: holder.append(threading.current_thread()), "short")
    wait_until_sync(lambda: bool(holder) and not holder[0].is_alive(), what="the thread to exit")
    assert threads.idle == 0
    threads.run(lambda: None, "again")  # a new thread starts
    wait_until_sync(lambda: threads.started == 2, what="a second thread")


def test_a_job_that_raises_is_logged_and_its_thread_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="cereal")
    threads = ThreadReuse()

    def boom() -> None:
        raise RuntimeError("boom")

    threads.run(boom, "raises")
    wait_until_sync(lambda: threads.idle == 1, what="the thread to survive")
    assert "a task thread's job raised" in caplog.text
    done = threading.Event()
    threads.run(done.set, "after")
    assert done.wait(10)
    assert threads.started == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_jobs_on_threads_of_its_own() -> None:
    threads = ThreadReuse()
    threads.run(lambda: None, "before-fork")
    wait_until_sync(lambda: threads.idle == 1, what="an idle thread before the fork")
    pid = os.fork()
    if pid == 0:  # the child: the parent's idle thread does not exist here
        ran = threading.Event()
        threads.run(ran.set, "in-child")
        os._exit(0 if ran.wait(10) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
