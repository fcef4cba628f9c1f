"""Work claimed around ``Manager.stop()``: nothing is stranded until the task expiry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from cereal import Manager, Task
from cereal.drivers import Driver
from cereal.models import TaskData
from cereal.retry import DEFAULT_MAX_HAND_BACKS
from tests.conformance._executors import INST, WF, Flow, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished

# only the fix can make the workflow see these tasks end: their leases never expire in a test
NO_EXPIRY: dict[str, Any] = {"task_expiry": 3600.0, "stop_grace_period": 60.0}


class ClaimGate:
    """Holds a driver's claims of one task name at a gate after they were made."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        self.claimed = asyncio.Event()
        self.release = asyncio.Event()
        self.claims: list[TaskData] = []


def gate_claims(driver: Driver, task_name: str) -> ClaimGate:
    """Make ``driver`` a test-only subclass of its class whose claims of ``task_name`` wait."""
    gate = ClaimGate(task_name)
    base: type[Any] = type(driver)

    async def dequeue_tasks(self: Any, name: str, max_tasks: int, **options: Any) -> Any:
        claimed = await base.dequeue_tasks(self, name, max_tasks, **options)
        if name == gate.task_name and claimed:
            gate.claims.extend(data for data, _ in claimed)
            gate.claimed.set()
            await gate.release.wait()
        return claimed

    driver.__class__ = type(f"ClaimGated{base.__name__}", (base,), {"dequeue_tasks": dequeue_tasks})
    return gate


def _logged(caplog: pytest.LogCaptureFixture, level: int, *parts: str) -> bool:
    return any(
        record.levelno == level and all(part in record.getMessage() for part in parts)
        for record in caplog.records
    )


async def _one_slow_task(
    make_manager: MakeManager,
) -> tuple[Manager, list[Task], Callable[[Task], Any]]:
    """A started workflow Manager whose one instance enqueued one "slow" task; its runs."""
    flows = register(make_manager(**NO_EXPIRY), {WF: Flow(enqueue(("slow", 1)))})
    ran: list[Task] = []

    async def slow(task: Task) -> str:
        ran.append(task)
        return "ran"

    await flows.start()
    await flows.enqueue_workflow(WF, INST, None)
    return flows, ran, slow


async def _stop_during_a_claim(
    make_manager: MakeManager,
    driver_factory: Callable[[], Driver],
    caplog: pytest.LogCaptureFixture,
    slow: Callable[[Task], Any],
) -> TaskData:
    """Start a worker of ``slow`` tasks, stop it while its claim is held open; the claimed task."""
    worker_driver = driver_factory()
    gate = gate_claims(worker_driver, "slow")
    worker = register(make_manager(driver=worker_driver, **NO_EXPIRY), {}, {"slow": slow})
    await worker.start()
    await gate.claimed.wait()
    caplog.clear()
    stopping = asyncio.create_task(worker.stop())
    await eventually(lambda: _logged(caplog, logging.INFO, "manager stopping"), what="stop() began")
    gate.release.set()
    await stopping
    [claimed] = gate.claims
    return claimed


async def test_a_task_claimed_while_stop_begins_is_handed_back_at_once(
    make_manager: MakeManager,
    driver_factory: Callable[[], Driver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given a workflow Manager, and a worker Manager whose claim of a "slow" task is held open
    flows, ran, slow = await _one_slow_task(make_manager)

    # When the worker stops while that claim is in flight, and the claim then returns
    claimed = await _stop_during_a_claim(make_manager, driver_factory, caplog, slow)

    # Then the task never ran there, an INFO line named it (routine for a busy worker's
    # stop), and it was handed back at once: the next worker runs it (no expiry passes here)
    assert ran == []
    assert _logged(caplog, logging.INFO, f"slow (id {claimed.metadata.task_id})")
    assert not _logged(caplog, logging.WARNING, f"slow (id {claimed.metadata.task_id})")
    later = register(make_manager(**NO_EXPIRY), {}, {"slow": slow})
    await later.start()
    done = await wait_finished(flows, WF, INST)
    assert [entry["status"] for entry in done.get_result()] == ["success"]
    assert [task.metadata.task_id for task in ran] == [claimed.metadata.task_id]


async def test_a_task_caught_in_a_claim_by_more_stops_than_the_hand_back_limit_still_runs(
    make_manager: MakeManager,
    driver_factory: Callable[[], Driver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given one task, and more worker stops than the hand-back limit, each during its claim
    flows, ran, slow = await _one_slow_task(make_manager)
    caught = [
        await _stop_during_a_claim(make_manager, driver_factory, caplog, slow)
        for _ in range(DEFAULT_MAX_HAND_BACKS + 1)
    ]

    # Then it never ran, was never reported LOST (it never started), and runs once, first try
    assert ran == []
    assert len({data.metadata.task_id for data in caught}) == 1
    later = register(make_manager(**NO_EXPIRY), {}, {"slow": slow})
    await later.start()
    done = await wait_finished(flows, WF, INST)
    assert [entry["status"] for entry in done.get_result()] == ["success"]
    [task] = ran
    assert task.metadata.attempt == 1


async def test_tasks_handed_back_after_the_grace_period_are_logged_with_names_and_ids(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given a Manager running a task that outlives the grace period
    started = asyncio.Event()
    seen: list[Task] = []

    async def endless(task: Task) -> None:
        seen.append(task)
        started.set()
        await asyncio.Event().wait()

    manager = register(
        make_manager(**NO_EXPIRY), {WF: Flow(enqueue(("endless", 1)))}, {"endless": endless}
    )
    await manager.start()
    await manager.enqueue_workflow(WF, INST, None)
    await started.wait()

    # When it stops with no grace period left for the task
    await manager.stop(grace_period=0)

    # Then a WARNING names the task and its id, and the task is queued again at once
    [task] = seen
    assert _logged(caplog, logging.WARNING, f"endless (id {task.metadata.task_id})")

    def finishes(again: Task) -> str:
        seen.append(again)
        return "done"

    later = register(make_manager(**NO_EXPIRY), {WF: Flow()}, {"endless": finishes})
    await later.start()
    done = await wait_finished(later, WF, INST)
    assert [entry["status"] for entry in done.get_result()] == ["success"]
    assert [again.metadata.task_id for again in seen] == [task.metadata.task_id] * 2
