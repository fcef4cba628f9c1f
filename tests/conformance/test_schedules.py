"""Recurring schedules through the Manager (BEHAVIOUR 4, Where-we-differ 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dateutil import rrule

from cereal import Manager, Schedule, errors
from tests.conformance._executors import WF, Completions, Flow, register, stay_running
from tests.plugins.manager import MakeManager, eventually

SCHED = "nightly"
EVERY_SECOND = "FREQ=SECONDLY;INTERVAL=1"
FAR_FUTURE = "DTSTART:20990101T000000Z\nRRULE:FREQ=DAILY"
FAR_FUTURE_DUE = datetime(2099, 1, 1, tzinfo=UTC)
EXPIRED_RULES = [
    "DTSTART:20000101T000000Z\nRRULE:FREQ=DAILY;COUNT=2",
    "DTSTART:20000101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20000105T000000Z",
    "FREQ=DAILY;DTSTART=20000101T000000Z;COUNT=1",
]


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def runs_of(completions: Completions, instance_name: str = SCHED) -> list[Any]:
    return [e for e in completions.events if e.instance.instance_name == instance_name]


async def scheduling_manager(
    make_manager: MakeManager, workflow: Any = None
) -> tuple[Manager, Completions]:
    """A started Manager whose workflow completes at once with its parameters."""
    completions = Completions()
    manager = register(make_manager(on_workflow_complete=completions), {WF: workflow or Flow()})
    await manager.start()
    return manager, completions


async def test_secondly_schedule_enqueues_runs_with_its_names_and_parameters(
    make_manager: MakeManager,
) -> None:
    # Given a Manager with a workflow that completes at once
    manager, completions = await scheduling_manager(make_manager)

    # When a schedule fires every second
    await manager.create_workflow_schedule(WF, SCHED, {"region": "eu"}, EVERY_SECOND)

    # Then runs are enqueued under the schedule's names with its parameters
    await eventually(lambda: len(runs_of(completions)) >= 2, what="two scheduled runs")
    for event in completions.events:
        assert (event.instance.workflow_name, event.instance.instance_name) == (WF, SCHED)
        assert event.instance.get_parameters() == {"region": "eu"}
    finished = await manager.get_workflow_instance(WF, SCHED)
    assert finished.get_parameters() == {"region": "eu"}


async def test_duplicate_schedule_raises_exists(make_manager: MakeManager) -> None:
    manager = make_manager()
    await manager.create_workflow_schedule(WF, SCHED, 1, FAR_FUTURE)

    with pytest.raises(errors.WorkflowScheduleExistsError):
        await manager.create_workflow_schedule(WF, SCHED, 2, FAR_FUTURE)

    assert (await manager.get_workflow_schedule(WF, SCHED)).get_parameters() == 1


@pytest.mark.parametrize("rule", ["FREQ=SOMETIMES", "not a rule", "FREQ=DAILY;BOGUS=1", ""])
async def test_invalid_rrule_raises_and_stores_nothing(
    make_manager: MakeManager, rule: str
) -> None:
    manager = make_manager()

    with pytest.raises(errors.InvalidScheduleError):
        await manager.create_workflow_schedule(WF, SCHED, None, rule)

    assert await manager.list_workflow_schedules() == []


@pytest.mark.parametrize("rule", EXPIRED_RULES)
async def test_rule_with_no_future_occurrence_raises_and_stores_nothing(
    make_manager: MakeManager, rule: str
) -> None:
    manager = make_manager()

    with pytest.raises(errors.InvalidScheduleError):
        await manager.create_workflow_schedule(WF, SCHED, None, rule)

    assert await manager.list_workflow_schedules() == []


async def test_cron_expression_is_stored_as_its_rrule(make_manager: MakeManager) -> None:
    manager = make_manager()
    before = datetime.now(UTC)

    await manager.create_workflow_schedule(WF, SCHED, None, "30 3 * * *")

    got = await manager.get_workflow_schedule(WF, SCHED)
    assert got.recurrence == "FREQ=DAILY;BYHOUR=3;BYMINUTE=30;BYSECOND=0"
    assert (got.next_due_at.hour, got.next_due_at.minute, got.next_due_at.second) == (3, 30, 0)
    assert before < got.next_due_at <= before + timedelta(days=1)

    await manager.update_workflow_schedule(WF, SCHED, recurrence="0 9 * * MON-FRI")
    updated = await manager.get_workflow_schedule(WF, SCHED)
    assert updated.recurrence == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0"
    assert updated.next_due_at.weekday() < 5


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("61 * * * *", "minute must be in 0..59"),
        ("0 3 1 * MON", "cannot say 'either'"),
        ("0 3 * * FUNDAY", "day of week has 'FUNDAY'"),
    ],
)
async def test_invalid_cron_raises_naming_the_problem_and_stores_nothing(
    make_manager: MakeManager, cron: str, problem: str
) -> None:
    manager = make_manager()
    await manager.create_workflow_schedule(WF, "kept", None, FAR_FUTURE)

    with pytest.raises(errors.InvalidScheduleError, match=f"invalid cron expression.*{problem}"):
        await manager.create_workflow_schedule(WF, SCHED, None, cron)
    with pytest.raises(errors.InvalidScheduleError, match=problem):
        await manager.update_workflow_schedule(WF, "kept", recurrence=cron)

    assert [s.instance_name for s in await manager.list_workflow_schedules()] == ["kept"]
    assert (await manager.get_workflow_schedule(WF, "kept")).next_due_at == FAR_FUTURE_DUE


async def test_list_and_get_return_the_schedule_fields(make_manager: MakeManager) -> None:
    # Given a schedule created with a future DTSTART
    manager = make_manager()
    await manager.create_workflow_schedule(WF, SCHED, {"k": [1, 2]}, FAR_FUTURE)

    # When it is read / Then every field is as created
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert isinstance(got, Schedule)
    assert isinstance(got.id, int)
    assert (got.workflow_name, got.instance_name, got.enabled) == (WF, SCHED, True)
    assert got.get_parameters() == {"k": [1, 2]}
    assert "FREQ=DAILY" in got.recurrence
    assert got.next_due_at == FAR_FUTURE_DUE
    assert got.next_due_at.utcoffset() == timedelta(0)
    assert (got.last_enqueued_at, got.last_start, got.last_end) == (None, None, None)
    assert await manager.list_workflow_schedules() == [got]


async def test_a_run_fills_last_enqueued_at_last_start_and_last_end(
    make_manager: MakeManager,
) -> None:
    # Given a schedule that has run once
    manager, completions = await scheduling_manager(make_manager)
    await manager.create_workflow_schedule(WF, SCHED, None, EVERY_SECOND)
    await eventually(lambda: len(runs_of(completions)) >= 1, what="a scheduled run")

    # When it is read after the run finished
    async def filled() -> bool:
        got = await manager.get_workflow_schedule(WF, SCHED)
        return None not in (got.last_enqueued_at, got.last_start, got.last_end)

    await eventually(filled, what="last_* filled")

    # Then get and list both report aware times of that run
    listed = await manager.list_workflow_schedules()
    for got in [await manager.get_workflow_schedule(WF, SCHED), *listed]:
        assert got.last_enqueued_at is not None and got.last_start is not None
        assert got.last_end is not None
        for when in (got.last_enqueued_at, got.last_start, got.last_end, got.next_due_at):
            assert when.utcoffset() == timedelta(0)
        assert got.last_start <= got.last_end


async def test_update_applies_every_change_at_once(make_manager: MakeManager) -> None:
    # Given a schedule
    manager = make_manager()
    await manager.create_workflow_schedule(WF, SCHED, {"v": 1}, FAR_FUTURE)

    # When parameters, recurrence and enabled change in one call
    await manager.update_workflow_schedule(
        WF,
        SCHED,
        parameters={"v": 2},
        recurrence="DTSTART:20980101T000000Z\nRRULE:FREQ=WEEKLY",
        enabled=False,
    )

    # Then all three changed, and next_due_at follows the new rule
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert got.get_parameters() == {"v": 2}
    assert "FREQ=WEEKLY" in got.recurrence
    assert got.enabled is False
    assert got.next_due_at == datetime(2098, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("rule", EXPIRED_RULES[:2])
async def test_update_to_an_exhausted_rule_raises_and_changes_nothing(
    make_manager: MakeManager, rule: str
) -> None:
    # Given a schedule
    manager = make_manager()
    await manager.create_workflow_schedule(WF, SCHED, {"v": 1}, FAR_FUTURE, enabled=False)
    before = await manager.get_workflow_schedule(WF, SCHED)

    # When it is updated to a rule with no future occurrence, with other changes
    with pytest.raises(errors.InvalidScheduleError):
        await manager.update_workflow_schedule(
            WF, SCHED, parameters={"v": 2}, recurrence=rule, enabled=True
        )

    # Then nothing changed
    assert await manager.get_workflow_schedule(WF, SCHED) == before


async def test_update_of_a_missing_schedule_raises_not_found(make_manager: MakeManager) -> None:
    manager = make_manager()
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await manager.update_workflow_schedule(WF, SCHED, enabled=False)
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await manager.get_workflow_schedule(WF, SCHED)


async def test_disabling_a_schedule_stops_its_runs(make_manager: MakeManager) -> None:
    # Given a schedule that runs every second, and a second one to measure time by
    manager, completions = await scheduling_manager(make_manager)
    await manager.create_workflow_schedule(WF, SCHED, None, EVERY_SECOND)
    await eventually(lambda: len(runs_of(completions)) >= 1, what="a scheduled run")

    # When it is disabled
    await manager.update_workflow_schedule(WF, SCHED, enabled=False)
    await manager.create_workflow_schedule(WF, "clock", None, EVERY_SECOND)
    await eventually(lambda: len(runs_of(completions, "clock")) >= 1, what="clock ticked")
    settled = (await manager.get_workflow_schedule(WF, SCHED)).last_enqueued_at
    runs = len(runs_of(completions))

    # Then while the other schedule runs three more times, it enqueues nothing
    ticks = len(runs_of(completions, "clock"))
    await eventually(lambda: len(runs_of(completions, "clock")) >= ticks + 3, what="clock ticks")
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert got.enabled is False
    assert got.last_enqueued_at == settled
    assert len(runs_of(completions)) == runs


async def test_reenabling_recomputes_next_due_at_from_now(make_manager: MakeManager) -> None:
    # Given a disabled daily schedule whose next due time has passed
    manager = make_manager()
    # (DTSTART at least a second ahead, so it is still the next occurrence when created)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    rule = f"DTSTART:{stamp(first)}\nRRULE:FREQ=DAILY"
    await manager.create_workflow_schedule(WF, SCHED, None, rule, enabled=False)
    stale = (await manager.get_workflow_schedule(WF, SCHED)).next_due_at
    assert stale == first
    # rules work in whole seconds: wait until the stored time is a full second in the past
    past = stale + timedelta(seconds=1)
    await eventually(lambda: datetime.now(UTC) > past, what="the stored next due time to pass")

    # When it is enabled again
    enabled_at = datetime.now(UTC)
    await manager.update_workflow_schedule(WF, SCHED, enabled=True)

    # Then its next due time is the rule's next occurrence after now, not the stale one
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert got.enabled is True
    assert got.next_due_at == first + timedelta(days=1)
    assert got.next_due_at > enabled_at


async def test_delete_removes_a_schedule_and_a_missing_one_raises(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    await manager.create_workflow_schedule(WF, SCHED, None, FAR_FUTURE)
    await manager.create_workflow_schedule(WF, "kept", None, FAR_FUTURE)

    await manager.delete_workflow_schedule(WF, SCHED)

    assert [s.instance_name for s in await manager.list_workflow_schedules()] == ["kept"]
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await manager.get_workflow_schedule(WF, SCHED)
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await manager.delete_workflow_schedule(WF, SCHED)


async def test_run_is_skipped_while_the_previous_is_live_and_keeps_last_enqueued_at(
    make_manager: MakeManager,
) -> None:
    # Given a schedule whose first run stays live
    flow = Flow(stay_running)
    manager, _ = await scheduling_manager(make_manager, flow)
    await manager.create_workflow_schedule(WF, SCHED, None, EVERY_SECOND)
    await eventually(lambda: flow.count("start", SCHED) == 1, what="first run started")

    async def enqueued_once() -> bool:
        return (await manager.get_workflow_schedule(WF, SCHED)).last_enqueued_at is not None

    await eventually(enqueued_once, what="last_enqueued_at set")
    first = await manager.get_workflow_schedule(WF, SCHED)

    # When the schedule comes due twice more
    async def advanced() -> bool:
        got = await manager.get_workflow_schedule(WF, SCHED)
        return got.next_due_at >= first.next_due_at + timedelta(seconds=2)

    await eventually(advanced, what="schedule advanced past two occurrences")

    # Then no run was enqueued: the live one is alone and last_enqueued_at is unchanged
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert got.last_enqueued_at == first.last_enqueued_at
    assert got.enabled is True
    assert flow.count("start", SCHED) == 1
    assert (await manager.get_workflow_instance(WF, SCHED)).is_running()


async def test_schedule_with_count_ends_disabled_after_its_runs(make_manager: MakeManager) -> None:
    # Given a schedule with exactly two occurrences, both in the future
    manager, completions = await scheduling_manager(make_manager)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    rule = f"DTSTART:{stamp(start)}\nRRULE:FREQ=SECONDLY;INTERVAL=2;COUNT=2"

    # When it runs out
    await manager.create_workflow_schedule(WF, SCHED, None, rule)

    async def disabled() -> bool:
        return not (await manager.get_workflow_schedule(WF, SCHED)).enabled

    await eventually(disabled, what="schedule disabled")

    # Then it ran twice and is disabled
    await eventually(lambda: len(runs_of(completions)) >= 2, what="two runs finished")
    assert len(runs_of(completions)) == 2


@pytest.mark.parametrize(
    "rule",
    [
        "DTSTART:20990101T000000Z\nRRULE:FREQ=DAILY;INTERVAL=1",
        "FREQ=DAILY;DTSTART=20990101T000000Z;INTERVAL=1",
        "RRULE:FREQ=DAILY;DTSTART=20990101T000000Z",
    ],
    ids=["two-line", "one-line", "one-line-prefixed"],
)
async def test_both_recurrence_forms_are_accepted(make_manager: MakeManager, rule: str) -> None:
    manager = make_manager()

    await manager.create_workflow_schedule(WF, SCHED, None, rule)

    assert (await manager.get_workflow_schedule(WF, SCHED)).next_due_at == FAR_FUTURE_DUE


@pytest.mark.parametrize(
    "dtstart", [datetime(2099, 1, 1, tzinfo=UTC), datetime(2099, 1, 1)], ids=["aware", "naive"]
)
async def test_dateutil_rrule_is_accepted(make_manager: MakeManager, dtstart: datetime) -> None:
    manager = make_manager()

    await manager.create_workflow_schedule(
        WF, SCHED, None, rrule.rrule(rrule.DAILY, dtstart=dtstart)
    )

    got = await manager.get_workflow_schedule(WF, SCHED)
    assert got.next_due_at == FAR_FUTURE_DUE
    assert "FREQ=DAILY" in got.recurrence


async def test_enabled_rule_without_dtstart_is_due_at_once(make_manager: MakeManager) -> None:
    # Given a Manager with a workflow that completes at once
    manager, completions = await scheduling_manager(make_manager)

    # When a daily schedule without DTSTART is created
    await manager.create_workflow_schedule(WF, SCHED, "daily", "FREQ=DAILY")

    # Then it runs now, not in a day
    await eventually(lambda: len(runs_of(completions)) == 1, what="first run")
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert got.enabled is True
    assert got.next_due_at > datetime.now(UTC) + timedelta(hours=1)


async def test_enabling_an_enabled_schedule_keeps_its_next_due_time(
    make_manager: MakeManager,
) -> None:
    # Given an enabled schedule without DTSTART: due at once, then every day from then
    manager = make_manager()
    await manager.create_workflow_schedule(WF, SCHED, None, "FREQ=DAILY")
    before = (await manager.get_workflow_schedule(WF, SCHED)).next_due_at
    await eventually(lambda: datetime.now(UTC) > before + timedelta(seconds=1), what="time passes")

    # When it is enabled again, alone and together with a parameter change
    await manager.update_workflow_schedule(WF, SCHED, enabled=True)
    await manager.update_workflow_schedule(WF, SCHED, enabled=True, parameters={"p": 2})

    # Then its next due time has not moved (no extra or lost run)
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert (got.enabled, got.next_due_at, got.get_parameters()) == (True, before, {"p": 2})
