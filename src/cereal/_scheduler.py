"""The scheduler loop: enqueue every due schedule, advance it, sleep until the next one.

Each pass locks due schedules one at a time through the driver and, per
schedule, enqueues its instance and stores the next due time in one step
(:meth:`~cereal.drivers.base.ScheduledWorkflowCompleter.enqueue_and_update`).
Missed runs are not caught up: however late a schedule is processed, one run
is enqueued and the next due time is computed from the current time.

Unlike the Go original, a :meth:`WorkflowScheduler.trigger` that arrives while
a pass runs is kept and causes another pass, so a schedule created or changed
during a pass is never left waiting for the next wakeup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from cereal import _time, errors, recurrence
from cereal._waits import wait_for_event
from cereal.drivers.base import Driver, ScheduledWorkflowCompleter
from cereal.models import Schedule
from cereal.observe import Observer

logger = logging.getLogger(__name__)

_MIN_SLEEP = 0.05
"""Shortest sleep between passes, so a due time the driver does not yet see as
due (clock skew, or a due time equal to the driver's now) cannot spin the loop."""

_FIRST_BACKOFF = 0.5
"""Seconds slept after the first failed pass; doubled per failure, capped."""


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
        clock: Callable[[], datetime] = _time.utcnow,
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

    async def run(self) -> None:
        """Run passes until stopped or cancelled: at once, then on a trigger or after a sleep.

        A failing pass (for example :class:`~cereal.errors.DriverError`) is
        logged and retried after a growing pause; it never ends the loop.
        """
        self._loop = asyncio.get_running_loop()
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
        try:
            upcoming = await self._driver.get_next_scheduled_workflow()
        except errors.NoScheduledWorkflowsError:
            return self._max_wakeup
        wait = (upcoming.next_due_at - self._clock()).total_seconds()
        return max(min(wait, self._max_wakeup), min(_MIN_SLEEP, self._max_wakeup))

    async def _process(self, schedule: Schedule, completer: ScheduledWorkflowCompleter) -> None:
        extra = {
            "workflow_name": schedule.workflow_name,
            "instance_name": schedule.instance_name,
        }
        async with completer:
            now = self._clock()
            late = (now - schedule.next_due_at).total_seconds()
            if late > self._late_threshold:
                logger.warning(
                    "schedule %s/%s is %.1f s late",
                    schedule.workflow_name,
                    schedule.instance_name,
                    late,
                    extra={"event": "schedule_late", **extra},
                )
            try:
                # Strictly after both now and the due time being served: the run
                # enqueued now covers them, so the same occurrence never fires twice.
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
            enqueued = await completer.enqueue_and_update(
                next_due_at=next_due or now, enabled=next_due is not None
            )
        if self._observer is not None:
            self._observer.schedule_fired(
                schedule.workflow_name, schedule.instance_name, lateness=late, enqueued=enqueued
            )
        if next_due is None:
            logger.info(
                "schedule %s/%s has no more occurrences; disabled",
                schedule.workflow_name,
                schedule.instance_name,
                extra={"event": "schedule_exhausted", **extra},
            )
        if not enqueued:
            logger.info(
                "schedule %s/%s skipped: its previous run is still running, "
                "consider a longer interval",
                schedule.workflow_name,
                schedule.instance_name,
                extra={"event": "schedule_skipped", **extra},
            )
            return
        logger.info(
            "schedule %s/%s enqueued a run",
            schedule.workflow_name,
            schedule.instance_name,
            extra={"event": "schedule_enqueued", **extra},
        )
        try:
            self._on_enqueued()
        except Exception:  # a broken wakeup must not stop the schedules
            logger.exception("on_enqueued callback failed", extra={"event": "schedule_wakeup"})
