"""What only the memory driver has; the shared contract is in tests/conformance."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest

from cereal import errors
from cereal.checks.times import utcnow
from cereal.drivers import open_driver
from cereal.drivers.memory import MemoryDriver
from cereal.models import HistoryRetention, ListWorkflowFilter, NewTask, ScheduleUpdate
from tests.conformance._driver_helpers import sweep


def test_open_driver_builds_a_memory_driver() -> None:
    driver = open_driver("memory://")
    assert isinstance(driver, MemoryDriver)
    assert driver.capabilities == frozenset()


def test_retention_is_a_constructor_option() -> None:
    retention = HistoryRetention(max_rows=3, margin_rows=1)
    assert MemoryDriver(retention=retention).retention is retention
    assert MemoryDriver().retention == HistoryRetention()


async def test_a_second_decision_is_misuse() -> None:
    driver = MemoryDriver()
    await driver.enqueue_workflow("wf", "i", None)
    _, completer = await driver.dequeue_workflow(["wf"])
    await completer.continue_(None, [])

    with pytest.raises(RuntimeError, match="already"):
        await completer.done(None)
    await completer.close()
    with pytest.raises(RuntimeError, match="already"):
        await completer.fail("x")


async def test_an_update_made_while_the_scheduler_holds_the_lock_lands_after_it() -> None:
    # PostgreSQL would block the update on the row lock until the scheduler
    # commits; memory applies it at once and again on release, to the same end
    driver = MemoryDriver()
    await driver.create_workflow_schedule(
        "wf", "i", None, True, "FREQ=DAILY", utcnow() - timedelta(minutes=1)
    )
    _, completer = await driver.get_due_scheduled_workflow()

    await driver.update_workflow_schedule("wf", "i", ScheduleUpdate(enabled=False))
    await completer.enqueue_and_update(next_due_at=utcnow() + timedelta(hours=1), enabled=True)

    assert not (await driver.get_workflow_schedule("wf", "i")).enabled
    assert (await driver.get_workflow_instance("wf", "i")).is_running()


async def test_a_deleted_locked_schedule_still_enqueues_once() -> None:
    driver = MemoryDriver()
    await driver.create_workflow_schedule(
        "wf", "i", b"1", True, "FREQ=DAILY", utcnow() - timedelta(minutes=1)
    )
    _, completer = await driver.get_due_scheduled_workflow()

    await driver.delete_workflow_schedule("wf", "i")
    assert await completer.enqueue_and_update(next_due_at=utcnow(), enabled=True)

    assert await driver.list_workflow_schedules() == []
    assert (await driver.get_workflow_instance("wf", "i")).parameters == b"1"


async def test_threads_sharing_one_driver_never_double_claim() -> None:
    # several Managers in one process may run their loops on different threads
    driver = MemoryDriver()
    await driver.enqueue_workflow("wf", "i", None)
    _, completer = await driver.dequeue_workflow(["wf"])
    await completer.continue_(None, [NewTask("t") for _ in range(500)])
    claimed: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        async def drain() -> None:
            while True:
                batch = await driver.dequeue_tasks("t", 7)
                if not batch:
                    return
                with lock:
                    claimed.extend(data.metadata.task_id for data, _ in batch)

        asyncio.run(drain())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(claimed) == len(set(claimed)) == 500


async def test_history_is_not_trimmed_outside_sweep() -> None:
    driver = MemoryDriver(retention=HistoryRetention(max_rows=1, margin_rows=0))
    for name in ("a", "b", "c"):
        await driver.enqueue_workflow("wf", name, None)
        _, completer = await driver.dequeue_workflow(["wf"])
        await completer.done(None)
    assert len(await driver.list_workflow_instances(ListWorkflowFilter())) == 3

    report = await sweep(driver, 60)

    assert report.trimmed_results == 2
    assert [
        i.instance_name for i in await driver.list_workflow_instances(ListWorkflowFilter())
    ] == ["c"]
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.get_workflow_instance("wf", "a")


class ThreadGatedMemoryDriver(MemoryDriver):
    """A MemoryDriver whose open waits for a threading.Event (it runs on another loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.opened = False

    async def _open(self) -> None:
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 30)
        self.opened = True


async def test_an_init_on_another_event_loop_waits_for_the_open_in_progress() -> None:
    # Given a driver being opened by a thread with its own event loop
    driver = ThreadGatedMemoryDriver()
    opener = threading.Thread(target=lambda: asyncio.run(driver.init()))
    opener.start()
    await asyncio.to_thread(driver.entered.wait, 30)

    # When this loop's init runs meanwhile, and the other open then finishes
    seen: list[bool] = []
    started = asyncio.Event()

    async def init_here() -> None:
        started.set()
        await driver.init()
        seen.append(driver.opened)

    here = asyncio.create_task(init_here())
    await started.wait()
    driver.release.set()
    await here
    await asyncio.to_thread(opener.join, 30)

    # Then it returned only with the store open, held by both
    assert seen == [True]
    await driver.close()
    assert driver.is_open
    await driver.close()
    assert not driver.is_open
