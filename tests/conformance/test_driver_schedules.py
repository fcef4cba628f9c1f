"""The driver contract, schedules: CRUD, due locking, enqueue-and-update, next due."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cereal import errors
from cereal.checks.times import utcnow
from cereal.drivers import Driver
from cereal.models import (
    UNSET,
    Overlap,
    RunOutcome,
    ScheduleUpdate,
    WorkflowEventType,
    WorkflowInstanceStatus,
)
from tests.conformance._driver_helpers import (
    INST,
    ODD_NAMES,
    WF,
    Wakeups,
    eventually,
    started,
    take,
)

RULE = "FREQ=SECONDLY;INTERVAL=10"


def in_minutes(minutes: float) -> datetime:
    # whole seconds: every store keeps at least second precision
    return (utcnow() + timedelta(minutes=minutes)).replace(microsecond=0)


async def create(
    driver: Driver,
    workflow_name: str = WF,
    instance_name: str = INST,
    *,
    parameters: bytes | None = b'{"s": 1}',
    enabled: bool = True,
    recurrence: str = RULE,
    due: datetime | None = None,
) -> None:
    await driver.create_workflow_schedule(
        workflow_name,
        instance_name,
        parameters,
        enabled,
        recurrence,
        in_minutes(-1) if due is None else due,
    )


# ---- create, read, update, delete ------------------------------------------------------------


async def test_create_and_read(driver: Driver) -> None:
    due = in_minutes(30)
    await create(driver, due=due, enabled=False)

    got = await driver.get_workflow_schedule(WF, INST)
    assert (got.workflow_name, got.instance_name) == (WF, INST)
    assert (got.parameters, got.enabled, got.recurrence) == (b'{"s": 1}', False, RULE)
    assert got.next_due_at == due
    assert got.next_due_at.utcoffset() == timedelta(0)
    assert (got.last_enqueued_at, got.last_start, got.last_end) == (None, None, None)
    assert await driver.list_workflow_schedules() == [got]


async def test_create_duplicate_raises(driver: Driver) -> None:
    await create(driver)
    with pytest.raises(errors.WorkflowScheduleExistsError):
        await create(driver, parameters=b"2")
    assert (await driver.get_workflow_schedule(WF, INST)).parameters == b'{"s": 1}'
    await create(driver, "other", INST)  # the pair is the key
    await create(driver, WF, "other")
    assert len(await driver.list_workflow_schedules()) == 3


async def test_schedule_ids_differ(driver: Driver) -> None:
    await create(driver, WF, "a")
    await create(driver, WF, "b")
    ids = {s.id for s in await driver.list_workflow_schedules()}
    assert len(ids) == 2


async def test_unknown_schedule_raises(driver: Driver) -> None:
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await driver.get_workflow_schedule(WF, INST)
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await driver.update_workflow_schedule(WF, INST, ScheduleUpdate(enabled=False))
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await driver.delete_workflow_schedule(WF, INST)
    assert await driver.list_workflow_schedules() == []


async def test_update_changes_only_what_it_names(driver: Driver) -> None:
    await create(driver, parameters=b"1")
    before = await driver.get_workflow_schedule(WF, INST)

    await driver.update_workflow_schedule(WF, INST, ScheduleUpdate())
    assert await driver.get_workflow_schedule(WF, INST) == before

    await driver.update_workflow_schedule(WF, INST, ScheduleUpdate(enabled=False))
    got = await driver.get_workflow_schedule(WF, INST)
    assert (got.enabled, got.parameters, got.recurrence) == (False, b"1", RULE)
    assert got.next_due_at == before.next_due_at

    await driver.update_workflow_schedule(WF, INST, ScheduleUpdate(parameters=None))
    got = await driver.get_workflow_schedule(WF, INST)
    assert (got.enabled, got.parameters) == (False, None)

    due = in_minutes(90)
    await driver.update_workflow_schedule(
        WF,
        INST,
        ScheduleUpdate(enabled=True, parameters=b"2", recurrence="FREQ=DAILY", next_due_at=due),
    )
    got = await driver.get_workflow_schedule(WF, INST)
    assert (got.enabled, got.parameters, got.recurrence, got.next_due_at) == (
        True,
        b"2",
        "FREQ=DAILY",
        due,
    )
    assert got.id == before.id

    await driver.update_workflow_schedule(WF, INST, ScheduleUpdate(parameters=UNSET))
    assert (await driver.get_workflow_schedule(WF, INST)).parameters == b"2"


async def test_delete(driver: Driver) -> None:
    await create(driver)
    await create(driver, WF, "kept")

    await driver.delete_workflow_schedule(WF, INST)

    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await driver.get_workflow_schedule(WF, INST)
    assert [s.instance_name for s in await driver.list_workflow_schedules()] == ["kept"]
    await create(driver)  # the names are free again


async def test_delete_leaves_running_instances_alone(driver: Driver) -> None:
    await create(driver)
    _, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        assert await completer.enqueue_and_update(next_due_at=in_minutes(5), enabled=True)

    await driver.delete_workflow_schedule(WF, INST)

    assert (await driver.get_workflow_instance(WF, INST)).is_running()


async def test_last_start_and_end_come_from_history(driver: Driver) -> None:
    await create(driver, due=in_minutes(30))
    await started(driver)
    assert (await driver.get_workflow_schedule(WF, INST)).last_end is None

    await driver.cancel_workflow(WF, INST)
    _, completer = await take(driver)
    async with completer:
        await completer.done(None)
    run = await driver.get_workflow_instance(WF, INST)

    got = await driver.get_workflow_schedule(WF, INST)
    assert run.started_at is not None and run.ended_at is not None
    assert got.last_start == run.started_at
    assert got.last_end == run.ended_at
    [listed] = await driver.list_workflow_schedules()
    assert (listed.last_start, listed.last_end) == (run.started_at, run.ended_at)


# ---- due schedules ---------------------------------------------------------------------------


async def test_nothing_due(driver: Driver) -> None:
    with pytest.raises(errors.NoDueWorkflowsError):
        await driver.get_due_scheduled_workflow()
    await create(driver, WF, "future", due=in_minutes(30))
    await create(driver, WF, "disabled", enabled=False)
    with pytest.raises(errors.NoDueWorkflowsError):
        await driver.get_due_scheduled_workflow()


async def test_earliest_due_first_and_locked(driver: Driver) -> None:
    await create(driver, WF, "late", due=in_minutes(-1))
    await create(driver, WF, "later", due=in_minutes(-5))

    first, first_lock = await driver.get_due_scheduled_workflow()
    second, second_lock = await driver.get_due_scheduled_workflow()
    assert (first.instance_name, second.instance_name) == ("later", "late")
    with pytest.raises(errors.NoDueWorkflowsError):
        await driver.get_due_scheduled_workflow()  # both are locked

    await first_lock.close()
    await first_lock.close()  # idempotent
    again, lock = await driver.get_due_scheduled_workflow()
    assert again.instance_name == "later"
    assert again == first  # closing without applying changed nothing
    await lock.close()
    await second_lock.close()


async def test_schedule_locks_hold_across_drivers_sharing_a_store(
    driver: Driver, driver_factory: Callable[[], Driver]
) -> None:
    second = driver_factory()
    await second.init()
    try:
        await create(driver)
        _, lock = await driver.get_due_scheduled_workflow()
        with pytest.raises(errors.NoDueWorkflowsError):
            await second.get_due_scheduled_workflow()
        await lock.close()
        _, lock = await second.get_due_scheduled_workflow()
        await lock.close()
    finally:
        await second.close()


async def test_enqueue_and_update_starts_the_instance(driver: Driver) -> None:
    await create(driver, parameters=b'{"from": "schedule"}')
    next_due = in_minutes(10)

    schedule, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        assert (schedule.workflow_name, schedule.instance_name) == (WF, INST)
        assert await completer.enqueue_and_update(next_due_at=next_due, enabled=True)

    got = await driver.get_workflow_instance(WF, INST)
    assert got.status == WorkflowInstanceStatus.STARTING
    assert got.parameters == b'{"from": "schedule"}'
    event, workflow = await take(driver)
    async with workflow:
        assert event.type == WorkflowEventType.START
    updated = await driver.get_workflow_schedule(WF, INST)
    assert (updated.next_due_at, updated.enabled) == (next_due, True)
    assert updated.last_enqueued_at is not None
    assert updated.last_enqueued_at.utcoffset() == timedelta(0)
    with pytest.raises(errors.NoDueWorkflowsError):
        await driver.get_due_scheduled_workflow()


async def test_enqueue_and_update_skips_while_a_run_is_live(driver: Driver) -> None:
    await create(driver)
    await started(driver, parameters=b'"manual"')

    next_due = in_minutes(10)

    _, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        assert not await completer.enqueue_and_update(next_due_at=next_due, enabled=False)

    got = await driver.get_workflow_schedule(WF, INST)
    assert (got.enabled, got.last_enqueued_at, got.next_due_at) == (False, None, next_due)
    assert (await driver.get_workflow_instance(WF, INST)).parameters == b'"manual"'


async def test_last_enqueued_at_stays_when_skipped(driver: Driver) -> None:
    await create(driver)
    _, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        await completer.enqueue_and_update(next_due_at=in_minutes(-1), enabled=True)
    first = (await driver.get_workflow_schedule(WF, INST)).last_enqueued_at
    assert first is not None

    _, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        assert not await completer.enqueue_and_update(next_due_at=in_minutes(5), enabled=True)

    assert (await driver.get_workflow_schedule(WF, INST)).last_enqueued_at == first


async def test_disable_releases_and_disables(driver: Driver) -> None:
    await create(driver)

    _, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        await completer.disable()

    got = await driver.get_workflow_schedule(WF, INST)
    assert (got.enabled, got.last_enqueued_at) == (False, None)
    with pytest.raises(errors.NoDueWorkflowsError):
        await driver.get_due_scheduled_workflow()
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.get_workflow_instance(WF, INST)


# ---- next scheduled -------------------------------------------------------------------------


async def test_next_scheduled(driver: Driver) -> None:
    with pytest.raises(errors.NoScheduledWorkflowsError):
        await driver.get_next_scheduled_workflow()
    await create(driver, WF, "off", enabled=False, due=in_minutes(-60))
    with pytest.raises(errors.NoScheduledWorkflowsError):
        await driver.get_next_scheduled_workflow()

    await create(driver, WF, "far", due=in_minutes(60))
    await create(driver, WF, "soon", due=in_minutes(20))
    assert (await driver.get_next_scheduled_workflow()).instance_name == "soon"

    await driver.update_workflow_schedule(WF, "far", ScheduleUpdate(next_due_at=in_minutes(5)))
    assert (await driver.get_next_scheduled_workflow()).instance_name == "far"


async def test_timezones_are_normalised_to_utc(driver: Driver) -> None:
    local = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).astimezone(timezone(timedelta(hours=10)))
    await create(driver, due=local)

    got = await driver.get_workflow_schedule(WF, INST)
    assert got.next_due_at == local
    assert got.next_due_at.utcoffset() == timedelta(0)


# ---- wakeups and names -----------------------------------------------------------------------


async def test_schedule_changes_announce_themselves(driver: Driver) -> None:
    heard = Wakeups()
    driver.add_wakeup_listener(heard)

    await create(driver, due=in_minutes(30))
    await eventually(lambda: heard.saw("schedule", None))
    heard.calls.clear()
    await driver.update_workflow_schedule(WF, INST, ScheduleUpdate(next_due_at=in_minutes(-1)))
    await eventually(lambda: heard.saw("schedule", None))
    heard.calls.clear()
    _, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        await completer.enqueue_and_update(next_due_at=in_minutes(30), enabled=True)
    await eventually(lambda: heard.saw("workflow", WF))
    heard.calls.clear()
    await driver.delete_workflow_schedule(WF, INST)
    await eventually(lambda: heard.saw("schedule", None))


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_odd_names_round_trip(driver: Driver, name: str) -> None:
    # the odd text rides in the parameters too (a gRPC server refuses a rule that does not parse)
    await create(driver, name, name, parameters=json.dumps(name).encode())

    got = await driver.get_workflow_schedule(name, name)
    assert (got.workflow_name, got.instance_name) == (name, name)
    assert got.get_parameters() == name
    _, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        assert await completer.enqueue_and_update(next_due_at=in_minutes(5), enabled=True)
    assert (await driver.get_workflow_instance(name, name)).is_running()
    await driver.delete_workflow_schedule(name, name)


async def test_a_due_time_for_enabling_applies_only_to_a_disabled_schedule_with_that_rule(
    driver: Driver,
) -> None:
    # A due time computed from a rule, for re-enabling: applied only if the
    # schedule is still disabled and still has that rule when the update lands.
    # each due time computed once: computed again, it may fall in the next second
    old_due, new_due, changed_due = in_minutes(30), in_minutes(60), in_minutes(90)
    enable_from_rule = ScheduleUpdate(enabled=True, next_due_at=new_due, due_rule=RULE)

    # an enabled schedule keeps its due time
    await create(driver, "wf-a", INST, due=old_due)
    await driver.update_workflow_schedule("wf-a", INST, enable_from_rule)
    got = await driver.get_workflow_schedule("wf-a", INST)
    assert (got.enabled, got.next_due_at) == (True, old_due)

    # a schedule whose rule changed meanwhile keeps the due time of that change
    await create(driver, "wf-b", INST, due=old_due, enabled=False)
    await driver.update_workflow_schedule(
        "wf-b", INST, ScheduleUpdate(recurrence="FREQ=DAILY", next_due_at=changed_due)
    )
    await driver.update_workflow_schedule("wf-b", INST, enable_from_rule)
    got = await driver.get_workflow_schedule("wf-b", INST)
    assert (got.enabled, got.recurrence, got.next_due_at) == (True, "FREQ=DAILY", changed_due)

    # a disabled schedule with that rule takes it
    await create(driver, "wf-c", INST, due=old_due, enabled=False)
    await driver.update_workflow_schedule("wf-c", INST, enable_from_rule)
    got = await driver.get_workflow_schedule("wf-c", INST)
    assert (got.enabled, got.next_due_at) == (True, new_due)


# ---- overlap: waiting runs ---------------------------------------------------------------------


async def test_a_waiting_run_is_handed_out_once_its_instance_ends(driver: Driver) -> None:
    # Given a buffer_one schedule, not due, whose instance is live, and a buffered run
    due = in_minutes(30)
    await driver.create_workflow_schedule(WF, INST, b'"p"', True, RULE, due, overlap="buffer_one")
    await driver.enqueue_workflow(WF, INST, b'"manual"')
    assert await driver.trigger_workflow_schedule(WF, INST, "replaced") is RunOutcome.BUFFERED
    assert await driver.has_waiting_schedule_runs()

    # While the instance is live the schedule is not handed out
    with pytest.raises(errors.NoDueWorkflowsError):
        await driver.get_due_scheduled_workflow()

    # When the instance ends, the schedule is handed out for its waiting run only
    await driver.kill_workflow(WF, INST, "killed")
    schedule, completer = await driver.get_due_scheduled_workflow()
    async with completer:
        assert completer.due is False
        assert schedule.run_pending is True
        assert await completer.run_and_advance(run=True) is RunOutcome.STARTED

    # Then the run started with the schedule's parameters; the due time did not move
    got = await driver.get_workflow_schedule(WF, INST)
    assert (got.run_pending, got.next_due_at, got.enabled) == (False, due, True)
    assert (await driver.get_workflow_instance(WF, INST)).parameters == b'"p"'
    assert not await driver.has_waiting_schedule_runs()


async def test_a_missed_due_time_advances_without_a_run(driver: Driver) -> None:
    await create(driver)
    _, completer = await driver.get_due_scheduled_workflow()
    due = in_minutes(10)
    async with completer:
        assert completer.due is True
        outcome = await completer.run_and_advance(run=False, next_due_at=due, enabled=True)
    assert outcome is RunOutcome.MISSED
    got = await driver.get_workflow_schedule(WF, INST)
    assert (got.next_due_at, got.last_enqueued_at) == (due, None)
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.get_workflow_instance(WF, INST)


@pytest.mark.parametrize(
    ("overlap", "outcome", "live_after"),
    [
        ("skip", RunOutcome.SKIPPED, b'"manual"'),
        ("buffer_one", RunOutcome.BUFFERED, b'"manual"'),
        ("cancel_other", RunOutcome.CANCELLING, b'"manual"'),
        ("terminate_other", RunOutcome.REPLACED, b'"p"'),
    ],
)
async def test_trigger_applies_the_policy_to_a_live_instance(
    driver: Driver, overlap: Overlap, outcome: RunOutcome, live_after: bytes
) -> None:
    # Given a schedule whose instance is live
    due = in_minutes(30)
    await driver.create_workflow_schedule(WF, INST, b'"p"', True, RULE, due, overlap=overlap)
    await driver.enqueue_workflow(WF, INST, b'"manual"')

    # When it is triggered
    assert await driver.trigger_workflow_schedule(WF, INST, "replaced") is outcome

    # Then the live instance is the old one or (terminate_other) a new one, and a
    # cancel_other trigger queued a cancel event behind the start
    assert (await driver.get_workflow_instance(WF, INST)).parameters == live_after
    events, completer = (await driver.claim_workflows([WF], max_events=5))[0]
    async with completer:
        kinds = [event.type for event in events]
    expected_kinds = [WorkflowEventType.START]
    if overlap == "cancel_other":
        expected_kinds.append(WorkflowEventType.CANCEL)
    assert kinds == expected_kinds
    got = await driver.get_workflow_schedule(WF, INST)
    assert got.run_pending is (overlap in ("buffer_one", "cancel_other"))
    assert got.next_due_at == due
