"""Threads for plain task executors, kept for reuse once their job is done.

Starting a thread per task run cost about a tenth of the worker's CPU in the
drain profile. A job is handed to an idle thread when one is waiting, else a
new thread starts: a busy thread (a timed-out executor that cannot be
interrupted) is never waited for, so a stray still never holds a slot other
tasks need. Idle threads end after ``IDLE_SECONDS`` without work.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

IDLE_SECONDS = 30.0

Job = Callable[[], None]


class _Worker:
    """One daemon thread that runs the jobs handed to it, one at a time."""

    def __init__(self, pool: ReusableThreads) -> None:
        self._pool = pool
        self._jobs: queue.SimpleQueue[tuple[Job, str]] = queue.SimpleQueue()

    def give(self, job: Job, name: str) -> None:
        self._jobs.put((job, name))

    def start(self, job: Job, name: str) -> None:
        self._jobs.put((job, name))
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        thread = threading.current_thread()
        while True:
            try:
                job, name = self._jobs.get(timeout=self._pool.idle_seconds)
            except queue.Empty:
                if self._pool.retire(self):
                    return
                job, name = self._jobs.get()  # handed a job as the wait ran out
            thread.name = name
            job()
            self._pool.park(self)


class ReusableThreads:
    """Runs jobs on idle threads, starting a new one when none is idle."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def run(self, job: Job, name: str) -> None:
        """Run ``job`` in a thread named ``name``; never waits for a busy thread."""
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is not None:
            worker.give(job, name)
        else:
            _Worker(self).start(job, name)

    def idle_count(self) -> int:
        """How many threads wait for work (for tests and diagnostics)."""
        with self._lock:
            return len(self._idle)

    def park(self, worker: _Worker) -> None:
        """``worker`` finished its job and waits for the next one."""
        with self._lock:
            self._idle.append(worker)

    def retire(self, worker: _Worker) -> bool:
        """End ``worker`` after its idle wait; False when a job was handed to it meanwhile."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False

    def forget_idle(self) -> None:
        """Drop every idle thread: after a fork the child has none of them."""
        self._lock = threading.Lock()
        self._idle = []


PLAIN_TASK_THREADS = ReusableThreads()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=PLAIN_TASK_THREADS.forget_idle)
