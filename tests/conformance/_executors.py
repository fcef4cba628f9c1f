"""Small executors and recorders shared by the Manager-level conformance tests."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cereal import (
    Decision,
    Manager,
    Task,
    TaskResult,
    WorkflowEvent,
    WorkflowInstance,
    WorkflowInstanceStatus,
)
from tests.plugins.manager import MakeManager, wait_finished

WF = "wf"
INST = "inst"
# a name that is registered nowhere except in `sync_point` helpers
PROBE_WF = "probe-wf"

Callback = Callable[[WorkflowInstance, Any], Any]


async def _resolve(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def complete_now(w: WorkflowInstance, ev: object) -> Decision:
    """Complete at once with the instance's parameters as the result."""
    return w.complete(w.get_parameters())


def stay_running(w: WorkflowInstance, ev: object) -> Decision:
    """Continue with no tasks: the instance stays live until cancelled or killed."""
    return w.continue_({"state": "waiting"})


def fail_cancelled(w: WorkflowInstance, ev: object) -> Decision:
    return w.fail("cancelled")


def summary(result: TaskResult) -> dict[str, Any]:
    """A JSON-able description of a task's outcome."""
    failure = result.err()
    return {
        "task": result.task_name,
        "status": str(result.status),
        "params": result.get_parameters(),
        "result": None if failure is not None else result.get(),
        "error": None if failure is None else str(failure),
    }


def collect_results(w: WorkflowInstance, ev: Any) -> Decision:
    """Append each task's summary to the payload; complete with the list when all are done."""
    seen = [*(w.get_payload() or []), summary(ev.result)]
    if w.total_completed_tasks() == w.total_enqueued_tasks():
        return w.complete(seen)
    return w.continue_(seen)


def enqueue(*tasks: tuple[str, Any], **options: Any) -> Callback:
    """An ``on_start`` that enqueues ``(task_name, parameters)`` pairs and continues."""

    def on_start(w: WorkflowInstance, ev: object) -> Decision:
        for name, parameters in tasks:
            w.enqueue_task(name, parameters, **options)
        return w.continue_([])

    return on_start


class Flow:
    """A workflow executor built from three callables (plain or async); records every call."""

    def __init__(
        self,
        on_start: Callback = complete_now,
        on_task_complete: Callback = collect_results,
        on_cancel: Callback = fail_cancelled,
    ) -> None:
        self._callbacks = {"start": on_start, "task": on_task_complete, "cancel": on_cancel}
        self.calls: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, Any]] = []

    async def _call(self, kind: str, w: WorkflowInstance, ev: Any) -> Any:
        self.calls.append((kind, w.instance_name))
        self.events.append((kind, w.instance_name, ev))
        return await _resolve(self._callbacks[kind](w, ev))

    async def on_start(self, w: WorkflowInstance, ev: Any) -> Any:
        return await self._call("start", w, ev)

    async def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Any:
        return await self._call("task", w, ev)

    async def on_cancel(self, w: WorkflowInstance, ev: Any) -> Any:
        return await self._call("cancel", w, ev)

    def count(self, kind: str, instance_name: str | None = None) -> int:
        return sum(1 for k, name in self.calls if k == kind and instance_name in (None, name))

    def task_events(self, instance_name: str | None = None) -> list[Any]:
        return [ev for k, name, ev in self.events if k == "task" and instance_name in (None, name)]


class Completions:
    """An ``on_workflow_complete`` hook that records every event."""

    def __init__(self) -> None:
        self.events: list[WorkflowEvent] = []

    def __call__(self, event: WorkflowEvent) -> None:
        self.events.append(event)

    def instance_names(self) -> list[str]:
        return [event.instance.instance_name for event in self.events]


class PlainFlow:
    """A workflow executor with plain (non-async) methods."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def on_start(self, w: WorkflowInstance, ev: Any) -> Decision:
        self.threads.append(threading.current_thread())
        w.enqueue_task("t", "plain")
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.complete(f"{ev.result.get()} done")

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


def echo(task: Task) -> Any:
    """A plain task executor returning its parameters."""
    return task.get_parameters()


async def async_echo(task: Task) -> Any:
    """An async task executor returning its parameters."""
    return task.get_parameters()


class AsyncBlocker:
    """An async task executor that runs until released; records starts and cancellations."""

    def __init__(self, result: Any = "released") -> None:
        self.result = result
        self.release = threading.Event()
        self.started: list[Task] = []
        self.cancelled: list[Task] = []
        self.finished: list[Task] = []

    async def run(self, task: Task) -> Any:
        self.started.append(task)
        try:
            deadline = time.monotonic() + 60
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.cancelled.append(task)
            raise
        self.finished.append(task)
        return self.result


class PlainBlocker:
    """A plain task executor that runs until released or cancelled (``task.is_cancelled()``)."""

    def __init__(self, result: Any = "released") -> None:
        self.result = result
        self.release = threading.Event()
        self.started: list[Task] = []
        self.saw_cancel: list[Task] = []
        self.finished: list[Task] = []

    def run(self, task: Task) -> Any:
        self.started.append(task)
        deadline = time.monotonic() + 60
        while not self.release.is_set() and time.monotonic() < deadline:
            if task.is_cancelled():
                self.saw_cancel.append(task)
                break
            time.sleep(0.01)
        self.finished.append(task)
        return self.result


def register(
    manager: Manager,
    workflows: dict[str, Any] | None = None,
    tasks: dict[str, Any] | None = None,
    **task_options: Any,
) -> Manager:
    """Register the executors on ``manager``; returns it."""
    for name, executor in (workflows or {}).items():
        manager.register_workflow_executor(name, executor)
    for name, executor in (tasks or {}).items():
        manager.register_task_executor(name, executor, **task_options)
    return manager


async def wait_all_finished(
    manager: Manager, workflow_name: str, instance_names: Iterable[str]
) -> dict[str, Any]:
    """Wait for every instance to finish; returns their final snapshots by instance name."""
    return {name: await wait_finished(manager, workflow_name, name) for name in instance_names}


async def sync_point(manager: Manager, instance_name: str = "probe") -> None:
    """Run one more instance of :data:`PROBE_WF` to its end on ``manager``.

    Events are taken oldest first, so once it has finished every event queued
    before it has been processed. Register ``PROBE_WF`` with ``Flow()`` first.
    """
    await manager.enqueue_workflow(PROBE_WF, instance_name)
    await wait_finished(manager, PROBE_WF, instance_name)


async def is_running_with_payload(manager: Manager, workflow: str, instance: str) -> bool:
    """True once the instance is live and has applied a ``continue_`` with a payload."""
    found = await manager.get_workflow_instance(workflow, instance)
    return found.is_running() and found.get_payload() is not None


async def status_of(manager: Manager, workflow: str, instance: str) -> WorkflowInstanceStatus:
    """The listed status of one (workflow, instance) pair."""
    [entry] = await manager.list_workflow_instances(workflow_name=workflow, instance_name=instance)
    return entry.status


async def a_bad_enqueue_fails_the_run(
    make_manager: MakeManager, enqueue_badly: Callable[[WorkflowInstance], None]
) -> tuple[BaseException, str]:
    """Run a workflow whose ``on_start`` enqueues a good task, then calls ``enqueue_badly``.

    Checks that the call raised, the run failed with that error's type and
    text, and no task ran or stayed stored (the good one neither); returns
    the exception and the run's error text.
    """
    raised: list[BaseException] = []

    def on_start(w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("t", 1)  # a good task first: it must not be stored either
        try:
            enqueue_badly(w)
        except Exception as exc:
            raised.append(exc)
            raise
        return w.continue_([])

    ran: list[Task] = []
    manager = register(make_manager(), {WF: Flow(on_start)}, {"t": ran.append})
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    [exc] = raised
    text = str(done.err())
    assert text.startswith(f"{type(exc).__name__}: "), text
    assert ran == []
    assert await manager.list_tasks("t") == []
    return exc, text
