"""``run_throughput``: finished runs per time bucket, completed and failed apart.

Every case runs on every driver setup (memory, SQLite, PostgreSQL, gRPC); the
counts come from each store's own aggregate query over its end-time indexes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cereal import Manager, ThroughputBucket
from cereal.checks.times import utcnow
from tests.conformance._driver_helpers import finished
from tests.plugins.manager import MakeManager


def _totals(found: list[ThroughputBucket]) -> tuple[int, int]:
    return sum(b.completed for b in found), sum(b.failed for b in found)


async def _two_done_one_failed(manager: Manager) -> tuple[datetime, datetime]:
    """Finish three runs; returns instants just before and just after they ended."""
    driver = await manager._storage()
    before = utcnow() - timedelta(seconds=1)
    await finished(driver, "wf", "a")
    await finished(driver, "wf", "b")
    await finished(driver, "other", "c", error="boom")
    return before, utcnow() + timedelta(seconds=1)


async def test_an_empty_store_answers_every_bucket_with_zero(make_manager: MakeManager) -> None:
    manager = make_manager()
    until = datetime(2030, 1, 1, 12, 34, 56, tzinfo=UTC)
    found = await manager.run_throughput(60, 5, until=until)
    assert [b.start for b in found] == [
        datetime(2030, 1, 1, 12, minute, tzinfo=UTC) for minute in range(30, 35)
    ]
    assert all(b.seconds == 60 and b.completed == 0 and b.failed == 0 for b in found)


async def test_runs_count_in_the_bucket_of_their_end(make_manager: MakeManager) -> None:
    manager = make_manager()
    before, after = await _two_done_one_failed(manager)
    # one-second buckets over the last 1000 s: the runs land inside [before, after]
    found = await manager.run_throughput(1, 1000, until=after)
    assert len(found) == 1000
    assert _totals(found) == (2, 1)
    busy = [b for b in found if b.completed or b.failed]
    assert all(before <= b.start <= after for b in busy)


async def test_the_default_end_is_now(make_manager: MakeManager) -> None:
    manager = make_manager()
    await _two_done_one_failed(manager)
    found = await manager.run_throughput(3600, 2)  # this hour and the last: covers the runs
    assert found[-1].start <= utcnow() < found[-1].start + timedelta(hours=1)
    assert _totals(found) == (2, 1)


async def test_runs_outside_the_window_are_not_counted(make_manager: MakeManager) -> None:
    manager = make_manager()
    before, _ = await _two_done_one_failed(manager)
    earlier = await manager.run_throughput(60, 60, until=before - timedelta(minutes=2))
    assert _totals(earlier) == (0, 0)


async def test_a_requeued_failed_run_still_counts_as_failed(make_manager: MakeManager) -> None:
    manager = make_manager()
    _, after = await _two_done_one_failed(manager)
    [failed] = await manager.list_failed_runs()
    await manager.requeue_failed_runs([failed.run_id])
    assert _totals(await manager.run_throughput(1, 1000, until=after)) == (2, 1)


BAD: list[tuple[tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
    ((0, 10), {}, ValueError, "bucket_seconds must be from 1 to"),
    ((7 * 86400 + 1, 1), {}, ValueError, "bucket_seconds must be from 1 to"),
    ((60, 0), {}, ValueError, "buckets must be from 1 to 1000"),
    ((60, 1001), {}, ValueError, "buckets must be from 1 to 1000"),
    ((7 * 86400, 60), {}, ValueError, "the window"),
    ((60.0, 10), {}, TypeError, "bucket_seconds must be an int"),
    ((60, True), {}, TypeError, "buckets must be an int"),
    ((60, "10"), {}, TypeError, "buckets must be an int"),
    ((60, 10), {"until": datetime(2030, 1, 1)}, ValueError, "until must be timezone-aware"),
    ((60, 10), {"until": 1234.5}, TypeError, "until must be a datetime"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), BAD, ids=lambda v: repr(v))
async def test_bad_windows_are_refused_naming_the_problem(
    make_manager: MakeManager,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    manager = make_manager()
    with pytest.raises(error, match=message):
        await manager.run_throughput(*args, **kwargs)


async def test_the_store_refuses_a_bad_window_too(make_manager: MakeManager) -> None:
    driver = await make_manager()._storage()
    with pytest.raises(ValueError, match="until must be seconds since the epoch"):
        await driver.run_throughput(60, 10, until=float("nan"))
    with pytest.raises(ValueError, match="buckets must be from 1 to 1000"):
        await driver.run_throughput(60, 0)
