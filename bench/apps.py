"""The workflows and tasks the scenarios run, shared by the coordinator and the worker processes.

Every figure a scenario needs is stamped into the workflow's payload or result
with ``time.time()`` where it happens, so the coordinator reads exact times back
from the store instead of polling for them.
"""

from __future__ import annotations

import time

import cereal
from cereal.instance import CancelEvent, Decision, StartEvent, TaskCompleteEvent, WorkflowInstance

FANOUT = "bench-fanout"
SINGLE = "bench-single"
PICKUP = "bench-pickup"
NOOP_TASK = "bench-noop"


class FanOut:
    """``count`` no-op tasks; every completion goes through ``on_task_complete``."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        """Enqueue the tasks; the callback's start and end times go into the payload."""
        began = time.time()
        parameters = w.get_parameters()
        keys = parameters.get("keys")  # the keyed drain: tasks spread over keys with a limit
        for i in range(int(parameters["count"])):
            if keys:
                w.enqueue_task(
                    NOOP_TASK,
                    i,
                    concurrency_key=f"key-{i % int(keys)}",
                    concurrency_limit=int(parameters["limit"]),
                )
            else:
                w.enqueue_task(NOOP_TASK, i)
        return w.continue_({"done": 0, "cb_start": began, "cb_end": time.time()})

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        """Count the completion; complete with the time of the last one."""
        payload = w.get_payload()
        payload["done"] += 1
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete({"t_done": time.time()})
        return w.continue_(payload)

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        """Not used by the bench; end the instance."""
        return w.fail("cancelled")


class Stamped:
    """One task; the result holds the start call's time, on_start's, the task's and the end's."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        """Record when the callback ran and enqueue the one task."""
        w.enqueue_task(NOOP_TASK, None)
        return w.continue_({"t_on_start": time.time()})

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        """Complete with every stamp."""
        return w.complete(
            {
                "t0": w.get_parameters()["t0"],
                "t_on_start": w.get_payload()["t_on_start"],
                "t_task": ev.result.get(),
                "t_done": time.time(),
            }
        )

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        """Not used by the bench; end the instance."""
        return w.fail("cancelled")


def noop_task(task: cereal.Task) -> float:
    """The no-op task: returns when it started."""
    return time.time()


def register(manager: cereal.Manager, *, tasks: bool, task_workers: int) -> None:
    """Register the bench workflows, and the no-op task executor when ``tasks`` is set."""
    manager.register_workflow_executor(FANOUT, FanOut())
    manager.register_workflow_executor(SINGLE, Stamped())
    manager.register_workflow_executor(PICKUP, Stamped())
    if tasks:
        manager.register_task_executor(NOOP_TASK, noop_task, workers=task_workers)
