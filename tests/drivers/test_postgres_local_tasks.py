"""Tasks a decision adds are NOTIFYed to other processes only when no local runner takes them.

A notification costs a commit in every listening session, so a decision whose
ready tasks an idle runner of the deciding process promises to take tells
this process only. Each case watches the wakeup channel with a connection of
its own; a barrier note sent after the action (notifications arrive in commit
order) shows what was, and what was not, announced.
"""

from __future__ import annotations

import asyncio
import threading

from cereal import CancelEvent, Decision, Manager, StartEvent, TaskCompleteEvent, WorkflowInstance
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._listen import decode_note
from cereal.models import NewTask
from tests._waiting import wait_until
from tests.drivers._listening import Channel
from tests.plugins.manager import FAST_OPTIONS, wait_finished

OPTIONS = {**FAST_OPTIONS, "task_poll_interval": 60.0, "workflow_poll_interval": 60.0}


class Tasks:
    """on_start enqueues ``count`` tasks "t" (the parameters); completes after them all."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        for _ in range(int(w.get_parameters())):
            w.enqueue_task("t")
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete()
        return w.continue_()

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


def task_wakes(payloads: list[str]) -> list[tuple[str, str | None]]:
    return [wake for payload in payloads for wake in decode_note(payload)[1] if wake[0] == "task"]


def manager_on(dsn: str, gate: threading.Event | None = None, *, workers: int) -> Manager:
    def task(_: object) -> None:
        if gate is not None:
            gate.wait(30)

    manager = Manager(PostgresDriver(dsn), **OPTIONS)
    manager.register_workflow_executor("wf", Tasks())
    manager.register_task_executor("t", task, workers=workers)
    return manager


async def test_tasks_an_idle_local_runner_takes_are_not_notified(
    postgres_dsn: str, listening: Channel
) -> None:
    async with manager_on(postgres_dsn, workers=4) as manager:
        await listening.drain()
        await manager.enqueue_workflow("wf", "i", 2)
        await wait_finished(manager, "wf", "i")
        payloads = await listening.drain()
    assert [decode_note(p)[1] for p in payloads] == [[("workflow", "wf")]]  # the enqueue only


async def test_tasks_are_notified_when_they_would_leave_the_local_runner_no_spare_slot(
    postgres_dsn: str, listening: Channel
) -> None:
    gate = threading.Event()
    async with manager_on(postgres_dsn, gate, workers=3) as manager:
        try:
            # Given a runner with one of its three slots busy
            await manager.enqueue_workflow("wf", "busy", 1)
            runner = manager._task_runners["t"]
            await wait_until(lambda: runner.running == 1, what="the first task to run")
            await listening.drain()
            # When a decision adds two tasks (taking them would leave no slot spare)
            await manager.enqueue_workflow("wf", "two", 2)
            await wait_until(lambda: runner.running == 3, what="both tasks to run")
            # Then other processes were told
            assert task_wakes(await listening.drain()) == [("task", "t")]
        finally:
            gate.set()
        await wait_finished(manager, "wf", "two")


async def test_promised_tasks_are_handed_on_when_other_work_fills_the_runner(
    postgres_dsn: str, listening: Channel
) -> None:
    gate = threading.Event()
    async with (
        manager_on(postgres_dsn, gate, workers=3) as manager,
        PostgresDriver(postgres_dsn, notify=False) as other,
    ):
        try:
            runner = manager._task_runners["t"]
            await listening.drain()
            # Given an idle runner that promised one slot to a commit in progress
            promise = runner.promise(1)
            assert promise is not None
            # ... while another process, unheard, queued three tasks of the same name
            await other.enqueue_workflow("elsewhere", "i", None)
            _, completer = await other.dequeue_workflow(["elsewhere"])
            async with completer:
                await completer.continue_(None, [NewTask("t") for _ in range(3)])
            # When the commit ends, the runner claims: three tasks fill its three slots
            promise.settle()
            await wait_until(lambda: runner.running == 3, what="three tasks to run")
            # Then what it was promised may still be queued: it is announced to the others
            await wait_until(
                lambda: not manager.driver._background,  # type: ignore[attr-defined]
                what="the announcement to be sent",
            )
            assert task_wakes(await listening.drain()) == [("task", "t")]
        finally:
            gate.set()
        await asyncio.sleep(0)


async def test_a_stopping_runner_promises_nothing_and_hands_owed_tasks_on(
    postgres_dsn: str, listening: Channel
) -> None:
    async with manager_on(postgres_dsn, workers=4) as manager:
        runner = manager._task_runners["t"]
        await listening.drain()
        promise = runner.promise(1)
        assert promise is not None
        runner.stop_claiming()
        assert runner.promise(1) is None
        # a commit that ends after the runner stopped claiming: its tasks go to the others
        promise.settle()
        await wait_until(
            lambda: not manager.driver._background,  # type: ignore[attr-defined]
            what="the announcement to be sent",
        )
        assert task_wakes(await listening.drain()) == [("task", "t")]
