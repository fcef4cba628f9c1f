"""cereal.engine.scheduler: passes against the memory driver, with an injected scheduler clock.

The memory driver decides due-ness with the host clock, so schedules are made
due by giving them a due time in the real past; the scheduler's own clock is
pinned at (or after) the real now so results are exact. No timing assertions:
loop tests wait for a condition with ``eventually``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest

from cereal import errors
from cereal.checks import times
from cereal.drivers.base import ScheduledWorkflowCompleter
from cereal.drivers.memory import MemoryDriver
from cereal.engine.scheduler import WorkflowScheduler
from cereal.models import ListWorkflowFilter, Schedule
from cereal.recurrence import next_after
from tests.plugins.manager import eventually

HOURLY = "DTSTART:20200101T000000Z\nRRULE:FREQ=HOURLY"


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
async def memory() -> AsyncIterator[MemoryDriver]:
    driver = MemoryDriver()
    async with driver:
        yield driver


def _scheduler(
    driver: MemoryDriver,
    now: datetime,
    on_enqueued: _Counter | None = None,
    *,
    cap: float = 60.0,
    late: float = 10.0,
) -> WorkflowScheduler:
    return WorkflowScheduler(
        driver,
        on_enqueued=on_enqueued or _Counter(),
        max_wakeup_interval=cap,
        late_warning_threshold=late,
        clock=lambda: now,
    )


async def _create(
    driver: MemoryDriver, rule: str, due: datetime, *, name: str = "i", enabled: bool = True
) -> None:
    await driver.create_workflow_schedule("wf", name, b'{"x": 1}', enabled, rule, due)


def _now() -> datetime:
    """The real now, to whole seconds, plus one second: never behind the driver's clock."""
    return times.utcnow().replace(microsecond=0) + timedelta(seconds=1)


# ---- one pass -------------------------------------------------------------------------------


async def test_a_due_schedule_is_enqueued_and_advanced(memory: MemoryDriver) -> None:
    now = _now()
    await _create(memory, HOURLY, now - timedelta(minutes=5))
    woken = _Counter()

    await _scheduler(memory, now, woken).run_pass()

    schedule = await memory.get_workflow_schedule("wf", "i")
    instance = await memory.get_workflow_instance("wf", "i")
    assert instance.is_running() and instance.parameters == b'{"x": 1}'
    assert schedule.enabled
    assert schedule.next_due_at == next_after(HOURLY, now, inclusive=False)
    assert schedule.last_enqueued_at is not None
    assert woken.calls == 1


async def test_missed_runs_are_not_caught_up(memory: MemoryDriver) -> None:
    rule = "DTSTART:20200101T000000Z\nRRULE:FREQ=SECONDLY;INTERVAL=10"
    now = _now()
    await _create(memory, rule, now - timedelta(hours=3))
    woken = _Counter()

    await _scheduler(memory, now, woken).run_pass()

    schedule = await memory.get_workflow_schedule("wf", "i")
    assert woken.calls == 1  # one run for three hours of missed occurrences
    assert now < schedule.next_due_at <= now + timedelta(seconds=10)


async def test_a_rule_without_dtstart_counts_its_interval_from_now(memory: MemoryDriver) -> None:
    now = _now()
    await _create(memory, "FREQ=SECONDLY;INTERVAL=30", now - timedelta(seconds=2))

    await _scheduler(memory, now).run_pass()

    schedule = await memory.get_workflow_schedule("wf", "i")
    assert schedule.next_due_at == now + timedelta(seconds=30)


async def test_a_live_instance_skips_the_run_and_keeps_last_enqueued_at(
    memory: MemoryDriver, caplog: pytest.LogCaptureFixture
) -> None:
    now = _now()
    await memory.enqueue_workflow("wf", "i", b'"manual"')
    await _create(memory, HOURLY, now - timedelta(minutes=5))
    woken = _Counter()

    with caplog.at_level(logging.INFO, logger="cereal.engine.scheduler"):
        await _scheduler(memory, now, woken).run_pass()

    schedule = await memory.get_workflow_schedule("wf", "i")
    instance = await memory.get_workflow_instance("wf", "i")
    assert instance.parameters == b'"manual"'  # the live one, untouched
    assert schedule.last_enqueued_at is None
    assert schedule.next_due_at == next_after(HOURLY, now, inclusive=False)
    assert schedule.enabled
    assert woken.calls == 0
    assert any("still running" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "rule",
    [
        "DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY;COUNT=1",
        "DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20200105T000000Z",
    ],
)
async def test_an_exhausted_rule_runs_once_more_then_disables(
    memory: MemoryDriver, rule: str
) -> None:
    now = _now()
    await _create(memory, rule, now - timedelta(minutes=1))
    woken = _Counter()

    await _scheduler(memory, now, woken).run_pass()

    schedule = await memory.get_workflow_schedule("wf", "i")
    assert woken.calls == 1
    assert (await memory.get_workflow_instance("wf", "i")).is_running()
    assert not schedule.enabled
    assert schedule.last_enqueued_at is not None


async def test_an_invalid_stored_rule_disables_the_schedule(
    memory: MemoryDriver, caplog: pytest.LogCaptureFixture
) -> None:
    now = _now()
    await _create(memory, "FREQ=SOMETIMES", now - timedelta(minutes=1))
    woken = _Counter()

    with caplog.at_level(logging.WARNING, logger="cereal.engine.scheduler"):
        await _scheduler(memory, now, woken).run_pass()

    schedule = await memory.get_workflow_schedule("wf", "i")
    assert not schedule.enabled
    assert woken.calls == 0
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await memory.get_workflow_instance("wf", "i")
    assert any("disabling schedule" in record.getMessage() for record in caplog.records)


async def test_every_due_schedule_is_processed_in_one_pass(memory: MemoryDriver) -> None:
    now = _now()
    for name in ("a", "b", "c"):
        await _create(memory, HOURLY, now - timedelta(minutes=1), name=name)
    await _create(memory, HOURLY, now - timedelta(minutes=1), name="off", enabled=False)
    woken = _Counter()

    await _scheduler(memory, now, woken).run_pass()

    assert woken.calls == 3
    running = await memory.list_workflow_instances(ListWorkflowFilter(workflow_name="wf"))
    assert sorted(instance.instance_name for instance in running) == ["a", "b", "c"]


async def test_a_late_schedule_is_warned_about_with_its_names(
    memory: MemoryDriver, caplog: pytest.LogCaptureFixture
) -> None:
    now = _now() + timedelta(minutes=10)  # the scheduler's clock runs ahead of the driver's
    await _create(memory, HOURLY, _now() - timedelta(minutes=1))

    with caplog.at_level(logging.WARNING, logger="cereal.engine.scheduler"):
        await _scheduler(memory, now, late=60.0).run_pass()

    late = [record for record in caplog.records if "late" in record.getMessage()]
    assert len(late) == 1
    assert late[0].levelno == logging.WARNING
    assert (late[0].workflow_name, late[0].instance_name) == ("wf", "i")  # type: ignore[attr-defined]


async def test_a_schedule_on_time_is_not_warned_about(
    memory: MemoryDriver, caplog: pytest.LogCaptureFixture
) -> None:
    now = _now()
    await _create(memory, HOURLY, now - timedelta(seconds=5))

    with caplog.at_level(logging.WARNING, logger="cereal.engine.scheduler"):
        await _scheduler(memory, now, late=10.0).run_pass()

    assert not [record for record in caplog.records if "late" in record.getMessage()]


async def test_a_failing_wakeup_callback_does_not_stop_the_pass(memory: MemoryDriver) -> None:
    now = _now()
    for name in ("a", "b"):
        await _create(memory, HOURLY, now - timedelta(minutes=1), name=name)

    def broken() -> None:
        raise RuntimeError("boom")

    scheduler = WorkflowScheduler(
        memory,
        on_enqueued=broken,
        max_wakeup_interval=60.0,
        late_warning_threshold=10.0,
        clock=lambda: now,
    )
    await scheduler.run_pass()

    for name in ("a", "b"):
        assert (await memory.get_workflow_instance("wf", name)).is_running()


# ---- the sleep --------------------------------------------------------------------------------


async def test_sleep_is_the_time_until_the_next_due_schedule(memory: MemoryDriver) -> None:
    now = _now()
    await _create(memory, HOURLY, now + timedelta(seconds=12), name="soon")
    await _create(memory, HOURLY, now + timedelta(seconds=40), name="later")

    assert await _scheduler(memory, now, cap=60.0).run_pass() == 12.0


async def test_sleep_is_capped_by_max_wakeup_interval(memory: MemoryDriver) -> None:
    now = _now()
    await _create(memory, HOURLY, now + timedelta(minutes=30))

    assert await _scheduler(memory, now, cap=2.0).run_pass() == 2.0


async def test_sleep_with_no_enabled_schedule_is_the_cap(memory: MemoryDriver) -> None:
    now = _now()
    await _create(memory, HOURLY, now + timedelta(seconds=5), enabled=False)

    assert await _scheduler(memory, now, cap=7.0).run_pass() == 7.0
    assert await _scheduler(MemoryDriver(), now, cap=3.0).run_pass() == 3.0


async def test_sleep_after_a_pass_counts_the_schedule_just_advanced(memory: MemoryDriver) -> None:
    now = _now()
    rule = "DTSTART:20200101T000000Z\nRRULE:FREQ=SECONDLY;INTERVAL=20"
    await _create(memory, rule, now - timedelta(minutes=1))

    sleep = await _scheduler(memory, now, cap=60.0).run_pass()

    schedule = await memory.get_workflow_schedule("wf", "i")
    assert sleep == (schedule.next_due_at - now).total_seconds()
    assert 0 < sleep <= 20


async def test_a_due_time_the_driver_does_not_see_yet_does_not_spin(memory: MemoryDriver) -> None:
    # Clock skew: the scheduler thinks the schedule is due, the driver does not.
    now = _now() + timedelta(minutes=5)
    await _create(memory, HOURLY, _now() + timedelta(minutes=1))

    sleep = await _scheduler(memory, now, cap=60.0).run_pass()

    assert 0 < sleep < 1
    assert (await memory.get_workflow_schedule("wf", "i")).last_enqueued_at is None


# ---- the loop ---------------------------------------------------------------------------------


class _TriggeringDriver(MemoryDriver):
    """Creates a due schedule and triggers the scheduler while the first pass runs."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduler: WorkflowScheduler | None = None
        self.passes = 0
        self.created = False

    async def get_due_scheduled_workflow(self) -> tuple[Schedule, ScheduledWorkflowCompleter]:
        if not self.created:
            self.created = True
            await _create(self, HOURLY, times.utcnow() - timedelta(minutes=1), name="late")
            assert self.scheduler is not None
            self.scheduler.trigger()
            raise errors.NoDueWorkflowsError()  # this pass does not see it
        return await super().get_due_scheduled_workflow()

    async def get_next_scheduled_workflow(self) -> Schedule:
        self.passes += 1
        return await super().get_next_scheduled_workflow()


@contextlib.asynccontextmanager
async def _running(scheduler: WorkflowScheduler) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_trigger_during_a_pass_causes_another_pass() -> None:
    driver = _TriggeringDriver()
    woken = _Counter()
    scheduler = WorkflowScheduler(
        driver,
        on_enqueued=woken,
        max_wakeup_interval=3600.0,  # without the trigger the loop would sleep an hour
        late_warning_threshold=600.0,
    )
    driver.scheduler = scheduler
    async with driver, _running(scheduler) as task:
        await eventually(lambda: woken.calls == 1, what="the schedule created mid-pass ran")
        assert driver.passes >= 2
        assert not task.done()


class _CountingDriver(MemoryDriver):
    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    async def get_next_scheduled_workflow(self) -> Schedule:
        self.passes += 1
        return await super().get_next_scheduled_workflow()


async def test_a_trigger_from_another_thread_wakes_the_idle_loop() -> None:
    driver = _CountingDriver()
    scheduler = WorkflowScheduler(
        driver, on_enqueued=_Counter(), max_wakeup_interval=3600.0, late_warning_threshold=10.0
    )
    async with driver, _running(scheduler):
        await eventually(lambda: driver.passes == 1, what="the first pass")
        thread = threading.Thread(target=scheduler.trigger)
        thread.start()
        thread.join()
        await eventually(lambda: driver.passes == 2, what="a pass after the trigger")


async def test_a_trigger_before_run_is_harmless() -> None:
    driver = _CountingDriver()
    scheduler = WorkflowScheduler(
        driver, on_enqueued=_Counter(), max_wakeup_interval=3600.0, late_warning_threshold=10.0
    )

    scheduler.trigger()  # nothing to wake yet: dropped, and no pass runs
    assert driver.passes == 0

    # run() starts with a pass anyway, and later triggers still wake the idle loop
    async with driver, _running(scheduler) as task:
        await eventually(lambda: driver.passes == 1, what="the first pass")
        scheduler.trigger()
        await eventually(lambda: driver.passes == 2, what="a pass after a trigger while running")
        assert not task.done()


class _FailingDriver(MemoryDriver):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def get_due_scheduled_workflow(self) -> tuple[Schedule, ScheduledWorkflowCompleter]:
        self.attempts += 1
        if self.attempts <= 3:
            raise errors.DriverError("database unavailable")
        return await super().get_due_scheduled_workflow()


async def test_driver_errors_are_logged_and_the_loop_keeps_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = _FailingDriver()
    woken = _Counter()
    scheduler = WorkflowScheduler(
        driver, on_enqueued=woken, max_wakeup_interval=0.01, late_warning_threshold=600.0
    )
    async with driver:
        await _create(driver, HOURLY, times.utcnow() - timedelta(minutes=1))
        with caplog.at_level(logging.ERROR, logger="cereal.engine.scheduler"):
            async with _running(scheduler) as task:
                await eventually(lambda: woken.calls == 1, what="a pass after the outage")
                assert not task.done()

    failures = [record for record in caplog.records if "pass failed" in record.getMessage()]
    assert len(failures) == 3
    assert all(record.exc_info is not None for record in failures)


async def test_run_pass_lets_a_driver_error_through() -> None:
    driver = _FailingDriver()

    with pytest.raises(errors.DriverError):
        await _scheduler(driver, _now()).run_pass()


# ---- late or missed: the catch-up window ------------------------------------------------------


async def _first_pass_of_a_started_scheduler(
    driver: MemoryDriver,
    now: datetime,
    woken: _Counter,
    *,
    cap: float,
    late: float,
    reported: Callable[[], bool],
    what: str,
) -> None:
    """Run the loop (which notes its start at ``now``) until schedule "i" was processed and
    ``reported`` holds.

    The pass reports (wakeup, log line) after its transaction committed, so the
    stored due time moving is not enough: the loop runs on until the report the
    test asserts was made.
    """
    scheduler = _scheduler(driver, now, woken, cap=cap, late=late)

    async def processed() -> bool:
        return (await driver.get_workflow_schedule("wf", "i")).next_due_at > now

    async with _running(scheduler):
        await eventually(processed, what="the due schedule processed")
        await eventually(reported, what=what)


async def test_a_due_time_just_before_the_start_is_late_and_runs(memory: MemoryDriver) -> None:
    # Given a due time 2 s before the scheduler starts, within max_wakeup + late (3 s)
    now = _now()
    await _create(memory, HOURLY, now - timedelta(seconds=2))
    woken = _Counter()

    # When the scheduler starts / Then the run starts despite a catch-up window of 0
    await _first_pass_of_a_started_scheduler(
        memory, now, woken, cap=1.0, late=2.0, reported=lambda: woken.calls >= 1, what="a wakeup"
    )
    assert woken.calls == 1
    assert (await memory.get_workflow_instance("wf", "i")).is_running()


async def test_a_due_time_missed_before_the_start_does_not_run_with_window_0(
    memory: MemoryDriver, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a due time 5 minutes before the scheduler starts (so no scheduler ran then)
    now = _now()
    await _create(memory, HOURLY, now - timedelta(minutes=5))
    woken = _Counter()

    # When the scheduler starts
    def miss_logged() -> bool:
        return any("not caught up" in record.getMessage() for record in caplog.records)

    with caplog.at_level(logging.INFO, logger="cereal.engine.scheduler"):
        await _first_pass_of_a_started_scheduler(
            memory, now, woken, cap=1.0, late=2.0, reported=miss_logged, what="the miss logged"
        )

    # Then no run started, the schedule moved on, and the miss is logged (not warned as late);
    # a missed run's report ends with that line, so no wakeup can follow it
    schedule = await memory.get_workflow_schedule("wf", "i")
    assert woken.calls == 0
    assert schedule.next_due_at == next_after(HOURLY, now, inclusive=False)
    assert schedule.last_enqueued_at is None
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await memory.get_workflow_instance("wf", "i")
    messages = [record.getMessage() for record in caplog.records]
    assert any("not caught up" in message for message in messages)
    assert not any("late" in message for message in messages)


async def test_a_rule_without_dtstart_is_caught_up_by_any_window(memory: MemoryDriver) -> None:
    # Given a rule without DTSTART (its occurrences count from each evaluation), missed
    # for three hours, with a one-minute window
    now = _now()
    await memory.create_workflow_schedule(
        "wf", "i", None, True, "FREQ=HOURLY", now - timedelta(hours=3), catch_up_window=60.0
    )
    woken = _Counter()

    # When the scheduler starts / Then one run starts
    await _first_pass_of_a_started_scheduler(
        memory, now, woken, cap=1.0, late=2.0, reported=lambda: woken.calls >= 1, what="a wakeup"
    )
    assert woken.calls == 1
