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


async def test_pages_newest_first_match_the_whole_listing_through_reruns_and_live_names(
    make_manager: MakeManager,
) -> None:
    # Given names that ran several times, some of them live again now, over two workflows
    manager = make_manager()
    driver = await manager._storage()
    for round_ in range(3):
        for index in range(6):
            workflow = "a-flow" if index % 2 else "b-flow"
            if round_ < 2 or index % 3:
                await finished(driver, workflow, f"i{index}")
    await driver.enqueue_workflow("b-flow", "i0", None)  # live again after two runs
    await driver.enqueue_workflow("a-flow", "fresh", None)  # live, never finished

    # When every filter is read whole and in pages of 1, 2 and 4
    for filters in (
        {},
        {"is_running": False},
        {"is_running": True},
        {"workflow_name": "a-flow"},
        {"instance_name": "i3"},
    ):
        whole = await _listing(manager, newest_first=True, **filters)
        for size in (1, 2, 4):
            paged: list[str] = []
            for offset in range(0, len(whole) + size, size):
                paged += await _listing(
                    manager, newest_first=True, limit=size, offset=offset, **filters
                )
            # Then the pages hold the same entries, in the same order, each once
            assert paged == whole, (filters, size)
    everything = await _listing(manager, newest_first=True)
    assert len(everything) == len(set(everything)) == 7
    assert everything[0] == "a-flow/fresh"
