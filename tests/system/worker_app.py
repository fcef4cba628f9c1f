"""A worker process for the multi-process tests: ``python -m tests.system.worker_app URL DIR``.

Runs a Manager with a fan-out workflow and its tasks until SIGTERM. It writes
``DIR/<pid>.ran`` (one line per task it executed) so tests can see who did
what, and ``DIR/<pid>.started-slow`` when it starts a slow task (the kill -9
test waits for that file, then kills the process).

A fan-out started with ``{"count": N, "peers": P}`` gates its squaring tasks:
each process, at its first task, writes ``DIR/<pid>.took-part`` and runs no
task until P processes have written one, so every process takes part by
construction rather than by the luck of the scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from cereal import (
    Manager,
    RetryPolicy,
    StartEvent,
    Task,
    TaskCompleteEvent,
    TaskStatus,
    open_driver,
)
from cereal.instance import CancelEvent, Decision, WorkflowInstance


class FanOut:
    """Enqueues ``count`` squaring tasks; completes with the sum once every one succeeded.

    A task that comes back LOST or FAILED (a worker died, the database dropped a
    connection) is enqueued again, as a real workflow would retry it.
    """

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        count = w.get_parameters()["count"]
        gate = {"peers": w.get_parameters()["peers"]} if "peers" in w.get_parameters() else {}
        for index in range(count):
            w.enqueue_task("square", {"i": index, **gate})
        return w.continue_({"sum": 0, "seen": [], "retried": 0})

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        payload = w.get_payload()
        index = ev.result.get_parameters()["i"]
        if ev.result.status is not TaskStatus.SUCCESS:
            payload["retried"] += 1
            w.enqueue_task("square", ev.result.get_parameters())
            return w.continue_(payload)
        payload["seen"].append(index)
        payload["sum"] += ev.result.get()
        if len(payload["seen"]) == w.get_parameters()["count"]:
            seen = payload["seen"]
            return w.complete(
                {"sum": payload["sum"], "completions": len(seen), "distinct": len(set(seen))}
            )
        return w.continue_(payload)

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


class HangOnFirstDelivery:
    """The first delivery of on_start hangs (the test kills that process); a redelivery
    enqueues three tasks, and the workflow completes when all three came back."""

    def __init__(self, record_dir: Path) -> None:
        self._marker = record_dir / "first-delivery"

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        if not self._marker.exists():
            self._marker.write_text(str(os.getpid()))
            time.sleep(600)
        for index in range(3):
            w.enqueue_task("square", {"i": index})
        return w.continue_([])

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        seen = [*w.get_payload(), ev.result.get_parameters()["i"]]
        if w.total_completed_tasks() == 3:
            return w.complete({"completed": sorted(seen), "enqueued": w.total_enqueued_tasks()})
        return w.continue_(seen)

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


class SlowThenQuick:
    """Runs one slow task; when it is lost, runs a quick one and completes with both outcomes."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        w.enqueue_task("slow")
        return w.continue_({"outcomes": []})

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        outcomes = w.get_payload()["outcomes"] + [[ev.task_name, ev.result.status.value]]
        if ev.task_name == "slow":
            if ev.result.status is TaskStatus.LOST:
                w.enqueue_task("quick")
                return w.continue_({"outcomes": outcomes})
            return w.complete({"outcomes": outcomes})
        return w.complete({"outcomes": outcomes})

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


class CrashThenSucceed:
    """Runs one "crashy" task under a 3-attempt retry policy; completes with how it ended."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        w.enqueue_task("crashy", retry=RetryPolicy(max_attempts=3, initial_backoff=0.1))
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        result = ev.result
        value = result.get() if result.status is TaskStatus.SUCCESS else None
        outcome = {"status": result.status.value, "attempts": result.attempts, "value": value}
        return w.complete(outcome)

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


def build_manager(url: str, record_dir: Path, **options: Any) -> Manager:
    """The Manager every worker process runs."""
    ran = record_dir / f"{os.getpid()}.ran"
    took_part = False

    async def wait_for_peers(peers: int) -> None:
        # every task of this process waits here until each peer has started one
        nonlocal took_part
        if took_part:
            return
        (record_dir / f"{os.getpid()}.took-part").write_text("took part")
        deadline = time.monotonic() + 60
        while len(list(record_dir.glob("*.took-part"))) < peers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {peers} processes took part within 60 s")
            await asyncio.sleep(0.01)
        took_part = True

    async def square(task: Task) -> int:
        if "peers" in task.get_parameters():
            await wait_for_peers(task.get_parameters()["peers"])
        index: int = task.get_parameters()["i"]
        with ran.open("a") as out:
            out.write(f"{index}\n")
        return index * index

    async def slow(task: Task) -> str:
        (record_dir / f"{os.getpid()}.started-slow").write_text("started")
        await asyncio.sleep(600)
        return "finished"

    def quick(task: Task) -> str:
        return "quick done"

    async def crashy(task: Task) -> str:
        # attempts 1 and 2 hang until the test kills this process; attempt 3 ends
        attempt = task.metadata.attempt
        (record_dir / f"{os.getpid()}.started-crashy-{attempt}").write_text("started")
        if attempt < 3:
            await asyncio.sleep(600)
        return f"survived attempt {attempt}"

    manager = Manager(open_driver(url), **options)
    manager.register_workflow_executor("fan-out", FanOut())
    manager.register_workflow_executor("slow-then-quick", SlowThenQuick())
    manager.register_workflow_executor("hang-on-first-delivery", HangOnFirstDelivery(record_dir))
    manager.register_task_executor("square", square, workers=8)
    manager.register_task_executor("slow", slow)
    manager.register_task_executor("quick", quick)
    manager.register_workflow_executor("crash-then-succeed", CrashThenSucceed())
    manager.register_task_executor("crashy", crashy)
    return manager


async def serve(url: str, record_dir: Path) -> None:
    """Run until SIGTERM, then stop gracefully."""
    manager = build_manager(
        url,
        record_dir,
        task_poll_interval=0.2,
        workflow_poll_interval=0.2,
        task_heartbeat_interval=0.2,
        task_expiry=1.5,
        stop_grace_period=2.0,
        workflow_workers=int(os.environ.get("CEREAL_TEST_WORKFLOW_WORKERS", "1")),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with manager:
        (record_dir / f"{os.getpid()}.ready").write_text("ready")
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("record_dir", type=Path)
    args = parser.parse_args()
    asyncio.run(serve(args.url, args.record_dir))


if __name__ == "__main__":
    main()
