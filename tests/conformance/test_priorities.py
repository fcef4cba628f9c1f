"""Priorities: higher goes first, and waiting ages a task, so a low one is never starved.

A claim takes due tasks lowest *ready rank* first: the due time less one
minute per priority level (:mod:`cereal.priority`). Tasks due together go
highest priority first; a task of priority ``q`` is passed over only by tasks
of priority ``p > q`` that became due less than ``p - q`` minutes after it, so
under any load of higher tasks its wait is bounded. The driver-level cases
set due times in the past to show the bound without waiting for it.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest

from cereal import Decision, Task, WorkflowInstance
from cereal.checks.times import utcnow
from cereal.drivers import Driver, TaskCompleter
from cereal.models import NewTask, TaskData, TaskStatus
from tests.conformance._driver_helpers import INST, WF, hour_ahead, started, take
from tests.conformance._executors import Flow, a_bad_enqueue_fails_the_run, register
from tests.plugins.manager import MakeManager, eventually


def task(
    n: int,
    priority: int,
    start_after: datetime | None = None,
    *,
    key: str | None = None,
    task_name: str = "t",
) -> NewTask:
    """A task with parameters ``n`` and the given priority (and due time, key)."""
    return NewTask(
        task_name,
        str(n).encode(),
        start_after,
        priority=priority,
        concurrency_key=key,
        concurrency_limit=None if key is None else 100,
    )


def params(claimed: list[tuple[TaskData, TaskCompleter]]) -> list[bytes | None]:
    return [data.parameters for data, _ in claimed]


async def claim(driver: Driver, max_tasks: int = 10) -> list[tuple[TaskData, TaskCompleter]]:
    return await driver.dequeue_tasks("t", max_tasks, task_expiry=3600)


async def one_at_a_time(driver: Driver) -> list[bytes | None]:
    """Claim the queue one task per claim, in the order the claims take them."""
    order: list[bytes | None] = []
    while claimed := await claim(driver, 1):
        order.extend(params(claimed))
    return order


# ---- the claim, at the driver -------------------------------------------------------------


async def test_tasks_due_together_go_highest_priority_first(driver: Driver) -> None:
    # Given five tasks due at one instant with priorities 0, 5, 1, 5 and 10
    due = utcnow()
    await started(driver, tasks=[task(n, p, due) for n, p in enumerate((0, 5, 1, 5, 10))])

    # Then one claim takes them highest first (ties in enqueue order)
    assert params(await claim(driver)) == [b"4", b"1", b"3", b"2", b"0"]


async def test_claims_of_one_task_follow_the_same_order(driver: Driver) -> None:
    due = utcnow()
    await started(driver, tasks=[task(n, p, due) for n, p in enumerate((0, 3, 100, 3))])

    assert await one_at_a_time(driver) == [b"2", b"1", b"3", b"0"]


async def test_a_low_task_is_passed_over_only_by_higher_ones_due_soon_after_it(
    driver: Driver,
) -> None:
    # Given a task of priority 0 that became due an hour ago, and a steady stream of
    # priority-2 tasks, one due every 30 s from that moment on (all due by now)
    low_due = utcnow() - timedelta(hours=1)
    stream = [task(n, 2, low_due + timedelta(seconds=30 * n)) for n in range(1, 9)]
    await started(driver, tasks=[task(0, 0, low_due), *stream])

    # Then the low task is passed over only by the priority-2 tasks that became due
    # less than 2 minutes (2 levels x 1 minute) after it: those of 30, 60 and 90 s;
    # the one due 120 s after it ties and the earlier enqueue goes first
    order = await one_at_a_time(driver)
    assert order[:5] == [b"1", b"2", b"3", b"0", b"4"], order
    assert sorted(order) == [str(n).encode() for n in range(9)]


async def test_priority_never_starts_a_task_before_it_is_due(driver: Driver) -> None:
    # Given a task of the highest priority due in an hour, and one of priority 0 due now
    await started(driver, tasks=[task(0, 100, hour_ahead()), task(1, 0)])

    # Then only the due one is claimed
    assert params(await claim(driver)) == [b"1"]
    assert await claim(driver) == []


async def test_keyed_and_unkeyed_tasks_share_one_order(driver: Driver) -> None:
    # Given unkeyed tasks of priority 0 due a minute ago, and keyed ones of priority 5
    # and 0 due now
    now = utcnow()
    earlier = now - timedelta(minutes=1)
    await started(
        driver,
        tasks=[
            task(0, 0, earlier),
            task(1, 0, earlier),
            task(2, 5, now, key="k"),
            task(3, 0, now, key="k"),
        ],
    )

    # Then the keyed priority-5 task goes first, and the keyed priority-0 one last
    assert await one_at_a_time(driver) == [b"2", b"0", b"1", b"3"]


async def test_a_retried_task_keeps_its_priority(driver: Driver) -> None:
    # Given a priority-3 task and a priority-0 task due together; the first is retried
    due = utcnow()
    await started(driver, tasks=[task(0, 3, due), task(1, 0, due)])
    [(data, first)] = await claim(driver, 1)
    assert data.parameters == b"0"
    await first.retry("boom", 0)

    # Then, due again now, it still goes ahead of the priority-0 task due before it
    assert params(await claim(driver, 1)) == [b"0"]
    listed = await driver.list_tasks("t")
    assert [(t.state, t.priority) for t in listed] == [("running", 3), ("queued", 0)]


async def test_listed_and_dead_tasks_keep_their_priority(driver: Driver) -> None:
    # Given a task of priority 7 that fails for good, and one of priority 0
    await started(driver, tasks=[task(0, 7), task(1, 0)])
    [(_, failing)] = await claim(driver, 1)
    await failing.fail("boom")
    _, workflow = await take(driver)
    async with workflow:
        await workflow.continue_(None, [])
    [dead] = await driver.list_dead_tasks()

    # When it is requeued, it is queued with its priority, and goes first again
    await driver.requeue_dead_tasks([dead.task_id])
    assert sorted(t.priority for t in await driver.list_tasks("t")) == [0, 7]
    [(data, completer)] = await claim(driver, 1)
    assert data.parameters == b"0"
    await completer.succeed(None)
    event, workflow = await take(driver)
    async with workflow:
        assert event.task_result is not None
        assert event.task_result.status is TaskStatus.SUCCESS
        await workflow.continue_(None, [])


# ---- end to end ----------------------------------------------------------------------------


class OrderRecorder:
    """A plain task executor recording the order its tasks ran in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ran: list[str] = []

    def run(self, task: Task) -> Any:
        with self._lock:
            self.ran.append(task.get_parameters())
        return None


def enqueue_mixed(w: WorkflowInstance, ev: object) -> Decision:
    """Four bulk tasks (priority 0) and four urgent ones (priority 9), interleaved."""
    for n in range(4):
        w.enqueue_task("t", f"bulk-{n}")
        w.enqueue_task("t", f"urgent-{n}", priority=9)
    return w.continue_([])


async def test_one_worker_runs_urgent_tasks_before_bulk_ones(make_manager: MakeManager) -> None:
    # Given a Manager with one worker for "t"
    recorder = OrderRecorder()
    manager = register(make_manager(), {WF: Flow(enqueue_mixed)}, {"t": recorder.run}, workers=1)
    await manager.start()

    # When a run enqueues bulk and urgent tasks interleaved
    await manager.enqueue_workflow(WF, INST)

    # Then every urgent task runs before any bulk one, each kind in enqueue order
    await eventually(lambda: len(recorder.ran) == 8, what="all eight tasks ran")
    assert recorder.ran == [f"urgent-{n}" for n in range(4)] + [f"bulk-{n}" for n in range(4)]


# ---- bad input -----------------------------------------------------------------------------

BAD = [
    pytest.param(-1, ValueError, id="-1"),
    pytest.param(101, ValueError, id="101"),
    pytest.param(True, TypeError, id="True"),
    pytest.param("1", TypeError, id="str"),
    pytest.param(1.5, TypeError, id="float"),
]


@pytest.mark.parametrize(("priority", "error"), BAD)
async def test_a_bad_priority_fails_the_run_and_stores_no_task(
    make_manager: MakeManager, priority: Any, error: type[Exception]
) -> None:
    exc, text = await a_bad_enqueue_fails_the_run(
        make_manager, lambda w: w.enqueue_task("t", 2, priority=priority)
    )
    assert isinstance(exc, error)
    assert "priority" in text, text
