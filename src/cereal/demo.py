"""The workflows behind ``cereal demo``: an order batch fanned out over many tasks.

``OrderBatchWorkflow`` enqueues one ``demo-process-item`` task per item in
``on_start``. ``process_item`` does a little real work per item (a SHA-256
checksum and a few milliseconds of simulated I/O) and fails some items on
purpose: items divisible by 17 fail on their first attempt only, items
divisible by 97 fail every time. The workflow, not the engine, decides on
retries: ``on_task_complete`` re-enqueues a failed item with ``attempt + 1``
up to ``max_attempts``, keeps the counts in its payload with ``continue_``
and completes with a summary once every item has an outcome.

``HeartbeatWorkflow`` is started by a recurring schedule while the batch
runs; each run enqueues one ``demo-heartbeat-report`` task.

:func:`run_demo` wires it all on one Manager. It shows nothing itself: the
CLI passes a progress callback and renders the returned :class:`DemoReport`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cereal import errors
from cereal.drivers import open_driver
from cereal.executors import Task
from cereal.instance import (
    CancelEvent,
    Decision,
    StartEvent,
    TaskCompleteEvent,
    WorkflowInstance,
)
from cereal.manager import Manager
from cereal.models import TaskStatus

BATCH_WORKFLOW = "demo-order-batch"
"""Workflow name of the order batch."""
ITEM_TASK = "demo-process-item"
"""Task name of one item of the batch."""
HEARTBEAT_WORKFLOW = "demo-heartbeat"
"""Workflow name of the scheduled heartbeat report."""
HEARTBEAT_INSTANCE = "demo-heartbeat"
"""Instance name of the heartbeat schedule (one per database)."""
HEARTBEAT_TASK = "demo-heartbeat-report"
"""Task name of one heartbeat report."""
MAX_ATTEMPTS = 3
"""Attempts per item before the workflow gives it up."""


def fails_once(item: int) -> bool:
    """Items that fail on their first attempt only (a transient error)."""
    return item % 17 == 0


def fails_always(item: int) -> bool:
    """Items that fail on every attempt (a permanent error)."""
    return item % 97 == 0


def item_checksum(item: int) -> str:
    """A deterministic SHA-256 over the item's simulated order lines, in hex."""
    digest = hashlib.sha256()
    for line in range(50):
        digest.update(f"order-{item}:line-{line}:qty-{(item * line) % 7 + 1}".encode())
    return digest.hexdigest()


@dataclass
class DemoStats:
    """Counters the demo's task executors keep in this process."""

    task_executions: int = 0
    heartbeat_reports: int = 0


async def process_item(task: Task, stats: DemoStats | None = None) -> dict[str, Any]:
    """Process one item: checksum it, simulate I/O, and fail on purpose for some items.

    Args:
        task: parameters ``{"item": int, "attempt": int}``.
        stats: counters to update, if any.

    Returns:
        ``{"item": ..., "checksum": ...}``.

    Raises:
        RuntimeError: the item's deliberate failure for this attempt.
    """
    parameters = task.get_parameters()
    item = int(parameters["item"])
    attempt = int(parameters.get("attempt", 1))
    if stats is not None:
        stats.task_executions += 1
    checksum = item_checksum(item)
    await asyncio.sleep((item % 5 + 1) / 1000)  # simulated I/O: 1-5 ms
    if fails_always(item):
        raise RuntimeError(f"item {item}: warehouse rejected the order (attempt {attempt})")
    if fails_once(item) and attempt == 1:
        raise RuntimeError(f"item {item}: inventory service timed out (attempt {attempt})")
    return {"item": item, "checksum": checksum}


def _fold(checksum: str, current: int) -> int:
    """Combine item checksums order-independently (XOR of their first 64 bits)."""
    return current ^ int(checksum[:16], 16)


class OrderBatchWorkflow:
    """Fan out one task per item; retry failed items; complete with a summary."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        """Enqueue the first attempt of every item."""
        parameters = w.get_parameters() or {}
        items = int(parameters.get("items", 0))
        for item in range(1, items + 1):
            w.enqueue_task(ITEM_TASK, {"item": item, "attempt": 1})
        payload = {
            "items": items,
            "max_attempts": int(parameters.get("max_attempts", MAX_ATTEMPTS)),
            "succeeded": 0,
            "failed": 0,
            "retried_items": 0,
            "retries": 0,
            "fold": 0,
            "failed_items": [],
        }
        if items == 0:
            return w.complete(_summary(payload))
        return w.continue_(payload)

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        """Count the outcome; re-enqueue a failure while attempts remain; complete when done."""
        payload = dict(w.get_payload())
        task = ev.result.get_parameters()
        item, attempt = int(task["item"]), int(task["attempt"])
        if ev.result.status is TaskStatus.SUCCESS:
            payload["succeeded"] += 1
            payload["fold"] = _fold(ev.result.get()["checksum"], payload["fold"])
        elif attempt < payload["max_attempts"]:
            w.enqueue_task(ITEM_TASK, {"item": item, "attempt": attempt + 1})
            payload["retries"] += 1
            if attempt == 1:
                payload["retried_items"] += 1
        else:
            payload["failed"] += 1
            payload["failed_items"] = sorted([*payload["failed_items"], item])
        if payload["succeeded"] + payload["failed"] >= payload["items"]:
            return w.complete(_summary(payload))
        return w.continue_(payload)

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        """Stop early, reporting what was done so far."""
        return w.complete({**_summary(dict(w.get_payload() or {})), "cancelled": True})


def _summary(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "items": payload.get("items", 0),
        "succeeded": payload.get("succeeded", 0),
        "failed_permanently": payload.get("failed", 0),
        "retried_items": payload.get("retried_items", 0),
        "retries": payload.get("retries", 0),
        "failed_items": payload.get("failed_items", []),
        "checksum": f"{payload.get('fold', 0):016x}",
        "cancelled": False,
    }


class HeartbeatWorkflow:
    """One scheduled run: enqueue a report task, complete with its result."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        """Ask for one heartbeat report."""
        w.enqueue_task(HEARTBEAT_TASK, {"scheduled_at": ev.enqueued_at.isoformat()})
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        """Complete with the report, or fail with the task's error."""
        failure = ev.result.err()
        if failure is not None:
            return w.fail(failure)
        return w.complete(ev.result.get())

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        """Nothing to clean up."""
        return w.complete(None)


@dataclass
class DemoReport:
    """What one demo run did, for the CLI's results table."""

    database: str
    workflow_name: str
    instance_name: str
    items: int
    succeeded: int
    retried_items: int
    retries: int
    failed_permanently: int
    failed_items: list[int]
    checksum: str
    task_executions: int
    workers: int
    elapsed: float
    schedule_runs: int
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks_per_second(self) -> float:
        """Task executions per second of the batch."""
        return self.task_executions / self.elapsed if self.elapsed > 0 else 0.0


ProgressCallback = Callable[[int, int], None]
"""Called with (items with an outcome, items in total) while the batch runs."""


def build_manager(url: str, stats: DemoStats, *, workers: int = 8) -> Manager:
    """A Manager on ``url`` with the demo's workflows and task executors registered."""
    manager = Manager(
        open_driver(url),
        task_poll_interval=0.2,
        workflow_poll_interval=0.2,
        scheduler_max_wakeup_interval=0.5,
        stop_grace_period=5.0,
    )
    manager.register_workflow_executor(BATCH_WORKFLOW, OrderBatchWorkflow())
    manager.register_workflow_executor(HEARTBEAT_WORKFLOW, HeartbeatWorkflow())

    async def run_item(task: Task) -> dict[str, Any]:
        return await process_item(task, stats)

    async def report(task: Task) -> dict[str, Any]:
        stats.heartbeat_reports += 1
        return {"report": stats.heartbeat_reports, "task_executions": stats.task_executions}

    manager.register_task_executor(ITEM_TASK, run_item, workers=workers)
    manager.register_task_executor(HEARTBEAT_TASK, report)
    return manager


async def _reset_heartbeat(manager: Manager, recurrence: str) -> None:
    """Replace a heartbeat schedule left by an earlier run, then create this run's."""
    try:
        await manager.delete_workflow_schedule(HEARTBEAT_WORKFLOW, HEARTBEAT_INSTANCE)
    except errors.WorkflowScheduleNotFoundError:
        pass
    await manager.create_workflow_schedule(
        HEARTBEAT_WORKFLOW, HEARTBEAT_INSTANCE, {"source": "cereal demo"}, recurrence
    )


async def _drop_heartbeat(manager: Manager) -> None:
    try:
        await manager.delete_workflow_schedule(HEARTBEAT_WORKFLOW, HEARTBEAT_INSTANCE)
    except errors.WorkflowScheduleNotFoundError:
        pass


async def _kill_quietly(manager: Manager, instance_name: str) -> None:
    try:
        await manager.kill_workflow(BATCH_WORKFLOW, instance_name)
    except errors.WorkflowInstanceNotFoundError:
        pass


async def run_demo(
    url: str,
    *,
    items: int = 300,
    workers: int = 8,
    heartbeat_every: int = 1,
    min_heartbeats: int = 2,
    on_progress: ProgressCallback | None = None,
    poll_interval: float = 0.1,
    timeout: float = 600.0,
) -> DemoReport:
    """Run one order batch of ``items`` items to completion on the database at ``url``.

    A heartbeat schedule (``FREQ=SECONDLY;INTERVAL=<heartbeat_every>``) runs
    meanwhile; the demo waits (a few seconds at most) for ``min_heartbeats``
    reports, then deletes the schedule. Each run uses a fresh instance name,
    so runs can follow each other on the same database.

    Raises:
        ValueError: ``items``, ``workers`` or ``heartbeat_every`` out of range.
        TimeoutError: the batch did not finish within ``timeout`` seconds.
    """
    if items < 1 or workers < 1 or heartbeat_every < 1:
        raise ValueError("items, workers and heartbeat_every must be at least 1")
    stats = DemoStats()
    manager = build_manager(url, stats, workers=workers)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
    instance_name = f"batch-{stamp}-{os.getpid()}"
    finished = False
    try:
        await manager.start()
        await _reset_heartbeat(manager, f"FREQ=SECONDLY;INTERVAL={heartbeat_every}")
        started = time.monotonic()
        await manager.enqueue_workflow(
            BATCH_WORKFLOW, instance_name, {"items": items, "max_attempts": MAX_ATTEMPTS}
        )
        result = await _wait_batch(
            manager, instance_name, items, on_progress, poll_interval, started + timeout
        )
        finished = True
        elapsed = time.monotonic() - started
        executions = stats.task_executions
        heartbeat_deadline = time.monotonic() + heartbeat_every * (min_heartbeats + 1) + 2
        while stats.heartbeat_reports < min_heartbeats and time.monotonic() < heartbeat_deadline:
            await asyncio.sleep(poll_interval)
    finally:
        try:
            await _drop_heartbeat(manager)
            if not finished:  # interrupted or failed: leave no half-done batch behind
                await _kill_quietly(manager, instance_name)
        finally:
            await manager.stop()
    return DemoReport(
        database=url,
        workflow_name=BATCH_WORKFLOW,
        instance_name=instance_name,
        items=items,
        succeeded=int(result["succeeded"]),
        retried_items=int(result["retried_items"]),
        retries=int(result["retries"]),
        failed_permanently=int(result["failed_permanently"]),
        failed_items=[int(item) for item in result["failed_items"]],
        checksum=str(result["checksum"]),
        task_executions=executions,
        workers=workers,
        elapsed=elapsed,
        schedule_runs=stats.heartbeat_reports,
        result=result,
    )


async def _wait_batch(
    manager: Manager,
    instance_name: str,
    items: int,
    on_progress: ProgressCallback | None,
    poll_interval: float,
    deadline: float,
) -> dict[str, Any]:
    """Poll the batch's payload for progress until it finishes; returns its result."""
    while True:
        snapshot = await manager.get_workflow_instance(BATCH_WORKFLOW, instance_name)
        if not snapshot.is_running():
            result: dict[str, Any] = snapshot.get_result()  # raises WorkflowFailedError
            if on_progress is not None:
                on_progress(int(result["succeeded"]) + int(result["failed_permanently"]), items)
            return result
        payload = snapshot.get_payload() or {}
        if on_progress is not None:
            on_progress(int(payload.get("succeeded", 0)) + int(payload.get("failed", 0)), items)
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo batch {instance_name!r} did not finish in time")
        await asyncio.sleep(poll_interval)
