"""Threads for plain task executors: one per running job, kept a while between jobs.

Every plain executor runs on a thread of its own, so one that hangs (a task
that timed out, which Python cannot interrupt) holds only its own thread and
never a slot other tasks need. Starting a thread for each task is a large
share of a short task's CPU, though; so a thread whose job has ended waits up
to :data:`IDLE_SECONDS` for the next job instead of exiting. A job never
waits for a thread: when none is idle, a new one starts. So ``threading.local``
state an executor leaves behind may be seen by a later task on the same
thread. A forked child forgets its parent's idle threads (they do not exist
in it).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable

logger = logging.getLogger(__name__)

IDLE_SECONDS = 10.0
"""How long a thread whose job ended waits for another before it exits."""

IDLE_NAME = "cereal-task-idle"
"""The name of a thread waiting for its next job (a running one carries its job's name)."""

Job = tuple[Callable[[], None], str]


class ThreadReuse:
    """Runs each job on an idle thread, or on a new one when none is idle.

    Args:
        idle_seconds: how long an idle thread waits for a job before it exits.
    """

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Job]] = []  # the inboxes of idle threads
        self.started = 0
        """How many threads were started (for tests and the bench)."""
        # a forked child has none of these threads (and maybe a lock held mid-fork)
        forget = weakref.WeakMethod(self._forget_threads)
        os.register_at_fork(after_in_child=lambda: (method := forget()) and method())

    def _forget_threads(self) -> None:
        self._lock = threading.Lock()
        self._idle = []

    @property
    def idle(self) -> int:
        """How many threads wait for a job now."""
        with self._lock:
            return len(self._idle)

    def run(self, job: Callable[[], None], name: str) -> None:
        """Run ``job`` on a thread of its own now, named ``name`` while it runs.

        ``job`` must not raise (an exception escaping it is logged and dropped).
        """
        with self._lock:
            inbox = self._idle.pop() if self._idle else None  # the most recent: kept warm
            if inbox is None:
                self.started += 1
        if inbox is not None:
            inbox.put((job, name))
            return
        inbox = queue.SimpleQueue()
        inbox.put((job, name))
        threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()

    def _serve(self, inbox: queue.SimpleQueue[Job]) -> None:
        thread = threading.current_thread()
        job, thread.name = inbox.get()
        while True:
            try:
                job()
            except BaseException:  # the job owns its errors; a thread must survive them
                logger.exception("a task thread's job raised")
            thread.name = IDLE_NAME
            with self._lock:
                self._idle.append(inbox)
            try:
                job, thread.name = inbox.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:
                        self._idle.remove(inbox)
                        return
                # taken off the idle list just as the wait ended: its job is on the way
                job, thread.name = inbox.get()


TASK_THREADS = ThreadReuse()
"""The threads every Manager of the process runs plain task executors on."""
