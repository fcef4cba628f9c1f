"""Retention per workflow name: a name's rule trims its own finished runs, and only them.

Every case runs on every driver setup (memory, SQLite, PostgreSQL, gRPC: the
rules cross the wire with the trim request).
"""

from __future__ import annotations

import math

import pytest

from cereal.drivers import Driver
from cereal.models import HistoryRetention, ListWorkflowFilter, WorkflowRetention
from tests._waiting import wait_past
from tests.conformance._driver_helpers import finished
from tests.plugins.manager import MakeManager


async def _kept(driver: Driver, workflow_name: str) -> list[str]:
    listed = await driver.list_workflow_instances(ListWorkflowFilter(workflow_name=workflow_name))
    return sorted(entry.instance_name for entry in listed)


async def _runs(driver: Driver, workflow_name: str, count: int) -> None:
    for index in range(count):
        await finished(driver, workflow_name, f"r{index}")


async def test_max_runs_keeps_a_names_newest_runs_and_leaves_other_names_alone(
    driver: Driver,
) -> None:
    await _runs(driver, "reports", 5)
    await _runs(driver, "orders", 5)
    retention = HistoryRetention(per_workflow={"reports": WorkflowRetention(max_runs=2)})
    assert await driver.trim_history(retention) == 3
    assert await _kept(driver, "reports") == ["r3", "r4"]
    assert await _kept(driver, "orders") == ["r0", "r1", "r2", "r3", "r4"]
    assert await driver.trim_history(retention) == 0  # nothing more to do


@pytest.mark.parametrize("max_runs", [3, 4, 5, 6])
async def test_max_runs_at_or_above_the_count_trims_nothing(driver: Driver, max_runs: int) -> None:
    await _runs(driver, "reports", 3)
    retention = HistoryRetention(per_workflow={"reports": WorkflowRetention(max_runs=max_runs)})
    assert await driver.trim_history(retention) == 0
    assert await _kept(driver, "reports") == ["r0", "r1", "r2"]


async def test_max_runs_zero_keeps_none_of_the_name(driver: Driver) -> None:
    await _runs(driver, "reports", 3)
    await _runs(driver, "orders", 1)
    retention = HistoryRetention(per_workflow={"reports": WorkflowRetention(max_runs=0)})
    assert await driver.trim_history(retention) == 3
    assert await _kept(driver, "reports") == []
    assert await _kept(driver, "orders") == ["r0"]


async def test_max_age_trims_a_names_older_runs_only(driver: Driver) -> None:
    await _runs(driver, "reports", 2)
    await _runs(driver, "orders", 1)
    old = await driver.get_workflow_instance("reports", "r1")
    assert old.ended_at is not None
    await wait_past(old.ended_at, 1.0)
    await finished(driver, "reports", "fresh")
    retention = HistoryRetention(per_workflow={"reports": WorkflowRetention(max_age=1.0)})
    assert await driver.trim_history(retention) == 2
    assert await _kept(driver, "reports") == ["fresh"]
    assert await _kept(driver, "orders") == ["r0"]


async def test_a_rule_applies_before_the_store_wide_bound(driver: Driver) -> None:
    await _runs(driver, "orders", 4)
    await _runs(driver, "reports", 4)  # the newest runs of all
    retention = HistoryRetention(
        max_rows=5, margin_rows=0, per_workflow={"reports": WorkflowRetention(max_runs=1)}
    )
    assert await driver.trim_history(retention) == 3
    # the rule keeps reports' newest; the five rows left are under the store-wide bound
    assert await _kept(driver, "reports") == ["r3"]
    assert await _kept(driver, "orders") == ["r0", "r1", "r2", "r3"]
    tighter = HistoryRetention(
        max_rows=2, margin_rows=0, per_workflow={"reports": WorkflowRetention(max_runs=1)}
    )
    assert await driver.trim_history(tighter) == 3  # the store-wide bound still applies
    assert await _kept(driver, "reports") == ["r3"]
    assert await _kept(driver, "orders") == ["r3"]


@pytest.mark.parametrize(
    ("make", "error", "says"),
    [
        (lambda: HistoryRetention(per_workflow={"": WorkflowRetention()}), ValueError, "empty"),
        (
            lambda: HistoryRetention(per_workflow={"a\nb": WorkflowRetention()}),
            ValueError,
            "workflow name",
        ),
        (lambda: HistoryRetention(per_workflow={"a": 3}), TypeError, "must be a WorkflowRetention"),
        (lambda: HistoryRetention(per_workflow=[("a", WorkflowRetention())]), TypeError, "mapping"),
        (lambda: WorkflowRetention(max_runs=-1), ValueError, "max_runs must be between"),
        (lambda: WorkflowRetention(max_runs=2.5), TypeError, "max_runs must be an int"),
        (lambda: WorkflowRetention(max_age=math.nan), ValueError, "max_age must be between"),
        (lambda: WorkflowRetention(max_age="1d"), TypeError, "max_age must be a number"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(
    make: object, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        make()  # type: ignore[operator]


async def test_the_manager_trims_now_under_a_given_or_the_drivers_retention(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    driver = await manager._storage()
    await _runs(driver, "reports", 3)
    rules = HistoryRetention(per_workflow={"reports": WorkflowRetention(max_runs=1)})
    assert await manager.trim_history(rules) == 2
    assert await _kept(driver, "reports") == ["r2"]
    assert await manager.trim_history() == 0  # the driver's default keeps 10 000
    with pytest.raises(TypeError, match="retention must be a HistoryRetention"):
        await manager.trim_history({"reports": 1})  # type: ignore[arg-type]
