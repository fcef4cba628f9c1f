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
from typing import Any

import psycopg
import pytest

from cereal import (
    CancelEvent,
    Decision,
    Manager,
    StartEvent,
    TaskCompleteEvent,
    WorkflowInstance,
    errors,
)
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


async def test_tasks_a_local_runner_promised_are_claimed_in_the_deciding_transaction(
    postgres_dsn: str, listening: Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = manager_on(postgres_dsn, workers=4)
    driver = manager.driver
    dequeued: list[int] = []
    dequeue = driver.dequeue_tasks

    async def counted(*args: Any, **kwargs: Any) -> Any:
        claimed = await dequeue(*args, **kwargs)
        dequeued.append(len(claimed))
        return claimed

    monkeypatch.setattr(driver, "dequeue_tasks", counted)
    async with manager:
        runner = manager._task_runners["t"]
        # Given an idle runner whose first claim (at start) has returned
        await wait_until(lambda: bool(dequeued) and not runner._claiming, what="the first claim")
        dequeued.clear()
        await listening.drain()
        # When a decision adds two tasks the runner promises to take
        await manager.enqueue_workflow("wf", "i", 2)
        await wait_finished(manager, "wf", "i")
    # Then the decision's own transaction claimed them: the runner claimed none itself
    assert sum(dequeued) == 0
    assert [decode_note(p)[1] for p in await listening.drain()] == [[("workflow", "wf")]]


def spy_on_dequeues(driver: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many tasks each of ``driver``'s own claims took."""
    dequeued: list[int] = []
    dequeue = driver.dequeue_tasks

    async def counted(*args: Any, **kwargs: Any) -> Any:
        claimed = await dequeue(*args, **kwargs)
        dequeued.append(len(claimed))
        return claimed

    monkeypatch.setattr(driver, "dequeue_tasks", counted)
    return dequeued


async def queue_tasks(driver: PostgresDriver, count: int) -> None:
    """Queue ``count`` ready tasks "t" from a decision of ``driver`` (another process)."""
    await driver.enqueue_workflow("elsewhere", f"i{count}", None)
    _, completer = await driver.dequeue_workflow(["elsewhere"])
    async with completer:
        await completer.continue_(None, [NewTask("t") for _ in range(count)])


async def task_states(dsn: str) -> list[tuple[str, int]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT state, attempt FROM cereal_tasks ORDER BY id")
        return [(state, attempt) for state, attempt in await cur.fetchall()]


async def test_slots_reserved_for_a_claim_in_the_commit_are_left_by_the_runners_own_claims(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    manager = manager_on(postgres_dsn, gate, workers=4)
    dequeued = spy_on_dequeues(manager.driver, monkeypatch)
    async with manager, PostgresDriver(postgres_dsn, notify=False) as other:
        try:
            runner = manager._task_runners["t"]
            await wait_until(lambda: bool(dequeued) and not runner._claiming, what="idle")
            dequeued.clear()
            # Given a promise of two slots whose store may claim in its commit
            promise = runner.promise(2)
            assert promise is not None and promise.claim_request() is not None
            # When five tasks are queued elsewhere and the runner claims
            await queue_tasks(other, 5)
            runner.wake()
            await wait_until(lambda: dequeued == [2], what="the runner's own claim")
            # Then it took only the slots the promise left free
            assert runner.running == 2
            # ... and once the commit ends with nothing delivered, it claims the rest
            promise.settle()
            await wait_until(lambda: runner.running == 4, what="the promised slots filled")
            assert dequeued[:2] == [2, 2]
        finally:
            gate.set()


async def test_tasks_delivered_to_a_stopping_runner_go_back_to_the_queue(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = manager_on(postgres_dsn, workers=4)
    dequeued = spy_on_dequeues(manager.driver, monkeypatch)
    async with manager, PostgresDriver(postgres_dsn, notify=False) as other:
        runner = manager._task_runners["t"]
        await wait_until(lambda: bool(dequeued) and not runner._claiming, what="idle")
        promise = runner.promise(1)
        assert promise is not None and promise.claim_request() is not None
        await queue_tasks(other, 1)
        claimed = await other.dequeue_tasks("t", 1)
        runner.stop_claiming()
        # When the commit's claim is delivered after the stop began
        promise.deliver(claimed)
        promise.settle()
        await runner.abandon_running()
        assert runner.running == 0
    # Then the task was not run: it is queued again for any worker
    assert await task_states(postgres_dsn) == [("queued", 0)]


async def test_a_claim_whose_commit_answer_is_lost_is_given_back_and_its_tasks_run_once(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cereal.drivers.postgres import _group_commit

    applied = _group_commit._apply_and_claim
    lost: list[int] = []

    async def committed_then_lost(conn: Any, params: Any, claims: Any) -> Any:
        rows, claimed = await applied(conn, params, claims)
        if not lost:  # the first group commits, then its answer is lost
            lost.append(sum(len(rows) for rows in claimed))
            raise errors.DriverError("the connection died after the commit")
        return rows, claimed

    monkeypatch.setattr(_group_commit, "_apply_and_claim", committed_then_lost)
    ran: list[str] = []
    manager = Manager(PostgresDriver(postgres_dsn), **OPTIONS)
    manager.register_workflow_executor("wf", Tasks())
    manager.register_task_executor("t", lambda task: ran.append(task.metadata.task_id), workers=4)
    dequeued = spy_on_dequeues(manager.driver, monkeypatch)
    async with manager:
        runner = manager._task_runners["t"]
        await wait_until(lambda: bool(dequeued) and not runner._claiming, what="idle")
        await manager.enqueue_workflow("wf", "i", 2)
        await wait_finished(manager, "wf", "i")
    # the lost group had claimed both tasks; they were given back, then each ran once
    assert lost == [2]
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 2


async def test_a_claim_in_the_commit_that_takes_older_tasks_announces_the_new_ones(
    postgres_dsn: str, listening: Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    manager = Manager(PostgresDriver(postgres_dsn), **OPTIONS)
    manager.register_workflow_executor("wf", Tasks())
    manager.register_task_executor("t", lambda task: ran.append(task.metadata.task_id), workers=4)
    dequeued = spy_on_dequeues(manager.driver, monkeypatch)
    async with manager, PostgresDriver(postgres_dsn, notify=False) as other:
        runner = manager._task_runners["t"]
        await wait_until(lambda: bool(dequeued) and not runner._claiming, what="idle")
        # Given an older ready task of the same name, queued unheard by this process
        await queue_tasks(other, 1)
        await listening.drain()
        # When a decision adds one task the idle runner promised to take
        await manager.enqueue_workflow("wf", "i", 1)
        # Then the commit's claim took the older task first (rank order), and the new
        # one, still queued, was announced to other processes
        await wait_until(lambda: len(ran) >= 1, what="the older task to run")
        await wait_until(
            lambda: not manager.driver._background,  # type: ignore[attr-defined]
            what="the announcement to be sent",
        )
        assert ("task", "t") in task_wakes(await listening.drain())
        await wait_finished(manager, "wf", "i")
    assert len(ran) == 2
