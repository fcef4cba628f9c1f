"""Hand-back at stop (API.md Additions): a task outliving the grace period is queued again."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

import pytest

from cereal import Decision, RetryPolicy, Task, WorkflowInstance
from tests.conformance._executors import INST, WF, Flow, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished

# leases never expire within a test, so only a hand-back can move the task on
NO_EXPIRY: dict[str, Any] = {"task_expiry": 3600.0, "task_heartbeat_interval": 0.1}


def outcome(w: WorkflowInstance, ev: Any) -> Decision:
    """Complete with how the one task ended."""
    result = ev.result
    return w.complete({"status": str(result.status), "attempts": result.attempts})


def started_times(executor: Endless, count: int) -> bool:
    """Whether ``executor`` has started ``count`` times."""
    return len(executor.started) == count


class Endless:
    """An async executor that runs until cancelled; records each start and cancellation."""

    def __init__(self) -> None:
        self.started: list[Task] = []
        self.cancelled: list[Task] = []

    async def run(self, task: Task) -> None:
        self.started.append(task)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(task)
            raise


async def test_a_task_outliving_the_grace_period_is_handed_back_to_another_manager_at_once(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given a workflow Manager, and worker A running a task that never ends by itself
    flows = register(make_manager(**NO_EXPIRY), {WF: Flow(enqueue(("long", None)), outcome)})
    endless = Endless()
    worker_a = register(make_manager(**NO_EXPIRY), tasks={"long": endless})
    await flows.start()
    await worker_a.start()
    await flows.enqueue_workflow(WF, INST)
    await eventually(lambda: len(endless.started) == 1, what="A started the task")
    # and worker B, idle, which polls only once a minute: only a wakeup can bring it the task
    ran_on_b: list[Task] = []

    def finishes(task: Task) -> str:
        ran_on_b.append(task)
        return "finished on B"

    worker_b = register(
        make_manager(task_poll_interval=60.0, **NO_EXPIRY),
        tasks={"long": finishes},
        retry=RetryPolicy(max_attempts=1),
    )
    await worker_b.start()

    # When A stops and the grace period ends with the task still running
    await worker_a.stop(grace_period=0.2)

    # Then A cancelled it and handed it back; B ran it at once; the workflow saw no LOST
    done = await wait_finished(flows, WF, INST)
    assert len(endless.cancelled) == 1
    assert done.get_result() == {"status": "success", "attempts": 1}
    [task] = ran_on_b
    assert task.metadata.attempt == 1  # a hand-back uses up no attempt
    assert task.metadata.task_id == endless.started[0].metadata.task_id
    assert any(
        record.levelno == logging.WARNING
        and "handed back" in record.getMessage()
        and f"long (id {task.metadata.task_id})" in record.getMessage()
        for record in caplog.records
    )


async def test_a_task_handed_back_three_times_is_lost_at_the_fourth_stop(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given a workflow whose task never ends by itself
    flows = register(make_manager(**NO_EXPIRY), {WF: Flow(enqueue(("long", None)), outcome)})
    await flows.start()
    await flows.enqueue_workflow(WF, INST)
    endless = Endless()

    # When four workers in turn start the task and stop with it still running
    for stop in range(1, 5):
        worker = register(make_manager(**NO_EXPIRY), tasks={"long": endless})
        await worker.start()
        await eventually(partial(started_times, endless, stop), what=f"start {stop}")
        await worker.stop(grace_period=0)
        if stop < 4:
            # Then the first three stops hand it back: the workflow still waits for it
            assert (await flows.get_workflow_instance(WF, INST)).is_running()

    # Then the fourth reports it LOST (after one attempt: hand-backs use none), with a WARNING
    done = await wait_finished(flows, WF, INST)
    assert done.get_result() == {"status": "lost", "attempts": 1}
    assert [task.metadata.attempt for task in endless.started] == [1, 1, 1, 1]
    assert any(
        record.levelno == logging.WARNING and "handed back at stop too often" in record.getMessage()
        for record in caplog.records
    )
