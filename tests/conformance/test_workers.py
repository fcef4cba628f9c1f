"""Live workers: every started Manager is listed until it stops or goes silent.

Runs once per driver. The Manager-level tests start real Managers; the
driver-level ones write rows directly, to make a silent (dead) worker
without killing anything.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from cereal import Manager, WorkerInfo
from cereal.drivers import Driver
from cereal.engine.worker_presence import cereal_version
from cereal.models import NewWorker
from tests.conformance._executors import WF, Flow, register
from tests.plugins.manager import MakeManager, eventually


def _worker(worker_id: str, *, expiry: float = 60.0) -> NewWorker:
    return NewWorker(
        id=worker_id,
        host="host-a",
        pid=4242,
        workflow_names=("wf-a", "wf b ✓"),
        task_names=("task-a",),
        version="9.9",
        expiry=expiry,
    )


async def _ids(source: Manager | Driver) -> list[str]:
    return [info.id for info in await source.list_workers()]


async def _mine(manager: Manager) -> list[WorkerInfo]:
    return [info for info in await manager.list_workers() if info.pid == os.getpid()]


# ---- through the Manager ----------------------------------------------------------------


async def test_a_started_manager_is_listed_with_what_it_runs(make_manager: MakeManager) -> None:
    manager = register(make_manager(), {WF: Flow()}, {"double": lambda t: 2})
    assert await manager.list_workers() == []  # works before start; nothing is listed yet

    await manager.start()

    [info] = await manager.list_workers()
    assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
    assert info.version == cereal_version() != "unknown"
    assert info.workflow_names == (WF,)
    assert info.task_names == ("double",)
    assert info.id
    assert info.started_at <= info.last_seen_at
    assert info.started_at.tzinfo is not None and info.started_at.utcoffset() == timedelta(0)


async def test_a_running_manager_refreshes_its_row(make_manager: MakeManager) -> None:
    manager = make_manager(task_heartbeat_interval=0.05, task_expiry=1.0)
    await manager.start()
    [first] = await manager.list_workers()

    async def refreshed() -> bool:
        [now] = await manager.list_workers()
        return now.last_seen_at > first.last_seen_at

    await eventually(refreshed, what="the worker's row refreshed by its heartbeat")
    [later] = await manager.list_workers()
    assert (later.id, later.started_at) == (first.id, first.started_at)


async def test_stop_removes_the_row_and_other_managers_stay(make_manager: MakeManager) -> None:
    first = register(make_manager(), {"one": Flow()}, {})
    second = register(make_manager(), {"two": Flow()}, {})
    await first.start()
    await second.start()
    both = await _mine(first)
    assert sorted(info.workflow_names for info in both) == [("one",), ("two",)]
    assert len({info.id for info in both}) == 2

    await first.stop()

    [left] = await second.list_workers()
    assert left.workflow_names == ("two",)
    await second.stop()
    assert await first.list_workers() == []  # storage calls work after stop


# ---- the driver contract ----------------------------------------------------------------


async def test_register_lists_the_row_as_given(driver: Driver) -> None:
    await driver.register_worker(_worker("w1"))

    [info] = await driver.list_workers()
    assert (info.id, info.host, info.pid, info.version) == ("w1", "host-a", 4242, "9.9")
    assert info.workflow_names == ("wf-a", "wf b ✓")
    assert info.task_names == ("task-a",)
    assert info.started_at == info.last_seen_at


async def test_register_again_keeps_the_start_time_and_takes_the_new_names(
    driver: Driver,
) -> None:
    await driver.register_worker(_worker("w1"))
    [before] = await driver.list_workers()

    await driver.register_worker(replace(_worker("w1"), workflow_names=("other",)))

    [after] = await driver.list_workers()
    assert after.started_at == before.started_at
    assert after.last_seen_at >= before.last_seen_at
    assert after.workflow_names == ("other",)


async def test_refresh_moves_last_seen_and_says_whether_the_row_exists(driver: Driver) -> None:
    await driver.register_worker(_worker("w1"))
    [before] = await driver.list_workers()

    async def moved() -> bool:
        assert await driver.refresh_worker("w1") is True
        [now] = await driver.list_workers()
        return now.last_seen_at > before.last_seen_at

    await eventually(moved, what="last_seen_at to move on refresh")
    assert await driver.refresh_worker("never-registered") is False
    assert await _ids(driver) == ["w1"]  # a refresh never creates a row


async def test_unregister_removes_only_that_row(driver: Driver) -> None:
    await driver.register_worker(_worker("w1"))
    await driver.register_worker(_worker("w2"))

    await driver.unregister_worker("w1")
    await driver.unregister_worker("missing")  # fine

    assert await _ids(driver) == ["w2"]
    assert await driver.refresh_worker("w1") is False


async def test_a_silent_worker_is_dropped_after_its_own_expiry(driver: Driver) -> None:
    # Given a worker that stops refreshing (expiry 0.2 s) and one that lives long
    await driver.register_worker(_worker("silent", expiry=0.2))
    await driver.register_worker(_worker("alive", expiry=600.0))
    assert sorted(await _ids(driver)) == ["alive", "silent"]

    # Then the silent one drops out once its expiry has passed, the other stays
    async def dropped() -> bool:
        return await _ids(driver) == ["alive"]

    await eventually(dropped, what="the silent worker to drop out")
    # and a refresh (here the live worker's) deletes the dead row: a late refresh of the
    # silent worker cannot bring it back, it has to register again
    assert await driver.refresh_worker("alive") is True
    assert await driver.refresh_worker("silent") is False
    await driver.register_worker(_worker("silent", expiry=0.2))
    assert "silent" in await _ids(driver)


async def test_rows_are_shared_by_every_driver_on_the_store(
    driver_factory: Callable[[], Driver],
) -> None:
    writer, reader = driver_factory(), driver_factory()
    async with writer, reader:
        await writer.register_worker(_worker("w1"))
        assert await _ids(reader) == ["w1"]
        await reader.unregister_worker("w1")
        assert await _ids(writer) == []


async def test_a_manager_whose_row_was_dropped_registers_again(make_manager: MakeManager) -> None:
    manager = make_manager(task_heartbeat_interval=0.05, task_expiry=1.0)
    await manager.start()
    [info] = await manager.list_workers()

    # When its row goes (as after a pause longer than its expiry)
    await manager.driver.unregister_worker(info.id)

    # Then its next heartbeat writes it again, under the same id
    async def back() -> bool:
        return await _ids(manager) == [info.id]

    await eventually(back, what="the Manager to register again")
