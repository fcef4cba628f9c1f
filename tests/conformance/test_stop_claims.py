"""Work claimed around ``Manager.stop()``: nothing is stranded until the task expiry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from cereal import Task
from cereal.drivers import Driver
from cereal.models import TaskData
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


async def test_a_task_claimed_while_stop_begins_is_handed_back_at_once(
    make_manager: MakeManager,
    driver_factory: Callable[[], Driver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given a workflow Manager, and a worker Manager whose claim of a "slow" task is held open
    flows = register(make_manager(**NO_EXPIRY), {WF: Flow(enqueue(("slow", 1)))})
    worker_driver = driver_factory()
    gate = gate_claims(worker_driver, "slow")
    ran: list[Task] = []

    async def slow(task: Task) -> str:
        ran.append(task)
        return "ran"

    worker = register(make_manager(driver=worker_driver, **NO_EXPIRY), {}, {"slow": slow})
    await flows.start()
    await worker.start()
    await flows.enqueue_workflow(WF, INST, None)
    await gate.claimed.wait()

    # When the worker stops while that claim is in flight, and the claim then returns
    stopping = asyncio.create_task(worker.stop())
    await eventually(lambda: _logged(caplog, logging.INFO, "manager stopping"), what="stop() began")
    gate.release.set()
    await stopping

    # Then the task never ran there, a WARNING named it, and it was handed back at once:
    # the next worker runs it (no expiry passes in this test)
    [claimed] = gate.claims
    assert ran == []
    assert _logged(caplog, logging.WARNING, f"slow (id {claimed.metadata.task_id})")
    later = register(make_manager(**NO_EXPIRY), {}, {"slow": slow})
    await later.start()
    done = await wait_finished(flows, WF, INST)
    assert [entry["status"] for entry in done.get_result()] == ["success"]
    assert [task.metadata.task_id for task in ran] == [claimed.metadata.task_id]


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
