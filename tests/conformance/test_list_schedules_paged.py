"""``list_workflow_schedules(limit=, offset=)``: by names, paged in the store.

Every case runs on every driver setup (memory, SQLite, PostgreSQL, gRPC).
"""

from __future__ import annotations

import pytest

from tests.plugins.manager import MakeManager

RULE = "FREQ=HOURLY"


async def _names(manager: object, **page: object) -> list[str]:
    found = await manager.list_workflow_schedules(**page)  # type: ignore[attr-defined]
    return [f"{entry.workflow_name}/{entry.instance_name}" for entry in found]


async def _four_schedules(manager: object) -> None:
    # created out of name order: the listing must not follow creation (or id) order
    for workflow_name, instance_name in [
        ("b-flow", "x"),
        ("a-flow", "z"),
        ("a-flow", "y"),
        ("c", "a"),
    ]:
        await manager.create_workflow_schedule(  # type: ignore[attr-defined]
            workflow_name, instance_name, None, RULE
        )


ALL = ["a-flow/y", "a-flow/z", "b-flow/x", "c/a"]


async def test_schedules_list_by_workflow_then_instance_name(make_manager: MakeManager) -> None:
    manager = make_manager()
    await _four_schedules(manager)
    assert await _names(manager) == ALL


async def test_limit_and_offset_page_through_every_schedule_once(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    await _four_schedules(manager)
    pages = [await _names(manager, limit=3, offset=offset) for offset in (0, 3, 6)]
    assert pages == [ALL[:3], ALL[3:], []]
    assert await _names(manager, offset=1) == ALL[1:]
    assert await _names(manager, limit=1, offset=2) == ["b-flow/x"]


async def test_a_page_keeps_last_run_times(make_manager: MakeManager) -> None:
    manager = make_manager()
    await _four_schedules(manager)
    [paged] = await manager.list_workflow_schedules(limit=1, offset=1)
    assert paged == await manager.get_workflow_schedule("a-flow", "z")


@pytest.mark.parametrize(
    ("page", "error", "message"),
    [
        ({"limit": 0}, ValueError, "limit must be at least 1"),
        ({"offset": -1}, ValueError, "offset must be at least 0"),
        ({"limit": "2"}, TypeError, "limit must be an int"),
        ({"limit": True}, TypeError, "limit must be an int"),
    ],
)
async def test_a_bad_page_is_refused(
    make_manager: MakeManager, page: dict[str, object], error: type[Exception], message: str
) -> None:
    manager = make_manager()
    with pytest.raises(error, match=message):
        await manager.list_workflow_schedules(**page)  # type: ignore[arg-type]
