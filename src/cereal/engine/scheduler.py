"""The scheduler loop: enqueue every due schedule, advance it, sleep until the next one.

Each pass locks due schedules one at a time through the driver and, per
schedule, asks for a run under the schedule's overlap policy and stores the
next due time in one step
(:meth:`~cereal.drivers.base.ScheduledWorkflowCompleter.run_and_advance`).
The driver also hands out schedules whose buffered run (``buffer_one``,
``cancel_other``) can start because the live instance has ended; those start
without moving the due time.

Late and missed runs. However late a due time is processed, at most one run
is started for it and the next due time is computed from the current time
(intermediate occurrences are dropped). A due time that passed while this
scheduler ran (or at most ``max_wakeup_interval + late_warning_threshold``
before it started) is merely late: it runs, as in Go. One that passed earlier
than that was *missed while no Manager ran* (a running scheduler would have
taken it): it runs only if the rule had an occurrence within the schedule's
``catch_up_window`` of now (default 0: never).

Unlike the Go original, a :meth:`WorkflowScheduler.trigger` that arrives while
a pass runs is kept and causes another pass, so a schedule created or changed
during a pass is never left waiting for the next wakeup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from cereal import errors, recurrence
from cereal.checks import times
from cereal.drivers.base import Driver, ScheduledWorkflowCompleter
from cereal.engine.waits import wait_for_event
from cereal.models import RunOutcome, Schedule
from cereal.observe import Observer

logger = logging.getLogger(__name__)

_MIN_SLEEP = 0.05
"""Shortest sleep between passes, so a due time the driver does not yet see as
due (clock skew, or a due time equal to the driver's now) cannot spin the loop."""

_FIRST_BACKOFF = 0.5
"""Seconds slept after the first failed pass; doubled per failure, capped."""

_WAITING_RUN_POLL = 1.0
"""Longest sleep while a buffered run waits: a Manager wakes its own scheduler when
an instance ends, but an end elsewhere (a kill from the CLI) is only polled for."""

REPLACED_ERROR = "killed: replaced by a new run of its schedule (overlap terminate_other)"
"""The error text of an instance killed by a ``terminate_other`` schedule."""


class WorkflowScheduler:
    """Runs due schedules of one driver; one per Manager.

    Several schedulers (in one or many processes) may share a driver: the
    driver locks each due schedule for one of them.

    Args:
        driver: the storage; it decides which schedules are due.
        on_enqueued: called (from the loop) after a run was enqueued, to wake
            the workflow runner.
        max_wakeup_interval: the longest sleep between passes, in seconds.
        late_warning_threshold: warn when a schedule is processed more than
            this many seconds after its due time.
        clock: the current time (aware UTC); injectable for tests.
        observer: told of each processed schedule's lateness and outcome.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        on_enqueued: Callable[[], None],
        max_wakeup_interval: float,
        late_warning_threshold: float,
        clock: Callable[[], datetime] = times.utcnow,
        observer: Observer | None = None,
    ) -> None:
        self._driver = driver
        self._on_enqueued = on_enqueued
        self._max_wakeup = max_wakeup_interval
        self._late_threshold = late_warning_threshold
        self._clock = clock
        self._observer = observer
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        # Set when run() starts; a due time long before it was missed while no scheduler ran.
        self._running_since: datetime | None = None
        # Whether the last pass saw a buffered run waiting (anywhere in the store).
        self._runs_waiting = False

    def stop(self) -> None:
        """End :meth:`run` after the pass in hand (call on the loop's thread).

        The Manager also cancels the loop; this flag ends it even when a
        cancellation is lost inside a storage call that swallows it.
        """
        self._stopping = True
        self._wakeup.set()

    def trigger(self) -> None:
        """Ask for a pass now; never blocks and may be called from any thread.

        A trigger that arrives during a pass causes one more pass after it. A
        trigger while :meth:`run` is not running is dropped: ``run`` starts
        with a pass anyway.
        """
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wakeup.set)

    def instance_ended(self) -> None:
        """An instance ended in this process: run a pass if a buffered run may be waiting for it.

        Only while the last pass saw a waiting run, so finishing instances costs
        nothing otherwise; a run buffered since then is found by the short
        poll that a waiting run causes (in the process that buffered it).
        """
        if self._runs_waiting:
            self.trigger()

    async def run(self) -> None:
        """Run passes until stopped or cancelled: at once, then on a trigger or after a sleep.

        A failing pass (for example :class:`~cereal.errors.DriverError`) is
        logged and retried after a growing pause; it never ends the loop.
        """
        self._loop = asyncio.get_running_loop()
        self._running_since = self._clock()
        failures = 0
        try:
            while not self._stopping:
                # Cleared before the pass: a trigger during the pass stays set.
                self._wakeup.clear()
                try:
                    delay = await self.run_pass()
                    failures = 0
                except Exception:
                    failures += 1
                    delay = min(self._max_wakeup, _FIRST_BACKOFF * 2 ** (failures - 1))
                    logger.exception(
                        "scheduler pass failed; retrying in %.1f s",
                        delay,
                        extra={"event": "scheduler_pass_failed"},
                    )
                await wait_for_event(self._wakeup, delay)
        finally:
            self._loop = None

    async def run_pass(self) -> float:
        """Process every due schedule, then return how long to sleep, in seconds.

        The sleep lasts until the soonest enabled schedule is due, at most
        ``max_wakeup_interval``; with no enabled schedule it is the maximum.

        Raises:
            DriverError: the storage failed; schedules already processed stay done.
        """
        while True:
            try:
                schedule, completer = await self._driver.get_due_scheduled_workflow()
            except errors.NoDueWorkflowsError:
                break
            await self._process(schedule, completer)
        longest = self._max_wakeup
        self._runs_waiting = await self._driver.has_waiting_schedule_runs()
        if self._runs_waiting:
            longest = min(longest, _WAITING_RUN_POLL)
        try:
            upcoming = await self._driver.get_next_scheduled_workflow()
        except errors.NoScheduledWorkflowsError:
            return longest
        wait = (upcoming.next_due_at - self._clock()).total_seconds()
        return max(min(wait, longest), min(_MIN_SLEEP, longest))

    async def _process(self, schedule: Schedule, completer: ScheduledWorkflowCompleter) -> None:
        extra = {
            "workflow_name": schedule.workflow_name,
            "instance_name": schedule.instance_name,
        }
        async with completer:
            if not completer.due:
                # Only its buffered run can start now: the due time stays as it is.
                outcome = await completer.run_and_advance(run=True, kill_error=REPLACED_ERROR)
                self._report(schedule, outcome, extra)
                return
            now = self._clock()
            try:
                run = await self._should_run(schedule, now)
                # Strictly after both now and the due time being served: the run
                # started now covers them, so the same occurrence never fires twice.
                after = max(now, schedule.next_due_at)
                next_due = await recurrence.next_after_off_loop(
                    schedule.recurrence, after, inclusive=False
                )
            except errors.InvalidScheduleError as exc:
                logger.warning(
                    "disabling schedule %s/%s: %s",
                    schedule.workflow_name,
                    schedule.instance_name,
                    exc,
                    extra={"event": "schedule_invalid", **extra},
                )
                await completer.disable()
                return
            late = (now - schedule.next_due_at).total_seconds()
            if run and late > self._late_threshold:
                logger.warning(
                    "schedule %s/%s is %.1f s late",
                    schedule.workflow_name,
                    schedule.instance_name,
                    late,
                    extra={"event": "schedule_late", **extra},
                )
            outcome = await completer.run_and_advance(
                run=run,
                next_due_at=next_due or now,
                enabled=next_due is not None,
                kill_error=REPLACED_ERROR,
            )
        if self._observer is not None:
            self._observer.schedule_fired(
                schedule.workflow_name,
                schedule.instance_name,
                lateness=late,
                enqueued=outcome.started,
            )
        if next_due is None:
            logger.info(
                "schedule %s/%s has no more occurrences; disabled",
                schedule.workflow_name,
                schedule.instance_name,
                extra={"event": "schedule_exhausted", **extra},
            )
        self._report(schedule, outcome, extra)

    async def _should_run(self, schedule: Schedule, now: datetime) -> bool:
        """Whether the due time being served starts a run (see the module docstring).

        Raises:
            InvalidScheduleError: the stored rule no longer parses.
        """
        since = self._running_since
        if since is None:
            return True  # a pass outside run(): nothing is known about earlier schedulers
        grace = self._max_wakeup + self._late_threshold
        if (since - schedule.next_due_at).total_seconds() <= grace:
            return True  # late, not missed
        window = schedule.catch_up_window
        if window <= 0:
            return False
        earliest = now - timedelta(seconds=window)
        if schedule.next_due_at >= earliest:
            return True
        latest = await recurrence.next_after_off_loop(schedule.recurrence, earliest)
        return latest is not None and latest <= now

    def _report(self, schedule: Schedule, outcome: RunOutcome, extra: dict[str, str]) -> None:
        names = (schedule.workflow_name, schedule.instance_name)
        if outcome is RunOutcome.MISSED:
            logger.info(
                "schedule %s/%s: a run missed while no Manager ran is not caught up "
                "(outside catch_up_window of %g s)",
                *names,
                schedule.catch_up_window,
                extra={"event": "schedule_missed", **extra},
            )
            return
        if outcome is RunOutcome.SKIPPED:
            logger.info(
                "schedule %s/%s skipped: its previous run is still running, "
                "consider a longer interval",
                *names,
                extra={"event": "schedule_skipped", **extra},
            )
            return
        if outcome in (RunOutcome.BUFFERED, RunOutcome.CANCELLING):
            logger.info(
                "schedule %s/%s: a run waits for the live one to end (%s)",
                *names,
                outcome,
                extra={"event": f"schedule_{outcome}", **extra},
            )
            return
        logger.info(
            "schedule %s/%s enqueued a run%s",
            *names,
            " (the live one was killed)" if outcome is RunOutcome.REPLACED else "",
            extra={"event": "schedule_enqueued", **extra},
        )
        try:
            self._on_enqueued()
        except Exception:  # a broken wakeup must not stop the schedules
            logger.exception("on_enqueued callback failed", extra={"event": "schedule_wakeup"})
