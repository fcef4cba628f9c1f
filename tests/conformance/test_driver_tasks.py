"""The driver contract, task side: readiness, order, leases, completion, expiry, retention."""

from __future__ import annotations

import time
from datetime import timedelta, timezone

import pytest

from cereal import errors
from cereal.checks.times import utcnow
from cereal.drivers import Driver, TaskCompleter
from cereal.engine.sweep import sweep_store
from cereal.models import (
    ExpiredLease,
    HistoryRetention,
    LeaseSettlement,
    ListWorkflowFilter,
    NewTask,
    SweepReport,
    TaskStatus,
    WorkflowEventType,
)
from tests._waiting import wait_past, wait_until
from tests.conformance._driver_helpers import (
    INST,
    WF,
    finished,
    hour_ahead,
    started,
    sweep,
    take,
)


async def claim_one(
    driver: Driver, task_name: str = "t", *, task_expiry: float = 3600
) -> TaskCompleter:
    [(_, completer)] = await driver.dequeue_tasks(task_name, 1, task_expiry=task_expiry)
    return completer


async def after_end_of(driver: Driver, instance_name: str) -> None:
    """Wait until the clock has passed the end of the instance's latest finished run."""
    ended_at = (await driver.get_workflow_instance(WF, instance_name)).ended_at
    assert ended_at is not None, f"{instance_name} has not finished"
    await wait_past(ended_at)


async def sweep_until_expired(driver: Driver, count: int = 1) -> SweepReport:
    """Sweep (with a sweeper expiry that never expires anything) until ``count`` leases expire."""
    reports: list[SweepReport] = []

    async def expired() -> bool:
        reports.append(await sweep(driver, task_expiry=3600))
        return sum(report.expired_tasks for report in reports) >= count

    await wait_until(expired, what=f"{count} lease(s) expired")
    return SweepReport(expired_tasks=sum(report.expired_tasks for report in reports))


async def clock_passes(seconds: float) -> None:
    """Wait (polling) until ``seconds`` have passed on the host clock; never an assertion."""
    since = time.monotonic()
    await wait_until(lambda: time.monotonic() - since > seconds, what=f"{seconds} s passed")


# ---- readiness and order ------------------------------------------------------------------


async def test_no_task_ready(driver: Driver) -> None:
    assert await driver.dequeue_tasks("t", 5) == []
    with pytest.raises(errors.NoTasksError):
        await driver.dequeue_task("t")


async def test_start_after_in_the_future_is_not_ready(driver: Driver) -> None:
    past = utcnow() - timedelta(minutes=1)
    await started(
        driver,
        tasks=[NewTask("t", b'"later"', start_after=hour_ahead()), NewTask("t", b'"now"', past)],
    )

    claimed = await driver.dequeue_tasks("t", 10)
    assert [data.parameters for data, _ in claimed] == [b'"now"']
    with pytest.raises(errors.NoTasksError):
        await driver.dequeue_task("t")


async def test_default_start_after_is_ready_at_once(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1")])

    data, _ = await driver.dequeue_task("t")
    assert data.parameters == b"1"


async def test_tasks_come_oldest_first_up_to_max(driver: Driver) -> None:
    await started(driver, "a", INST, tasks=[NewTask("t", b"1"), NewTask("t", b"2")])
    await started(driver, "b", INST, tasks=[NewTask("t", b"3"), NewTask("other", b'"x"')])
    await started(driver, "a", "second", tasks=[NewTask("t", b"4")])

    first = await driver.dequeue_tasks("t", 2)
    rest = await driver.dequeue_tasks("t", 10)

    assert [data.parameters for data, _ in first] == [b"1", b"2"]
    assert [data.parameters for data, _ in rest] == [b"3", b"4"]
    assert await driver.dequeue_tasks("t", 10) == []
    assert [data.name for data, _ in await driver.dequeue_tasks("other", 10)] == ["other"]


async def test_a_claimed_task_is_not_handed_out_twice(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t")])

    await driver.dequeue_task("t")
    with pytest.raises(errors.NoTasksError):
        await driver.dequeue_task("t")


async def test_task_metadata(driver: Driver) -> None:
    before = utcnow()
    await started(driver, tasks=[NewTask("t", b'{"k": [1, 2]}'), NewTask("t")])

    (first, _), (second, _) = await driver.dequeue_tasks("t", 2)
    assert first.name == "t"
    assert first.parameters == b'{"k": [1, 2]}'
    assert first.get_parameters() == {"k": [1, 2]}
    meta = first.metadata
    assert (meta.task_name, meta.workflow_name, meta.instance_name) == ("t", WF, INST)
    assert meta.attempt >= 1
    assert meta.task_id and meta.task_id != second.metadata.task_id
    assert meta.enqueued_at.utcoffset() == timedelta(0)
    # the driver's clock may be the database's: allow for a little skew
    assert meta.enqueued_at >= before - timedelta(seconds=5)


# ---- completion ----------------------------------------------------------------------------


async def test_succeed_queues_a_task_complete_event(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b'"in"')])
    completer = await claim_one(driver)

    await completer.heartbeat()
    await completer.succeed(b'{"out": true}')

    event, workflow = await take(driver)
    async with workflow:
        assert event.type == WorkflowEventType.TASK_COMPLETE
        assert (event.enqueued_task_count, event.completed_task_count) == (1, 1)
        result = event.task_result
        assert result is not None
        assert (result.task_name, result.status) == ("t", TaskStatus.SUCCESS)
        assert (result.parameters, result.result, result.error_text) == (
            b'"in"',
            b'{"out": true}',
            "",
        )
        await workflow.continue_(None, [])
    assert (await driver.get_workflow_instance(WF, INST)).is_running()


async def test_succeed_with_none_result(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t")])
    await (await claim_one(driver)).succeed(None)

    event, workflow = await take(driver)
    async with workflow:
        assert event.task_result is not None
        assert (event.task_result.status, event.task_result.result) == (TaskStatus.SUCCESS, None)


async def test_fail_records_the_error_text(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"7")])
    await (await claim_one(driver)).fail("no luck; 'quoted' ✗")

    event, workflow = await take(driver)
    async with workflow:
        result = event.task_result
        assert result is not None
        assert (result.status, result.error_text) == (TaskStatus.FAILED, "no luck; 'quoted' ✗")
        assert result.parameters == b"7"
        assert not result.result


async def test_abandon_reports_lost_at_once(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"7")])
    completer = await claim_one(driver)

    await completer.abandon()

    event, workflow = await take(driver)
    async with workflow:
        result = event.task_result
        assert result is not None
        assert (result.task_name, result.status, result.parameters) == ("t", TaskStatus.LOST, b"7")
        assert event.completed_task_count == 1
    with pytest.raises(errors.TaskLostError):
        await completer.abandon()
    with pytest.raises(errors.TaskLostError):
        await completer.succeed(None)


@pytest.mark.parametrize("first", ["succeed", "fail", "abandon"])
async def test_every_call_after_completion_is_lost(driver: Driver, first: str) -> None:
    await started(driver, tasks=[NewTask("t")])
    completer = await claim_one(driver)
    if first == "succeed":
        await completer.succeed(b"1")
    elif first == "fail":
        await completer.fail("x")
    else:
        await completer.abandon()

    calls = {
        "heartbeat": lambda: completer.heartbeat(),
        "succeed": lambda: completer.succeed(b"2"),
        "fail": lambda: completer.fail("y"),
        "abandon": lambda: completer.abandon(),
    }
    for call in calls.values():
        with pytest.raises(errors.TaskLostError):
            await call()
    # exactly one task_complete event was produced
    event, workflow = await take(driver)
    async with workflow:
        assert event.type == WorkflowEventType.TASK_COMPLETE
        await workflow.continue_(None, [])
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)


async def test_task_lost_after_its_workflow_ended(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t"), NewTask("t")])
    first = await claim_one(driver)
    second = await claim_one(driver)
    await first.succeed(None)

    _, workflow = await take(driver)
    async with workflow:
        await workflow.done(None)  # ends while `second` still runs

    with pytest.raises(errors.TaskLostError):
        await second.heartbeat()
    with pytest.raises(errors.TaskLostError):
        await second.succeed(b"1")
    with pytest.raises(errors.TaskLostError):
        await second.fail("x")
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)
    assert (await driver.get_workflow_instance(WF, INST)).result is None


async def test_task_lost_after_its_workflow_was_killed(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t")])
    completer = await claim_one(driver)

    await driver.kill_workflow(WF, INST, "killed")

    with pytest.raises(errors.TaskLostError):
        await completer.succeed(b"1")
    await driver.enqueue_workflow(WF, INST, None)  # a new run gets no stray event
    event, workflow = await take(driver)
    async with workflow:
        assert event.type == WorkflowEventType.START
        await workflow.continue_(None, [])
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)


async def test_completion_while_the_event_is_claimed(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t"), NewTask("t")])
    first = await claim_one(driver)
    second = await claim_one(driver)
    await first.succeed(b"1")
    event, workflow = await take(driver)

    await second.succeed(b"2")  # lands while the instance is claimed

    async with workflow:
        assert event.completed_task_count == 1
        await workflow.continue_(None, [])
    event, workflow = await take(driver)
    async with workflow:
        assert event.task_result is not None and event.task_result.result == b"2"
        assert (event.enqueued_task_count, event.completed_task_count) == (2, 2)


# ---- expiry ----------------------------------------------------------------------------------


async def test_sweep_expires_stale_leases_as_lost(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1"), NewTask("t", b"2")])
    completer = await claim_one(driver, task_expiry=0.01)

    report = await sweep_until_expired(driver)

    assert report.expired_tasks == 1
    with pytest.raises(errors.TaskLostError):
        await completer.heartbeat()
    with pytest.raises(errors.TaskLostError):
        await completer.succeed(b'"late"')
    event, workflow = await take(driver)
    async with workflow:
        result = event.task_result
        assert result is not None
        assert (result.status, result.parameters, result.result) == (TaskStatus.LOST, b"1", None)
        assert (event.enqueued_task_count, event.completed_task_count) == (2, 1)
        await workflow.continue_(None, [])
    # the queued (never claimed) task is untouched
    data, _ = await driver.dequeue_task("t")
    assert data.parameters == b"2"


async def test_sweep_spares_fresh_leases(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t")])
    completer = await claim_one(driver)

    report = await sweep(driver, task_expiry=3600)

    assert report.expired_tasks == 0
    await completer.heartbeat()
    await completer.succeed(None)


async def test_sweep_on_an_empty_store(driver: Driver) -> None:
    report = await sweep(driver, task_expiry=0)
    assert (report.expired_tasks, report.trimmed_results) == (0, 0)


async def expired_leases(driver: Driver, count: int) -> list[ExpiredLease]:
    """Read expired leases (sweeper expiry an hour) until ``count`` are; in task id order."""
    found: list[ExpiredLease] = []

    async def all_expired() -> bool:
        nonlocal found
        found = await driver.expired_task_leases(3600, 100)
        return len(found) >= count

    await wait_until(all_expired, what=f"{count} lease(s) past their deadline")
    return sorted(found, key=lambda lease: int(lease.task_id))


async def test_a_settlement_applies_only_while_its_lease_is_still_expired(
    driver: Driver,
) -> None:
    # Given four leases past their holder's 10 ms expiry, as a sweep reads them
    await started(driver, tasks=[NewTask("t", f"{n}".encode()) for n in range(1, 5)])
    leased = await driver.dequeue_tasks("t", 4, task_expiry=0.01)
    holders = {data.parameters: completer for data, completer in leased}
    expired = await expired_leases(driver, 4)
    ids = {data.parameters: data.metadata.task_id for data, _ in leased}
    assert [lease.task_id for lease in expired] == [ids[b"1"], ids[b"2"], ids[b"3"], ids[b"4"]]
    assert {(lease.task_name, lease.workflow_name, lease.instance_name) for lease in expired} == {
        ("t", WF, INST)
    }
    assert {(lease.attempt, lease.retry_policy) for lease in expired} == {(1, None)}
    first, second, third, fourth = expired

    # When, before the settlement, the first task completes and the second is handed
    # back and claimed again (a new lease, an hour long)
    await holders[b"1"].succeed(b'"done"')
    assert await holders[b"2"].hand_back()
    [(again, reclaimed)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    assert again.metadata.task_id == second.task_id
    # ... and a sweep settles all four (the third as LOST, the fourth to retry at once),
    # plus settlements naming a lease or a task that does not exist
    settlements = [
        LeaseSettlement(first.task_id, first.lease, delay=0.0),
        LeaseSettlement(second.task_id, second.lease, error="swept"),
        LeaseSettlement(third.task_id, third.lease, error="swept"),
        LeaseSettlement(fourth.task_id, fourth.lease, delay=0.0),
        LeaseSettlement(third.task_id, "not the lease", error="wrong"),
        LeaseSettlement("999999999", third.lease, error="wrong"),
    ]
    applied = await driver.settle_expired_leases(settlements, task_expiry=3600)

    # Then only the two leases still expired are settled, each once
    assert sorted(applied, key=int) == [third.task_id, fourth.task_id]
    assert await driver.settle_expired_leases(settlements, task_expiry=3600) == []
    # the completed task's result stands, the expired third is LOST with the text given
    outcomes = []
    for _ in range(2):
        event, workflow = await take(driver)
        async with workflow:
            result = event.task_result
            assert result is not None
            outcomes.append((result.parameters, result.status, result.result, result.error_text))
            await workflow.continue_(None, [])
    assert outcomes == [
        (b"1", TaskStatus.SUCCESS, b'"done"', ""),
        (b"3", TaskStatus.LOST, None, "swept"),
    ]
    # the fourth is queued again: its next claim is its second attempt
    [(retried, _)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    assert (retried.parameters, retried.metadata.attempt) == (b"4", 2)
    # the second runs on under its new lease
    await reclaimed.heartbeat()
    await reclaimed.succeed(None)
    with pytest.raises(errors.TaskLostError):
        await holders[b"3"].heartbeat()


async def test_a_sweep_settles_a_backlog_larger_than_its_batch(driver: Driver) -> None:
    # Given five expired leases and a sweep that reads and settles two at a time
    await started(driver, tasks=[NewTask("t", f"{n}".encode()) for n in range(5)])
    assert len(await driver.dequeue_tasks("t", 5, task_expiry=0.01)) == 5
    await expired_leases(driver, 5)

    # When one sweep runs
    report = await sweep_store(driver, 3600, batch=2)

    # Then all five are LOST (three batches: two full, one short)
    assert report.expired_tasks == 5
    assert await driver.expired_task_leases(3600, 100) == []


# ---- leases judged by their holder's expiry (several Managers, different task_expiry) ----------


async def test_a_short_expiry_sweep_spares_a_lease_within_its_holders_expiry(
    driver: Driver,
) -> None:
    # Given a lease taken with a long expiry, not heartbeated since
    await started(driver, tasks=[NewTask("t")])
    completer = await claim_one(driver, task_expiry=3600)
    await clock_passes(0.05)

    # When a sweeper whose own expiry is 10 ms sweeps
    report = await sweep(driver, task_expiry=0.01)

    # Then the lease is still held: it is judged by its holder's expiry
    assert report.expired_tasks == 0
    await completer.heartbeat()
    await completer.succeed(b"1")
    event, workflow = await take(driver)
    async with workflow:
        assert event.task_result is not None
        assert event.task_result.status == TaskStatus.SUCCESS


async def test_a_lease_expires_after_its_holders_expiry_whatever_the_sweeper_uses(
    driver: Driver,
) -> None:
    # Given two leases on one store: one held with a 10 ms expiry, one with an hour
    await started(driver, tasks=[NewTask("short", b"1"), NewTask("long", b"2")])
    short = await claim_one(driver, "short", task_expiry=0.01)
    long = await claim_one(driver, "long", task_expiry=3600)

    # When a sweeper with a long expiry of its own sweeps after the short deadline
    report = await sweep_until_expired(driver)

    # Then only the short-expiry lease expired, as LOST
    assert report.expired_tasks == 1
    with pytest.raises(errors.TaskLostError):
        await short.heartbeat()
    await long.heartbeat()
    event, workflow = await take(driver)
    async with workflow:
        assert event.task_result is not None
        assert (event.task_result.task_name, event.task_result.status) == (
            "short",
            TaskStatus.LOST,
        )


async def test_heartbeat_renews_a_lease_by_its_holders_expiry(driver: Driver) -> None:
    # Given a lease held with an hour's expiry, heartbeated after some time passed
    await started(driver, tasks=[NewTask("long"), NewTask("short")])
    long = await claim_one(driver, "long", task_expiry=3600)
    await clock_passes(0.05)
    await long.heartbeat()

    # When a sweeper with a 10 ms expiry sweeps after more time passed
    await clock_passes(0.05)
    spared = await sweep(driver, task_expiry=0.01)

    # Then the heartbeat renewed it by its holder's hour, not by the sweeper's 10 ms
    assert spared.expired_tasks == 0
    await long.heartbeat()

    # Given a lease held with a 10 ms expiry, heartbeated at once
    short = await claim_one(driver, "short", task_expiry=0.01)
    await short.heartbeat()

    # When a sweeper with an hour's expiry sweeps until something expires
    expired = await sweep_until_expired(driver)

    # Then the heartbeat renewed it by its holder's 10 ms, not by the sweeper's hour nor
    # a default: only it expired
    assert expired.expired_tasks == 1
    with pytest.raises(errors.TaskLostError):
        await short.heartbeat()
    await long.heartbeat()


# ---- history retention ---------------------------------------------------------------------


async def history(driver: Driver) -> list[str]:
    rows = await driver.list_workflow_instances(ListWorkflowFilter(is_running=False))
    return sorted(row.instance_name for row in rows)


async def test_sweep_trims_history_by_count(driver: Driver) -> None:
    # `retention` is the base class's public attribute; sweep reads it each time
    driver.retention = HistoryRetention(max_rows=5, margin_rows=2)
    for n in range(5):
        await finished(driver, WF, f"i{n}")
        await after_end_of(driver, f"i{n}")  # distinct end times, so the order is unambiguous
    await driver.enqueue_workflow("other", "live", None)

    assert (await sweep(driver, task_expiry=3600)).trimmed_results == 0  # 5 rows: not over
    await finished(driver, WF, "i5")
    await after_end_of(driver, "i5")
    await finished(driver, WF, "i6")

    report = await sweep(driver, task_expiry=3600)

    assert report.trimmed_results == 4  # 7 rows -> the newest 3 are kept
    assert await history(driver) == ["i4", "i5", "i6"]
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.get_workflow_instance(WF, "i0")
    assert (await driver.get_workflow_instance("other", "live")).is_running()


async def test_sweep_trims_history_by_age(driver: Driver) -> None:
    await finished(driver, WF, "old")
    # "old" is older than max_age before "new" ends; "new" stays younger unless the
    # sweep below starts more than max_age after it ended
    old_end = (await driver.get_workflow_instance(WF, "old")).ended_at
    assert old_end is not None
    await wait_past(old_end, 1.0)
    driver.retention = HistoryRetention(max_age=1.0)
    await finished(driver, WF, "new")

    report = await sweep(driver, task_expiry=3600)

    assert report.trimmed_results == 1
    assert await history(driver) == ["new"]


async def test_trimming_keeps_a_newer_run_of_the_same_names(driver: Driver) -> None:
    driver.retention = HistoryRetention(max_rows=2, margin_rows=1)
    await finished(driver, WF, INST, result=b"1")
    await after_end_of(driver, INST)
    await finished(driver, WF, "other")
    await after_end_of(driver, "other")
    await finished(driver, WF, INST, result=b"3")

    await sweep(driver, task_expiry=3600)

    assert await history(driver) == [INST]
    assert (await driver.get_workflow_instance(WF, INST)).result == b"3"


async def test_start_after_in_another_zone(driver: Driver) -> None:
    zone = timezone(timedelta(hours=-10))
    past = (utcnow() - timedelta(minutes=1)).astimezone(zone)
    future = (utcnow() + timedelta(minutes=30)).astimezone(zone)
    await started(driver, tasks=[NewTask("t", b'"future"', future), NewTask("t", b'"past"', past)])

    assert [data.parameters for data, _ in await driver.dequeue_tasks("t", 10)] == [b'"past"']
