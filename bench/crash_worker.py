"""A crash-suite worker process: ``python -m bench.crash_worker URL GAUGE``.

Runs a Manager with the ``crash`` workflow and its ``crash_step`` tasks until
it is killed (the suite kills it with SIGKILL) or its standard input closes.
``GAUGE`` is a 16-byte file this process keeps up to date: how many tasks and
how many workflow decisions it is running right now, so the suite can kill it
while a task, or a decision, is in flight.

The workflow keeps, in its stored state, the index of every task result it
applied. A completed run's result is that list: a result applied twice shows
as an index listed twice, a result lost as a run that never completes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import mmap
import os
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cereal
from cereal import (
    CancelEvent,
    Decision,
    RetryPolicy,
    StartEvent,
    Task,
    TaskCompleteEvent,
    TaskStatus,
    WorkflowInstance,
)
from cereal.models import MAX_RETENTION_ROWS, HistoryRetention

WORKFLOW = "crash"
TASK = "crash_step"
GAUGE_FORMAT = "<qq"  # tasks in flight, decisions in flight
GAUGE_SIZE = struct.calcsize(GAUGE_FORMAT)
# the read-back counts finished runs: no sweep may trim one (the default keeps 10 000)
KEEP_EVERY_RUN = HistoryRetention(max_rows=MAX_RETENTION_ROWS, margin_rows=0)
# a worker killed mid-task is retried by the store after its lease expires
STEP_RETRY = RetryPolicy(max_attempts=20, initial_backoff=0.05, max_backoff=0.5)


def spread(key: str, low: float, high: float) -> float:
    """A duration in [low, high) that depends only on ``key`` (runs repeat exactly)."""
    fraction = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest()) / 2**32
    return low + (high - low) * fraction


class Gauge:
    """The in-flight counts, in a file the suite reads while this process runs."""

    def __init__(self, path: Path) -> None:
        path.write_bytes(bytes(GAUGE_SIZE))
        with path.open("r+b") as file:
            self._map = mmap.mmap(file.fileno(), GAUGE_SIZE)
        self._lock = threading.Lock()  # callbacks may run on worker threads
        self._counts = [0, 0]

    def add(self, slot: int, delta: int) -> None:
        """Move the count in ``slot`` (0 tasks, 1 decisions) by ``delta``."""
        with self._lock:
            self._counts[slot] += delta
            struct.pack_into(GAUGE_FORMAT, self._map, 0, *self._counts)


class CrashWorkflow:
    """Enqueues ``tasks`` steps; completes once each step's result is applied.

    A step that comes back without success (its retries used up by crashes) is
    enqueued again, as a real workflow would; decisions take a few ms so that
    a kill can land in one.
    """

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def _deciding(self, key: str) -> None:
        self._gauge.add(1, 1)
        try:
            time.sleep(spread(key, 0.002, 0.02))
        finally:
            self._gauge.add(1, -1)

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        """Enqueue every step."""
        self._deciding(w.instance_name)
        for index in range(w.get_parameters()["tasks"]):
            w.enqueue_task(TASK, {"run": w.instance_name, "i": index})
        return w.continue_({"applied": [], "reenqueued": 0})

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        """Apply one step's result: record its index, or enqueue the step again."""
        state: dict[str, Any] = w.get_payload()
        step = ev.result.get_parameters()
        self._deciding(f"{w.instance_name}/{step['i']}/{len(state['applied'])}")
        if ev.result.status is not TaskStatus.SUCCESS:
            state["reenqueued"] += 1
            w.enqueue_task(TASK, step)
            return w.continue_(state)
        state["applied"].append(ev.result.get()["i"])
        if set(state["applied"]) == set(range(w.get_parameters()["tasks"])):
            return w.complete(state)
        return w.continue_(state)

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        """The suite never cancels: a cancel here is a failure it reports."""
        return w.fail("cancelled")


def make_step(gauge: Gauge) -> Any:
    """The step task: takes 10-120 ms, returns its index."""

    async def crash_step(task: Task) -> dict[str, int]:
        step = task.get_parameters()
        gauge.add(0, 1)
        try:
            await asyncio.sleep(spread(f"{step['run']}/{step['i']}", 0.01, 0.12))
        finally:
            gauge.add(0, -1)
        return {"i": step["i"]}

    return crash_step


async def serve(url: str, gauge_path: Path, task_workers: int) -> None:
    """Run the Manager until standard input closes."""
    gauge = Gauge(gauge_path)
    manager = cereal.Manager(
        cereal.open_driver(url, retention=KEEP_EVERY_RUN),
        task_expiry=2.0,
        task_heartbeat_interval=0.3,
        task_poll_interval=0.2,
        workflow_poll_interval=0.2,
        stop_grace_period=2.0,
    )
    manager.register_workflow_executor(WORKFLOW, CrashWorkflow(gauge))
    manager.register_task_executor(TASK, make_step(gauge), workers=task_workers, retry=STEP_RETRY)
    async with manager:
        sys.stdout.write(f"READY {os.getpid()}\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("gauge", type=Path)
    parser.add_argument("--task-workers", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.url, args.gauge, args.task_workers))


if __name__ == "__main__":
    main()
