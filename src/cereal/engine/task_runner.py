"""Task runners: one per registered task name.

A runner claims ready tasks (in batches, up to its free ``workers`` slots
and, while its tasks are quick, as many again that start as slots free: see
:mod:`cereal.engine.claimed_ahead`; through the Manager-wide dequeue limit),
runs each with a heartbeat that keeps its lease, enforces the timeout and
reports the outcome. It polls at its interval with jitter and wakes at once
when work is announced. A task whose lease is lost (its workflow ended, it
expired) is cancelled and its result dropped. A failed attempt (raise,
timeout) with attempts left under the task's stored retry policy is queued
again after its backoff; the workflow sees only the last outcome. On stop,
running tasks (and tasks claimed ahead, as slots free) get a grace period,
then they are cancelled and handed back to the queue at once for any worker
(after three hand-backs of one task the driver reports it ``LOST``; a task
claimed but never started is handed back without counting).

A plain executor cannot be interrupted: after a timeout or a lost lease its
thread runs on, unowned. Such stray threads are counted; while a runner has
``max_stray_threads`` of them it claims nothing (and says so at WARNING), so
a task that always hangs cannot pile up threads without bound.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cereal import errors, values
from cereal.checks.validation import usable_traceparent
from cereal.drivers.base import ClaimTerms, Driver, TaskCompleter
from cereal.engine import failures
from cereal.engine.claimed_ahead import ClaimedAhead, TaskDurations
from cereal.engine.task_promises import Promise, TaskPromises
from cereal.engine.waits import ClaimPacer, wait_all_or, wait_for_event
from cereal.executors import Task, TaskFunction, is_async_callable, start_in_thread
from cereal.models import FailureDetails, TaskData, TaskStatus
from cereal.observe import Observer, TaskObservation, note_task_retried
from cereal.retry import load_policy

logger = logging.getLogger(__name__)

_BACKOFF_MAX = 5.0
_RECORD_ATTEMPTS = 6

CLAIM_INTERVAL = 0.005
"""Least seconds between two claims of one runner under load (see :class:`ClaimPacer`)."""


@dataclass(frozen=True)
class _Outcome:
    """How a run ended: ``error`` text for a failure, else the encoded ``result``.

    ``failure`` describes the exception when the executor raised one, and
    ``exception`` is that exception (a retry policy's ``non_retryable`` test);
    both are ``None`` for a timeout. ``retryable`` is False for a failure no
    retry can mend (an unusable result).
    """

    result: bytes | None = None
    error: str | None = None
    failure: FailureDetails | None = None
    exception: BaseException | None = None
    retryable: bool = True


class _Run:
    """Book-keeping of one running task."""

    def __init__(self, data: TaskData, completer: TaskCompleter) -> None:
        self.data = data
        self.task = Task(data)
        self.completer = completer
        self.abandoned = False
        self.thread_running = False  # a plain executor's thread has not ended yet
        self.stray = False  # ... and the runner has stopped waiting for it


class TaskRunner:
    """Claims and runs the tasks of one name."""

    def __init__(
        self,
        driver: Driver,
        task_name: str,
        function: TaskFunction,
        *,
        workers: int,
        timeout: float | None,
        poll_interval: float,
        poll_jitter: float,
        heartbeat_interval: float,
        task_expiry: float,
        dequeue_slots: asyncio.Semaphore,
        max_value_bytes: int,
        on_task_finished: Callable[[], None],
        max_stray_threads: int | None = None,
        retry_policy: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._driver = driver
        self._name = task_name
        self._function = function
        self._is_async = is_async_callable(function)
        self._workers = workers
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._poll_jitter = poll_jitter
        self._heartbeat_interval = heartbeat_interval
        self._task_expiry = task_expiry
        self._dequeue_slots = dequeue_slots
        self._max_value_bytes = max_value_bytes
        self._on_task_finished = on_task_finished
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._abandoning = False  # the grace period is over: start nothing more
        self._runs: dict[asyncio.Task[None], _Run] = {}
        self._ahead = ClaimedAhead(heartbeat_interval, task_name)
        self._durations = TaskDurations()
        self._failures = 0
        self._strays = 0
        self._max_strays = workers if max_stray_threads is None else max_stray_threads
        self._cap_reported = False
        self._pacer = ClaimPacer(CLAIM_INTERVAL)
        self._promises = TaskPromises(
            on_owed=self._wake_unless_stopping,
            hand_on=self._hand_on,
            claim_terms=self._claim_terms,
            take_claimed=self._take_claimed,
        )
        self._retry_policy = retry_policy
        self._observer = observer

    @property
    def running(self) -> int:
        """How many tasks this runner is executing now."""
        return len(self._runs)

    def wake(self) -> None:
        """Look for tasks now (call on the loop's thread)."""
        self._wakeup.set()

    def promise(self, count: int) -> Promise | None:
        """Hold slots for ``count`` tasks a local commit is adding, if they fit with one spare.

        Call on the loop's thread. The store then announces them to this
        process only; see :mod:`cereal.engine.task_promises`.
        """
        if self._stopping or self._strays >= self._max_strays:
            return None
        # a runner with tasks waiting claimed ahead claims nothing until they start
        return self._promises.promise(count, 0 if len(self._ahead) else self._room())

    def _claim_terms(self, wanted: int) -> ClaimTerms | None:
        """Terms for a store to claim up to ``wanted`` tasks for this runner in its commit.

        Only while the runner claims, has room and no task waits claimed ahead
        (then its own claims would wait too); at most its room. A claim of the
        runner's own in flight may fill the same room: the surplus waits
        claimed ahead, heartbeated, as tasks claimed ahead do (refusing here
        instead would lose the commit claim whenever the two meet).
        """
        if self._stopping or self._strays >= self._max_strays or self._ahead:
            return None
        room = min(wanted, self._room())
        if room <= 0:
            return None
        return ClaimTerms(self._name, room, self._task_expiry, self._retry_policy)

    async def _take_claimed(self, claimed: list[tuple[TaskData, TaskCompleter]]) -> None:
        """Start tasks a store claimed for this runner in a commit (as its own claim's).

        Once a stop began nothing of theirs starts: they are handed back
        uncounted, as the tasks of a claim in flight when the stop began are.
        Starting them happens without a pause, so a failure or cancel of this
        call means none of them started.
        """
        if not claimed:
            return
        if self._stopping:
            await self._abandon_claimed(
                claimed, "claimed in a commit as stop began, not started", logging.INFO
            )
            return
        self._take(claimed)

    def _hand_on(self) -> None:
        """Owed tasks this runner cannot take now: announce them to other processes."""
        self._driver.announce_elsewhere("task", self._name)

    async def run(self) -> None:
        """Poll and claim until :meth:`stop_claiming`."""
        try:
            while not self._stopping:
                await self._fill()
                await wait_for_event(self._wakeup, self._next_sleep())
                self._wakeup.clear()
        finally:
            # however the loop ended (a crash too), nothing more is promised to it;
            # tasks claimed ahead still start as slots free (a stop runs them in its grace)
            self._promises.close()

    def _next_sleep(self) -> float:
        if self._failures:
            return min(_BACKOFF_MAX, 0.1 * 2.0 ** min(self._failures, 6))
        return max(0.001, self._poll_interval - random.random() * self._poll_jitter)

    def _at_thread_cap(self) -> bool:
        if self._strays < self._max_strays:
            self._cap_reported = False
            return False
        if not self._cap_reported:  # once per episode, not once per poll
            self._cap_reported = True
            logger.warning(
                "not claiming %r tasks: %d executor threads still run after their task "
                "timed out or was lost (limit %d); claiming resumes as they end",
                self._name,
                self._strays,
                self._max_strays,
                extra={"event": "task_thread_cap", "task_name": self._name},
            )
        return True

    async def _fill(self) -> None:
        # tasks claimed ahead start first; the next claim waits until they all have
        self._start_claimed()
        while not self._stopping and self._room() > 0:
            if self._at_thread_cap():
                self._promises.cannot_claim()
                return
            if self._ahead:
                return
            await self._pacer.pace()
            room = self._room()
            try:
                async with self._dequeue_slots:
                    if self._stopping:
                        return
                    owed = self._promises.claim_started()
                    # the lease carries this Manager's expiry: other sweepers judge by it
                    claimed = await self._claim(room)
            except errors.CerealError:
                self._failures += 1
                logger.warning("claiming %r tasks failed; backing off", self._name, exc_info=True)
                return
            self._failures = 0
            self._promises.claim_ended(owed, filled=len(claimed) >= room)
            if self._stopping:
                # stop began while this claim was in flight: nothing may start now, and
                # waiting for the lease to expire would hold the workflows up needlessly
                # routine for a busy worker's stop, and uncounted: INFO, not WARNING
                await asyncio.shield(
                    self._abandon_claimed(
                        claimed, "claimed as stop began, not started", logging.INFO
                    )
                )
                return
            self._take(claimed)
            if len(claimed) < room:
                # the queue is drained for now: asking again would almost always come
                # back empty; new work arrives with a wakeup, due delayed work by polling
                return

    def _room(self) -> int:
        """How many tasks a claim may take now.

        The free slots and, while tasks are quick, as many again as ``workers``
        to wait for a slot (see :mod:`cereal.engine.claimed_ahead`).
        """
        ahead = self._workers if self._durations.quick else 0
        return self._workers + ahead - len(self._runs) - len(self._ahead)

    def _take(self, claimed: list[tuple[TaskData, TaskCompleter]]) -> None:
        """Start newly claimed tasks in free slots; the rest wait claimed ahead, oldest first."""
        if not self._ahead:
            # nothing waits before them: start what fits now, without handing the
            # tasks to the claimed-ahead keeper only to take them straight back
            started = 0
            while started < len(claimed) and self._may_start():
                self._start(*claimed[started])
                started += 1
            claimed = claimed[started:]
        if claimed:
            self._ahead.add(claimed)
            self._start_claimed()

    def _may_start(self) -> bool:
        """A slot is free and a claimed task may start in it now."""
        return (
            not self._abandoning
            and self._strays < self._max_strays
            and len(self._runs) < self._workers
        )

    def _start_claimed(self) -> None:
        """Start claimed tasks, oldest first, while a slot is free.

        Not at the stray-thread cap (they wait, heartbeated, until a stray
        thread ends), nor once the grace period of a stop is over.
        """
        while self._may_start():
            claimed = self._ahead.pop()
            if claimed is None:
                return
            self._start(*claimed)

    async def _claim(self, free: int) -> list[tuple[TaskData, TaskCompleter]]:
        if self._retry_policy is None:  # a driver predating retries takes no policy
            return await self._driver.dequeue_tasks(self._name, free, task_expiry=self._task_expiry)
        return await self._driver.dequeue_tasks(
            self._name, free, task_expiry=self._task_expiry, retry_policy=self._retry_policy
        )

    def _start(self, data: TaskData, completer: TaskCompleter) -> None:
        run = _Run(data, completer)
        # without instrumentation the run is one coroutine, with nothing added
        observer = self._observer
        work = self._execute(run) if observer is None else self._execute_observed(run, observer)
        job = asyncio.create_task(work, name=f"cereal-task-{self._name}")
        self._runs[job] = run
        job.add_done_callback(self._finished)

    def _finished(self, job: asyncio.Task[None]) -> None:
        self._runs.pop(job, None)
        if not job.cancelled() and job.exception() is not None:
            logger.error("task runner crashed", exc_info=job.exception())
        self._on_task_finished()
        self._start_claimed()
        if not self._stopping:
            self._wakeup.set()  # a slot is free: look for more work now

    async def _execute_observed(self, run: _Run, observer: Observer) -> None:
        with observer.task(run.task.metadata) as observation:
            # the result carries the run's span: its on_task_complete nests under it
            run.completer.result_traceparent = usable_traceparent(observation.traceparent)
            await self._execute(run, observation)

    async def _execute(self, run: _Run, observation: TaskObservation | None = None) -> None:
        task, completer = run.task, run.completer
        began = time.monotonic()
        if self._is_async:
            work: asyncio.Future[object] = asyncio.ensure_future(self._function(task))
        else:
            run.thread_running = True
            work = start_in_thread(
                self._function,
                task,
                name=f"cereal-task-{self._name}",
                on_exit=lambda: self._thread_ended(run),
            )
        try:
            outcome = await self._supervise(work, run)
            self._durations.note(time.monotonic() - began)
        finally:
            # Given up on (timeout, lost, stop): its thread runs on unowned. A thread
            # that delivered its outcome is only returning, not a stray.
            if run.thread_running and (work.cancelled() or not work.done()):
                run.stray = True
                self._strays += 1
        if outcome is None:
            return
        seconds = time.monotonic() - began
        delay = self._retry_delay(run.data, outcome)
        if outcome.error is None:
            _log_succeeded(task, seconds)
        else:
            _log_failed(task, outcome, seconds, delay)
        if observation is not None:
            failed = outcome.error is not None
            observation.status = TaskStatus.FAILED if failed else TaskStatus.SUCCESS
            observation.error = outcome.error
            observation.error_type = None if outcome.failure is None else outcome.failure.error_type
        await self._record(run.data, completer, outcome, delay)

    def _wake_unless_stopping(self) -> None:
        if not self._stopping:
            self._wakeup.set()

    def _thread_ended(self, run: _Run) -> None:
        run.thread_running = False
        if run.stray:
            run.stray = False
            self._strays -= 1
            if not self._stopping:
                self._wakeup.set()  # below the cap again: claim now

    def _retry_delay(self, task: TaskData, outcome: _Outcome) -> float | None:
        """Seconds until the task's next attempt, or ``None`` when this outcome is final."""
        if outcome.error is None or not outcome.retryable:
            return None
        try:
            policy = load_policy(task.retry_policy)
        except ValueError as exc:
            logger.warning(
                "task %r (id %s) is not retried: %s",
                self._name,
                task.metadata.task_id,
                exc,
                extra={"event": "invalid_retry_policy", "task_id": task.metadata.task_id},
            )
            return None
        attempt = task.metadata.attempt
        if not policy.retries(outcome.exception, attempt):
            return None
        return policy.backoff(attempt, random.uniform(-1.0, 1.0))

    async def _record(
        self, task: TaskData, completer: TaskCompleter, outcome: _Outcome, delay: float | None
    ) -> None:
        """Report the outcome (a retry ``delay`` seconds from now, when not ``None``).

        Recording is repeated while the storage is unavailable; that is safe:
        completion presents the lease, so if an attempt did commit before its
        connection dropped, the repeat gets ``TaskLostError``.
        """
        for attempt in range(_RECORD_ATTEMPTS):
            try:
                if outcome.error is None:
                    await completer.succeed(outcome.result)
                elif delay is not None:
                    await completer.retry(outcome.error, delay)
                    meta = task.metadata
                    note_task_retried(self._observer, meta.workflow_name, meta.task_name)
                    # the next attempt may be this runner's: look again when it is due
                    asyncio.get_running_loop().call_later(delay, self._wake_unless_stopping)
                elif outcome.failure is not None:
                    await completer.fail_with_details(outcome.failure)
                else:
                    await completer.fail(outcome.error)
                return
            except errors.TaskLostError:
                logger.debug("task %r lost before its outcome was recorded; dropped", self._name)
                return
            except errors.CerealError:
                last = attempt == _RECORD_ATTEMPTS - 1
                logger.warning(
                    "recording a %r outcome failed%s",
                    self._name,
                    "; giving up, the task will expire as LOST" if last else "; retrying",
                    exc_info=True,
                )
                if not last:
                    await asyncio.sleep(min(_BACKOFF_MAX, 0.1 * 2.0**attempt))

    async def _supervise(self, work: asyncio.Future[object], run: _Run) -> _Outcome | None:
        """Wait for the work while heartbeating; ``None`` when the outcome is dropped."""
        loop = asyncio.get_running_loop()
        deadline = None if self._timeout is None else loop.time() + self._timeout
        try:
            while not work.done():
                # beat on the process-wide tick (a multiple of the interval on the loop's
                # clock): every running task of this process beats at the same moment,
                # and the driver joins those beats into one statement
                wait = self._heartbeat_interval - loop.time() % self._heartbeat_interval
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - loop.time()))
                await asyncio.wait({work}, timeout=wait)
                if work.done():
                    break
                if deadline is not None and loop.time() >= deadline:
                    self._cancel(work, run)
                    return _Outcome(error=f"task timed out after {self._timeout:g} seconds")
                if not await self._heartbeat(run):
                    self._cancel(work, run)
                    return None
        except asyncio.CancelledError:
            self._cancel(work, run)
            if run.abandoned:
                await self._hand_back(run.data, run.completer)
                return None
            raise
        return self._outcome(work)

    def _outcome(self, work: asyncio.Future[object]) -> _Outcome:
        if work.cancelled():
            return _Outcome(error="task was cancelled")
        failure = work.exception()
        if failure is not None:
            if not isinstance(failure, Exception):
                raise failure
            described = failures.describe(failure)
            return _Outcome(error=described.error, failure=described, exception=failure)
        try:
            encoded = values.encode(
                work.result(), where=f"task {self._name!r} result", max_bytes=self._max_value_bytes
            )
        except (TypeError, ValueError) as exc:
            return _Outcome(error=values.storable_text(str(exc)), retryable=False)
        return _Outcome(result=encoded)

    async def _heartbeat(self, run: _Run) -> bool:
        try:
            await run.completer.heartbeat()
        except errors.TaskLostError:
            logger.debug("task %r lost its lease; cancelling it", self._name)
            return False
        except errors.CerealError:
            logger.warning("heartbeat of a %r task failed", self._name, exc_info=True)
        return True

    @staticmethod
    def _cancel(work: asyncio.Future[object], run: _Run) -> None:
        run.task.cancel()
        work.cancel()

    async def _hand_back(
        self, task: TaskData, completer: TaskCompleter, *, started: bool = True
    ) -> None:
        """Give the task back to the queue (a stop); say so if it was reported LOST instead.

        A task that never ``started`` is handed back uncounted: only a task
        that ran can have outlived the grace period the limit guards against.
        """
        try:
            queued = await (completer.hand_back() if started else completer.hand_back_unstarted())
        except errors.TaskLostError:
            return
        except errors.CerealError:
            # the lease stays: the task comes back through expiry (and its retry policy)
            logger.warning("handing back a %r task failed", self._name, exc_info=True)
            return
        if not queued:
            logger.warning(
                "task %s (id %s) was handed back at stop too often; its workflow sees it LOST",
                task.metadata.task_name,
                task.metadata.task_id,
                extra={"event": "task_hand_back_limit", "task_name": task.metadata.task_name},
            )

    async def _abandon_claimed(
        self,
        claimed: list[tuple[TaskData, TaskCompleter]],
        why: str,
        level: int = logging.WARNING,
    ) -> None:
        if not claimed:
            return
        _log_handed_back(why, [data for data, _ in claimed], level)
        await asyncio.gather(
            *(self._hand_back(data, completer, started=False) for data, completer in claimed)
        )

    def stop_claiming(self) -> None:
        """Claim nothing more; running tasks go on, and so do tasks claimed ahead.

        Tasks owed to this runner are handed on.
        """
        self._stopping = True
        self._promises.close()
        self._wakeup.set()

    async def wait_running(self, deadline: float, cut: asyncio.Future[Any]) -> None:
        """Wait for the running tasks to end, until the loop's clock reaches ``deadline``.

        Tasks claimed ahead start as slots free meanwhile (they are quick, and
        already this worker's: handing them back would only delay them), so
        this waits for them too.
        ``cut`` done ends the wait at once (the grace period was cut short).
        """
        loop = asyncio.get_running_loop()
        while not cut.done() and loop.time() < deadline:
            self._start_claimed()
            if not self._runs:
                return
            pending = [job for job in self._runs if not job.done()]
            if pending:
                await wait_all_or(cut, pending, deadline)
            else:
                # ended, but their done callbacks (which free the slots) have not run yet
                await asyncio.sleep(0)

    def end_grace(self) -> None:
        """The stop's grace period is over: start no task claimed ahead from now on.

        The Manager calls this on every runner before it abandons any, so that
        no runner starts a waiting task while another's abandon is awaited.
        """
        self._abandoning = True

    async def abandon_running(self) -> None:
        """Cancel what still runs and hand it back to the queue now, for any worker.

        So are the tasks claimed ahead that are still waiting for a slot.
        """
        self.end_grace()
        jobs = list(self._runs.items())
        if jobs:
            _log_handed_back("still running after the grace period", [run.task for _, run in jobs])
        for job, run in jobs:
            run.abandoned = True
            job.cancel()
        waiting = self._ahead.close()
        # the running ones are cancelled first: a slow store must not keep them running
        ended = await asyncio.gather(
            self._abandon_claimed(waiting, "claimed ahead, still waiting after the grace period"),
            *(job for job, _ in jobs),
            return_exceptions=True,
        )
        for outcome in ended:
            if isinstance(outcome, Exception):
                logger.error("abandoning %r tasks at stop raised", self._name, exc_info=outcome)


def _log_succeeded(task: Task, seconds: float) -> None:
    meta = task.metadata
    logger.info(
        "task %s of %s/%s succeeded in %.3f s",
        meta.task_name,
        meta.workflow_name,
        meta.instance_name,
        seconds,
        extra={
            "event": "task_succeeded",
            "task_name": meta.task_name,
            "workflow_name": meta.workflow_name,
            "instance_name": meta.instance_name,
            "duration": seconds,
        },
    )


def _log_failed(task: Task, outcome: _Outcome, seconds: float, retry_in: float | None) -> None:
    """One record per failed attempt: names, exception type, message and traceback.

    The failure that ends the task is a WARNING (``task_failed``); an attempt
    its retry policy tries again (``retry_in`` seconds from now) is an INFO
    record (``task_retry``), so a task fails at WARNING once at most.
    """
    meta = task.metadata
    failure = outcome.failure
    error_type = "" if failure is None else f"{failure.error_type}: "
    traceback = "" if failure is None or not failure.error_traceback else failure.error_traceback
    if retry_in is None:
        level, event, retrying = logging.WARNING, "task_failed", ""
    else:
        level, event = logging.INFO, "task_retry"
        retrying = f" (attempt {meta.attempt}; retrying in {retry_in:.3g} s)"
    logger.log(
        level,
        "task %s of %s/%s failed after %.3f s%s: %s%s%s",
        meta.task_name,
        meta.workflow_name,
        meta.instance_name,
        seconds,
        retrying,
        error_type,
        outcome.error,
        f"\n{traceback.rstrip()}" if traceback else "",
        extra={
            "event": event,
            "task_name": meta.task_name,
            "workflow_name": meta.workflow_name,
            "instance_name": meta.instance_name,
            "error_type": None if failure is None else failure.error_type,
            "task_id": meta.task_id,
            "attempt": meta.attempt,
            "duration": seconds,
        },
    )


def _log_handed_back(
    why: str, tasks: list[TaskData] | list[Task], level: int = logging.WARNING
) -> None:
    """Say which tasks a stop hands back to the queue for another worker (WARNING by default)."""
    named = ", ".join(f"{task.metadata.task_name} (id {task.metadata.task_id})" for task in tasks)
    logger.log(
        level,
        "stop handed back %d task(s) %s to the queue for any worker: %s",
        len(tasks),
        why,
        named,
        extra={"event": "tasks_handed_back", "count": len(tasks)},
    )
