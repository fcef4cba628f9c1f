"""Manager lifecycle: context manager, several Managers over one store, driver open/close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cereal import Task, WorkflowInstanceStatus
from cereal.drivers import Driver
from tests.conformance._executors import INST, WF, Flow, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished


async def test_async_context_manager_starts_and_stops(make_manager: MakeManager) -> None:
    # Given a Manager with a workflow
    manager = register(make_manager(), {WF: Flow()})

    # When used as an async context manager
    async with manager as running:
        assert running is manager
        await manager.enqueue_workflow(WF, INST, "inside")
        done = await wait_finished(manager, WF, INST)

    # Then it ran work inside the block and released the driver on exit
    assert done.get_result() == "inside"
    assert not manager.driver.is_open


class Meeting:
    """A task executor whose tasks wait until one task of each Manager runs at once."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}

    def for_manager(self, label: str) -> Callable[[Task], Any]:
        async def run(task: Task) -> str:
            self.running[label] = self.running.get(label, 0) + 1
            await eventually(
                lambda: sum(1 for count in self.running.values() if count > 0) == 2, timeout=20
            )
            return label

        return run


async def test_two_managers_over_one_store_share_the_work(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given two Managers over one store, each able to run one "meet" task at a time
    meeting = Meeting()
    flow = Flow(enqueue(("meet", 1), ("meet", 2)))
    first = register(make_manager(), {WF: flow}, {"meet": meeting.for_manager("first")})
    second = register(
        make_manager(driver=driver_factory()),
        {WF: Flow(enqueue(("meet", 1), ("meet", 2)))},
        {"meet": meeting.for_manager("second")},
    )
    await first.start()
    await second.start()

    # When a workflow needs two tasks that only finish while both run at once
    await first.enqueue_workflow(WF, INST)
    done = await wait_finished(first, WF, INST, timeout=30)

    # Then each Manager ran one of them
    assert sorted(entry["result"] for entry in done.get_result()) == ["first", "second"]


async def test_stop_closes_the_driver(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given a started Manager on its own driver
    driver = driver_factory()
    manager = make_manager(driver=driver)
    await manager.start()
    assert driver.is_open

    # When it stops / Then the driver is closed
    await manager.stop()
    assert not driver.is_open


async def test_storage_call_before_start_opens_the_driver_and_stop_closes_it(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    driver = driver_factory()
    manager = make_manager(driver=driver)
    assert not driver.is_open

    await manager.list_workflow_instances()
    assert driver.is_open

    await manager.stop()
    assert not driver.is_open


async def test_a_driver_is_reusable_after_a_manager_stopped(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given a driver used by a Manager that ran a workflow and stopped
    driver = driver_factory()
    first = register(make_manager(driver=driver), {WF: Flow()})
    await first.start()
    await first.enqueue_workflow(WF, INST, "first run")
    await wait_finished(first, WF, INST)
    await first.stop()
    assert not driver.is_open

    # When a new Manager uses the same driver object (init -> close -> init)
    second = register(make_manager(driver=driver), {WF: Flow()})
    await second.start()

    # Then the store still holds the earlier run, and new work runs
    assert (await second.get_workflow_instance(WF, INST)).get_result() == "first run"
    await second.enqueue_workflow(WF, INST, "second run")
    await eventually(lambda: _result_is(second, "second run"), what="second run finished")
    await second.stop()
    assert not driver.is_open


async def _result_is(manager: Any, value: Any) -> bool:
    found = await manager.get_workflow_instance(WF, INST)
    return not found.is_running() and found.get_result() == value


async def test_driver_survives_repeated_init_and_close(
    driver_factory: Callable[[], Driver],
) -> None:
    driver = driver_factory()
    for _ in range(3):
        await driver.init()
        assert driver.is_open
        await driver.close()
        assert not driver.is_open
    await driver.close()  # closing a closed driver is a no-op
    assert not driver.is_open


async def test_managers_stop_concurrently_without_error(make_manager: MakeManager) -> None:
    managers = [register(make_manager(), {WF: Flow()}) for _ in range(3)]
    for manager in managers:
        await manager.start()

    await asyncio.gather(*(manager.stop() for manager in managers))

    assert all(not manager.driver.is_open for manager in managers)


async def test_events_of_an_unregistered_workflow_wait_for_a_manager_with_its_executor(
    make_manager: MakeManager,
) -> None:
    # Given a Manager without an executor for "wayward", and an instance of it queued
    first = register(make_manager(), {"other": Flow()})
    await first.start()
    await first.enqueue_workflow("wayward", INST, "w")

    # When the Manager works on other instances
    await first.enqueue_workflow("other", INST, "o")
    assert (await wait_finished(first, "other", INST)).get_result() == "o"

    # Then the wayward instance is still queued, and a Manager with its executor runs it
    assert (await first.get_workflow_instance("wayward", INST)).is_running()
    second = register(make_manager(), {"wayward": Flow()})
    await second.start()
    assert (await wait_finished(second, "wayward", INST)).get_result() == "w"


async def test_storage_calls_work_before_start(make_manager: MakeManager) -> None:
    # Given a Manager that was never started
    manager = register(make_manager(), {WF: Flow()})

    # When storage calls are made / Then they work
    await manager.enqueue_workflow(WF, INST, {"p": 1})
    found = await manager.get_workflow_instance(WF, INST)
    assert found.is_running()
    [listed] = await manager.list_workflow_instances()
    assert listed.status == WorkflowInstanceStatus.STARTING
    assert found.get_parameters() == {"p": 1}
    assert listed.instance_name == INST
    await manager.cancel_workflow(WF, INST)
    await manager.create_workflow_schedule(WF, "sched", None, "FREQ=DAILY", enabled=False)
    assert (await manager.get_workflow_schedule(WF, "sched")).enabled is False
    assert len(await manager.list_workflow_schedules()) == 1
    await manager.kill_workflow(WF, INST)
    assert str((await manager.get_workflow_instance(WF, INST)).err()) == "killed"


async def test_storage_calls_after_stop_reopen_the_driver_and_stop_releases_it_again(
    make_manager: MakeManager,
) -> None:
    # Given a stopped Manager
    manager = make_manager()
    await manager.start()
    await manager.stop()
    assert not manager.driver.is_open

    # When it is used for storage again
    await manager.enqueue_workflow("after-stop", "one")
    assert manager.driver.is_open

    # Then another stop() releases the driver again
    await manager.stop()
    assert not manager.driver.is_open
