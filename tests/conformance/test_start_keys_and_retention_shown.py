"""What the CLI and the dashboard show: an instance's idempotency keys, the applied retention.

``Manager.list_start_keys`` answers the kept keys that started runs of an
instance name; ``Manager.applied_retention`` the history retention the
store's trims last applied, as rules, with since when. Same answers on every
store (over ``cereal serve`` too).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cereal import RetentionRule, StartKey
from cereal.checks.times import utcnow
from cereal.models import HistoryRetention, WorkflowRetention, key_that_started
from tests.plugins.manager import MakeManager

WF = "orders"


async def test_an_instance_lists_the_key_that_started_it(make_manager: MakeManager) -> None:
    manager = make_manager()
    before = utcnow()
    # Given one run started with an idempotency key and one without
    await manager.enqueue_workflow(WF, "o-1", {"n": 1}, idempotency_key="request 7 ✓")
    await manager.enqueue_workflow(WF, "o-2", {"n": 2})
    # and a repeat of the keyed call (it starts nothing)
    again = await manager.enqueue_workflow(WF, "o-3", {"n": 1}, idempotency_key="request 7 ✓")
    assert (again.created, again.instance_name) == (False, "o-1")

    # Then the first run lists its key, with when it started; the others none
    [key] = await manager.list_start_keys(WF, "o-1")
    assert isinstance(key, StartKey)
    assert key.idempotency_key == "request 7 ✓"
    assert before - timedelta(seconds=5) <= key.created_at <= utcnow() + timedelta(seconds=5)
    assert await manager.list_start_keys(WF, "o-2") == []
    assert await manager.list_start_keys(WF, "o-3") == []
    assert await manager.list_start_keys("other", "o-1") == []
    # and the key's time is its run's start time, which names the run it started
    first = (await manager.get_workflow_instance(WF, "o-1")).data
    assert key_that_started([key], first.started_at) == key


async def test_a_later_run_of_the_names_is_not_taken_for_the_keys_run(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    # Given a run started with a key, which ended, and a later run of the same names
    # started without one
    await manager.enqueue_workflow(WF, "o-1", None, idempotency_key="first-key")
    await manager.kill_workflow(WF, "o-1")
    await manager.enqueue_workflow(WF, "o-1", None)

    # Then the key is still kept, but it names no run but the first
    keys = await manager.list_start_keys(WF, "o-1")
    assert [key.idempotency_key for key in keys] == ["first-key"]
    later = (await manager.get_workflow_instance(WF, "o-1")).data
    assert later.is_running()
    assert key_that_started(keys, later.started_at) is None


@pytest.mark.parametrize("names", [("", "i"), ("w", ""), ("w", "a\nb")])
async def test_start_keys_of_a_bad_name_are_refused(
    make_manager: MakeManager, names: tuple[str, str]
) -> None:
    with pytest.raises(ValueError, match="name"):
        await make_manager().list_start_keys(*names)


def without_time(rules: list[RetentionRule]) -> list[tuple[object, ...]]:
    return [(r.workflow_name, r.max_rows, r.margin_rows, r.max_runs, r.max_age) for r in rules]


async def test_the_applied_retention_is_the_last_trims_with_since_when(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()  # never started: no sweep of its own trims meanwhile
    # Given a store no trim has run on: no retention applied yet
    assert await manager.applied_retention() == []

    # When a trim applies a store-wide bound and a rule for "reports"
    first = HistoryRetention(
        max_rows=500,
        margin_rows=50,
        max_age=86400.0,
        per_workflow={"reports": WorkflowRetention(max_runs=10, max_age=3600.0)},
    )
    await manager.trim_history(first)

    # Then the store shows it, store-wide rule first, with since when
    applied = await manager.applied_retention()
    assert without_time(applied) == [
        (None, 500, 50, None, 86400.0),
        ("reports", None, None, 10, 3600.0),
    ]
    since = applied[0].applied_at
    assert {rule.applied_at for rule in applied} == {since}
    assert abs((utcnow() - since).total_seconds()) < 60
    assert applied[1].text() == "reports: the newest 10 runs, none older than 1 h"
    assert applied[0].text() == (
        "all workflows: at most 500 runs (trimmed to 450), none older than 1 d"
    )

    # When the same retention is applied again, nothing changes (not even the time)
    await manager.trim_history(first)
    assert await manager.applied_retention() == applied

    # When another is applied, it replaces the rules, "reports" gone, with a new time
    await asyncio.sleep(0.01)  # (so the clock has moved on)
    await manager.trim_history(HistoryRetention(max_rows=900, margin_rows=100))
    again = await manager.applied_retention()
    assert without_time(again) == [(None, 900, 100, None, None)]
    assert again[0].applied_at > since
