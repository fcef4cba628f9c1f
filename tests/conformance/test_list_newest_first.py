"""``list_workflow_instances(newest_first=True)``: by start time, newest first, paged in the store.

Every case runs on every driver setup (memory, SQLite, PostgreSQL, gRPC).
"""

from __future__ import annotations

import pytest

from cereal.drivers import Driver
from tests.conformance._driver_helpers import finished
from tests.plugins.manager import MakeManager


async def _listing(manager: object, **options: object) -> list[str]:
    found = await manager.list_workflow_instances(**options)  # type: ignore[attr-defined]
    return [f"{entry.workflow_name}/{entry.instance_name}" for entry in found]


async def _three_runs(driver: Driver) -> None:
    await finished(driver, "b-flow", "first")  # started first, finished
    await driver.enqueue_workflow("a-flow", "second", None)  # live
    await finished(driver, "c-flow", "third")  # started last, finished


async def test_newest_first_orders_by_start_time_live_and_finished_alike(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    await _three_runs(await manager._storage())
    newest = await _listing(manager, newest_first=True)
    assert newest == ["c-flow/third", "a-flow/second", "b-flow/first"]
    assert await _listing(manager) == ["a-flow/second", "b-flow/first", "c-flow/third"]


async def test_newest_first_pages_and_filters_in_the_store(make_manager: MakeManager) -> None:
    manager = make_manager()
    await _three_runs(await manager._storage())
    page = await _listing(manager, newest_first=True, limit=1, offset=1)
    assert page == ["a-flow/second"]
    finished_only = await _listing(manager, newest_first=True, is_running=False)
    assert finished_only == ["c-flow/third", "b-flow/first"]


async def test_a_newer_run_of_a_name_moves_it_to_the_top(make_manager: MakeManager) -> None:
    manager = make_manager()
    driver = await manager._storage()
    await _three_runs(driver)
    await finished(driver, "b-flow", "first")  # the name runs again, newest of all
    assert (await _listing(manager, newest_first=True))[0] == "b-flow/first"


async def test_newest_first_must_be_a_bool(make_manager: MakeManager) -> None:
    manager = make_manager()
    with pytest.raises(TypeError, match="newest_first must be a bool"):
        await manager.list_workflow_instances(newest_first="yes")  # type: ignore[arg-type]
