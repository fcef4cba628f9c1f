"""Lost tasks (BEHAVIOUR 3.7, Where-we-differ 6): expired leases report LOST; stop hands back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from cereal import Decision, TaskStatus, WorkflowInstance, errors
from cereal.drivers import Driver
from tests.conformance._driver_helpers import sweep
from tests.conformance._executors import INST, WF, AsyncBlocker, Flow, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished


class Outcomes:
    """on_task_complete that records each TaskResult and completes when every task is done."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def __call__(self, w: WorkflowInstance, ev: Any) -> Decision:
        self.results.append(ev.result)
        statuses = {**(w.get_payload() or {}), ev.result.task_name: str(ev.result.status)}
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(statuses)
        return w.continue_(statuses)


async def test_task_whose_heartbeat_stops_reaches_its_workflow_as_lost(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given a Manager running the workflow, sweeping with a 2 s expiry of its own
    outcomes = Outcomes()
    sweeping = register(
        make_manager(task_heartbeat_interval=0.1, task_expiry=2.0),
        {WF: Flow(enqueue(("silent", None)), outcomes)},
    )
    await sweeping.start()
    # and a holder on the same store that claims the task with a 0.2 s expiry, then goes
    # silent (never heartbeats, as a crashed process)
    holder = driver_factory()
    await holder.init()
    try:
        await sweeping.enqueue_workflow(WF, INST)
        claimed: list[Any] = []

        async def claim() -> bool:
            claimed.extend(await holder.dequeue_tasks("silent", 1, task_expiry=0.2))
            return bool(claimed)

        await eventually(claim, what="task claimed")

        # When the holder's expiry passes: the sweep judges the lease by its holder's expiry
        done = await wait_finished(sweeping, WF, INST, timeout=30)
    finally:
        await holder.close()

    # Then the workflow saw it LOST, with TaskLostError, counted as completed
    assert done.get_result() == {"silent": "lost"}
    [result] = outcomes.results
    assert result.status == TaskStatus.LOST
    assert isinstance(result.err(), errors.TaskLostError)


async def test_graceful_stop_hands_running_tasks_back_at_once(make_manager: MakeManager) -> None:
    # Given a workflow Manager whose lease expiry is far beyond the test's patience
    outcomes = Outcomes()
    flow = Flow(enqueue(("long", None), ("short", None)), outcomes)
    workflows = register(make_manager(task_heartbeat_interval=0.1, task_expiry=600.0), {WF: flow})
    # and a task Manager running one long task and one short task
    long_task = AsyncBlocker()
    short_task = AsyncBlocker(result="short done")
    tasks = register(
        make_manager(task_heartbeat_interval=0.1, task_expiry=600.0),
        tasks={"long": long_task, "short": short_task},
    )
    await tasks.start()
    await workflows.start()
    try:
        await workflows.enqueue_workflow(WF, INST)
        await eventually(
            lambda: len(long_task.started) == 1 and len(short_task.started) == 1,
            what="both tasks started",
        )

        # When the task Manager stops with a grace period; the short task ends within it
        stopping = asyncio.create_task(tasks.stop(grace_period=600.0))
        await eventually(
            lambda: tasks.grace_period_left() is not None, what="the stop waiting for tasks"
        )
        short_task.release.set()
        await eventually(lambda: len(outcomes.results) == 1, what="the short task reported")
        # and the grace period then ends (cut short, not waited out: no timing involved)
        assert not stopping.done()
        tasks.end_grace_period()
        await stopping
    finally:
        long_task.release.set()
        short_task.release.set()

    # Then the long task was cancelled and handed back, not reported: the workflow waits
    assert len(long_task.cancelled) == 1
    assert [result.task_name for result in outcomes.results] == ["short"]
    assert (await workflows.get_workflow_instance(WF, INST)).is_running()
    # and the next Manager runs it without waiting for any expiry
    finisher = AsyncBlocker(result="long done")
    finisher.release.set()
    later = register(
        make_manager(task_heartbeat_interval=0.1, task_expiry=600.0), tasks={"long": finisher}
    )
    await later.start()
    done = await wait_finished(workflows, WF, INST, timeout=20)
    assert done.get_result() == {"long": "success", "short": "success"}
    by_name = {result.task_name: result for result in outcomes.results}
    assert by_name["short"].get() == "short done"
    assert by_name["long"].get() == "long done"


async def test_a_short_expiry_managers_sweep_spares_a_long_expiry_managers_task(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given a Manager that runs the workflow and sweeps with a 0.2 s task expiry
    outcomes = Outcomes()
    short = register(
        make_manager(task_heartbeat_interval=0.05, task_expiry=0.2),
        {WF: Flow(enqueue(("slow", None)), outcomes)},
    )
    # and a Manager on the same store running the task with a 600 s expiry (heartbeat 30 s)
    blocker = AsyncBlocker(result="slow done")
    long = register(
        make_manager(task_heartbeat_interval=30.0, task_expiry=600.0), tasks={"slow": blocker}
    )
    sweeper = driver_factory()
    await sweeper.init()
    await long.start()
    await short.start()
    try:
        await short.enqueue_workflow(WF, INST)
        await eventually(lambda: len(blocker.started) == 1, what="task started")

        # When far more than the short expiry passes without a heartbeat (the holder's
        # next one is 30 s away) and the short-expiry side sweeps, by its sweeper and by hand
        since = time.monotonic()
        await eventually(lambda: time.monotonic() - since > 1.0, what="1 s passed")
        report = await sweep(sweeper, 0.2)

        # Then the task is still running under its holder's lease, not LOST
        assert report.expired_tasks == 0
        assert outcomes.results == []
        assert blocker.cancelled == []
    finally:
        blocker.release.set()
        await sweeper.close()

    done = await wait_finished(short, WF, INST)
    assert done.get_result() == {"slow": "success"}
    [result] = outcomes.results
    assert result.get() == "slow done"
