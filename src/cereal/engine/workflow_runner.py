"""The workflow loop: claim instances with a batch of events, run the callbacks, apply.

One runner per Manager. It claims several instances per round trip, each
with up to ``batch_events`` of its pending events (the driver guarantees one
callback per instance at a time anywhere), and runs at most ``concurrency``
callbacks at a time: while one runs, the next instances are already claimed
and earlier decisions commit (grouped by the driver). The callbacks of a
batch run in order, each on the payload and counts the previous decision
left, and the batch's outcome is applied through its completer in one atomic
step, so a fan-out's completions cost one commit per batch, not per event.
A callback that
raises or returns no decision fails its instance; nothing is redelivered in
a loop. Events of workflows with no executor here are left for others: the
name is set aside ("wayward") for a while so it does not block the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import NamedTuple

from cereal import errors, values
from cereal.checks.times import utcnow
from cereal.checks.validation import usable_traceparent
from cereal.drivers.base import MAX_TASK_KEY_LOOKUP, ClaimedWorkflow, Driver, WorkflowCompleter
from cereal.engine import callbacks
from cereal.engine.waits import ClaimPacer, wait_for_event
from cereal.executors import WorkflowExecutor, is_async_callable
from cereal.instance import (
    CancelEvent,
    Decision,
    DecisionKind,
    LiveWorkflowInstance,
    StartEvent,
    TaskCompleteEvent,
    TaskResult,
)
from cereal.models import (
    FailureDetails,
    NewTask,
    TaskResultData,
    TaskStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
)
from cereal.observe import Observer

logger = logging.getLogger(__name__)

WAYWARD_SECONDS = 60.0
"""How long a workflow name with no usable executor is left out of dequeues."""

_BACKOFF_MAX = 5.0

DEFAULT_BATCH_EVENTS = 64
"""Most events of one instance claimed and decided together (one commit for all)."""

MIN_IN_FLIGHT = 16
"""Instances a runner keeps claimed or committing at once, even with one callback slot."""

CLAIM_INTERVAL = 0.005
"""Least seconds between two claims of one runner under load (see :class:`ClaimPacer`)."""

SLOW_CALLBACK_SECONDS = 0.02
"""Above this average callback duration a runner claims no more than it can run at once."""


class WorkflowRunner:
    """Processes workflow events for the executors registered on one Manager."""

    def __init__(
        self,
        driver: Driver,
        executors: Mapping[str, WorkflowExecutor],
        *,
        poll_interval: float,
        heartbeat_interval: float,
        claim_expiry: float,
        max_value_bytes: int,
        on_tasks_enqueued: Callable[[set[str]], None],
        on_workflow_complete: Callable[[WorkflowEvent], None] | None,
        concurrency: int = 1,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        observer: Observer | None = None,
    ) -> None:
        self._driver = driver
        self._executors = dict(executors)
        self._poll_interval = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._claim_expiry = claim_expiry
        self._max_value_bytes = max_value_bytes
        self._on_tasks_enqueued = on_tasks_enqueued
        self._on_workflow_complete = on_workflow_complete
        self._concurrency = max(1, concurrency)
        # callbacks run at most `concurrency` at a time, but more instances may be
        # claimed and decided around them: claims and commits overlap the callbacks
        self._callback_slots = asyncio.Semaphore(self._concurrency)
        self._in_flight = max(self._concurrency, MIN_IN_FLIGHT)
        self._claim_at_least = max(1, self._in_flight // 4)
        self._callback_seconds = 0.0  # moving average of one callback's duration
        self._pacer = ClaimPacer(CLAIM_INTERVAL)
        self._batch_events = max(1, batch_events)
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._wayward: dict[str, float] = {}
        self._failures = 0
        self._lookup_failures = 0  # task key lookups failed in a row
        self._observer = observer

    def wake(self) -> None:
        """Look for events now instead of at the next poll (call on the loop's thread)."""
        self._wakeup.set()

    def stop(self) -> None:
        """Finish the event in hand, then take no more."""
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        """Claim and process batches until :meth:`stop`; then finish the batches in hand."""
        if not self._executors:
            return
        active: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping:
                free = self._limit() - len(active)
                if free <= 0 or (active and free < min(self._claim_at_least, self._limit())):
                    # claim in chunks, not one instance per finished batch: each
                    # claim is a round trip and a commit, whatever it takes
                    await asyncio.wait(active, return_when=asyncio.FIRST_COMPLETED)
                    continue
                claimed = await self._claim(free)
                if self._stopping:
                    for _, completer in claimed:
                        await completer.close()  # untouched: delivered again elsewhere
                    break
                for events, completer in claimed:
                    job = asyncio.create_task(self._process_batch(events, completer))
                    active.add(job)
                    job.add_done_callback(self._batch_done(active))
                if claimed and len(claimed) == free:
                    continue  # perhaps more ready: claim again as soon as a slot is free
                # nothing more is ready now: wait for a wakeup, a finished batch or the poll
                await self._idle()
        except asyncio.CancelledError:
            # a stop past its grace period: cancel the callbacks; each batch then
            # releases its claim, so another Manager gets the events at once
            for job in active:
                job.cancel()
            raise
        finally:
            if active:
                await asyncio.gather(*active, return_exceptions=True)

    def _batch_done(self, active: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        def done(job: asyncio.Task[None]) -> None:
            active.discard(job)
            if not job.cancelled() and job.exception() is not None:
                logger.error("workflow batch crashed", exc_info=job.exception())
            # the instance may have more events now, and a slot is free
            self._wakeup.set()

        return done

    def _limit(self) -> int:
        """Instances to hold at once: claim ahead only while callbacks are quick.

        Instances claimed ahead wait for a callback slot; with slow callbacks
        they would wait long while another Manager could run them.
        """
        if self._callback_seconds > SLOW_CALLBACK_SECONDS:
            return self._concurrency
        return self._in_flight

    def _note_callback_time(self, seconds: float) -> None:
        self._callback_seconds += (seconds - self._callback_seconds) * 0.2

    async def _idle(self) -> None:
        timeout = self._poll_interval
        if self._failures:
            timeout = _backoff(self._failures)
        await wait_for_event(self._wakeup, timeout)
        self._wakeup.clear()

    def _names(self) -> list[str]:
        now = time.monotonic()
        self._wayward = {name: until for name, until in self._wayward.items() if until > now}
        return [name for name in self._executors if name not in self._wayward]

    async def _claim(self, free: int) -> list[ClaimedWorkflow]:
        names = self._names()
        if not names:
            return []
        await self._pacer.pace()
        self._wakeup.clear()  # a wakeup from now on means work this claim may miss
        try:
            claimed = await self._driver.claim_workflows(
                names,
                max_instances=free,
                max_events=self._batch_events,
                claim_expiry=self._claim_expiry,
            )
        except errors.CerealError:
            self._failures += 1
            logger.warning("claiming workflow events failed; backing off", exc_info=True)
            return []
        self._failures = 0
        return claimed

    async def _process_batch(
        self, events: list[WorkflowEvent], completer: WorkflowCompleter
    ) -> None:
        """Run the batch's callbacks in order, each on the state the previous left; apply once."""
        async with completer:
            first = events[0]
            name = first.instance.workflow_name
            executor = self._executors.get(name)
            if executor is None:
                logger.error("no executor for workflow %r here; setting it aside", name)
                self._wayward[name] = time.monotonic() + WAYWARD_SECONDS
                return  # closing the completer rolls the events back for someone else
            keepalive = asyncio.create_task(self._keep_claim(completer))
            try:
                async with self._callback_slots:
                    if self._stopping:
                        return  # not started: released, delivered again elsewhere
                    began = time.monotonic()
                    outcome = await self._decide_knowing_keys(executor, events)
                    self._note_callback_time((time.monotonic() - began) / len(events))
            finally:
                keepalive.cancel()
            if outcome is None:
                return  # the key lookup failed: released, the events are delivered again
            decision, last, tasks = outcome.decision, outcome.last, outcome.tasks
            try:
                await self._apply(decision, tasks, last, completer)
                self._report(events, last, decision)
            except errors.WorkflowClaimLostError:
                logger.warning(
                    "workflow %s/%s ended or lost its claim during the callback; decision dropped",
                    name,
                    first.instance.instance_name,
                )
            except errors.RequestTooLargeError as exc:
                await self._fail_unsendable(exc, last_event=last, completer=completer)
            except errors.CerealError:
                self._failures += 1
                logger.warning(
                    "applying a decision failed; the event will be redelivered", exc_info=True
                )

    async def _fail_unsendable(
        self,
        exc: errors.RequestTooLargeError,
        *,
        last_event: WorkflowEvent,
        completer: WorkflowCompleter,
    ) -> None:
        """Fail the instance whose decision the driver cannot carry: it would never fit."""
        instance = last_event.instance
        logger.error(
            "workflow %s/%s failed: its decision is too large to send: %s",
            instance.workflow_name,
            instance.instance_name,
            exc,
        )
        text = values.storable_text(f"decision too large to apply: {exc}")
        try:
            await completer.fail(text)
        except errors.CerealError:
            self._failures += 1
            logger.warning("failing an unsendable decision failed; redelivered", exc_info=True)
            return
        self._finished(last_event)

    async def _decide_knowing_keys(
        self, executor: WorkflowExecutor, events: list[WorkflowEvent]
    ) -> BatchOutcome | None:
        """The batch's outcome, its callbacks told which of their task keys the run holds.

        A callback that enqueues a task under an idempotency key its run
        already holds (from an earlier step) is run again once the store has
        said so: the enqueue is then dropped at once, so the callback's
        ``total_enqueued_tasks()`` and its decision count only tasks that will
        be stored. Callbacks are deterministic (a callback whose claim is lost
        runs again too), and each round knows more keys, so this ends; a batch
        without keyed tasks costs nothing more. ``None``: the lookup failed.
        """
        held: frozenset[str] = frozenset()
        instance = events[0].instance
        while True:
            outcome = await self._decide_batch(executor, events, held)
            if not outcome.asked_keys:
                return outcome
            try:
                found = await held_task_keys(
                    self._driver,
                    instance.workflow_name,
                    instance.instance_name,
                    sorted(outcome.asked_keys),
                )
            except errors.NotOfferedError as exc:
                # the store cannot keep the promise: fail the run, never store a duplicate
                text = f"task idempotency keys are not offered by this store: {exc}"
                logger.error("workflow %s/%s failed: %s", *_names(instance), text)
                failed = Decision(DecisionKind.FAIL, error=text)
                return BatchOutcome(failed, events[-1], [], frozenset())
            except errors.CerealError:
                self._lookup_failures += 1
                logger.warning(
                    "looking up the task idempotency keys of %s/%s failed; "
                    "the events will be redelivered",
                    *_names(instance),
                    exc_info=True,
                )
                # back off while still holding the claim: claims would not slow a retry
                await asyncio.sleep(_backoff(self._lookup_failures))
                return None
            self._lookup_failures = 0
            if not found:
                return outcome
            held |= found

    async def _decide_batch(
        self,
        executor: WorkflowExecutor,
        events: list[WorkflowEvent],
        held_keys: frozenset[str] = frozenset(),
    ) -> BatchOutcome:
        """The batch's outcome: the last decision, its event, and every task to enqueue.

        A continue decision's payload is what the next callback sees; a
        complete or fail ends the batch (the instance's other events go with
        it). When every callback the batch needs is plain, the whole batch
        runs in one worker thread (one hop, not one per event). ``held_keys``
        are task idempotency keys the run holds: enqueues with them are dropped.
        """
        names = [_callback_for(event)[0] for event in events]
        if len(events) > 1 and not any(_is_async(executor, name) for name in names):
            loop = asyncio.get_running_loop()
            return await asyncio.to_thread(self._decide_all, executor, events, held_keys, loop)
        return await self._decide_all_async(executor, events, held_keys)

    async def _decide_all_async(
        self, executor: WorkflowExecutor, events: list[WorkflowEvent], held_keys: frozenset[str]
    ) -> BatchOutcome:
        batch = _Batch(events, self._max_value_bytes, held_keys)
        observer = self._observer
        for event in events:
            callback_name, ev = _callback_for(event)
            instance = batch.instance(event)
            if observer is None:
                decision = await callbacks.decide(executor, callback_name, instance, ev)
                traceparent = None
            else:
                with observer.workflow_callback(
                    instance.workflow_name,
                    instance.instance_name,
                    callback_name,
                    parent_traceparent=_followed_span(event),
                ) as observation:
                    decision = await callbacks.decide(executor, callback_name, instance, ev)
                    observation.decision = decision.kind.value
                traceparent = observation.traceparent
            if not batch.absorb(decision, event, instance, traceparent):
                break
        return batch.outcome()

    def _decide_all(
        self,
        executor: WorkflowExecutor,
        events: list[WorkflowEvent],
        held_keys: frozenset[str],
        loop: asyncio.AbstractEventLoop,
    ) -> BatchOutcome:
        """:meth:`_decide_all_async` for plain callbacks, on a worker thread."""
        batch = _Batch(events, self._max_value_bytes, held_keys)
        observer = self._observer
        for event in events:
            callback_name, ev = _callback_for(event)
            instance = batch.instance(event)
            if observer is None:
                decision = callbacks.decide_in_thread(executor, callback_name, instance, ev, loop)
                traceparent = None
            else:
                with observer.workflow_callback(
                    instance.workflow_name,
                    instance.instance_name,
                    callback_name,
                    parent_traceparent=_followed_span(event),
                ) as observation:
                    decision = callbacks.decide_in_thread(
                        executor, callback_name, instance, ev, loop
                    )
                    observation.decision = decision.kind.value
                traceparent = observation.traceparent
            if not batch.absorb(decision, event, instance, traceparent):
                break
        return batch.outcome()

    async def _keep_claim(self, completer: WorkflowCompleter) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await completer.heartbeat()
            except errors.CerealError:
                logger.warning("refreshing a workflow claim failed", exc_info=True)

    async def _apply(
        self,
        decision: Decision,
        tasks: list[NewTask],
        event: WorkflowEvent,
        completer: WorkflowCompleter,
    ) -> None:
        if decision.is_failed:
            text = values.storable_text(decision.error or "workflow failed")
            if decision.error_type is None:
                await completer.fail(text)
            else:
                traceback = decision.error_traceback
                details = FailureDetails(
                    text,
                    values.storable_text(decision.error_type),
                    None if traceback is None else values.storable_text(traceback),
                )
                await completer.fail_with_details(details)
            self._finished(event)
        elif decision.is_complete:
            await completer.done(decision.result)
            self._finished(event)
        else:
            await completer.continue_(decision.payload, tasks)
            if tasks and not self._driver.wakes_runners_of_new_tasks:
                self._on_tasks_enqueued({task.task_name for task in tasks})
        self._failures = 0

    def _report(self, events: list[WorkflowEvent], last: WorkflowEvent, decision: Decision) -> None:
        """After a committed decision: log a finished instance, tell the observer."""
        if not decision.is_continuing:
            _log_finished(last, decision)
        observer = self._observer
        if observer is None:
            return
        name = last.instance.workflow_name
        for event in events:
            if event.type is WorkflowEventType.START:
                observer.workflow_started(name)
            elif event.task_result is not None and event.task_result.status is TaskStatus.LOST:
                observer.task_lost(name, event.task_result.task_name)
            if event is last:
                break
        if not decision.is_continuing:
            observer.workflow_finished(
                name, failed=decision.is_failed, seconds=_age(last.instance.started_at)
            )

    def _finished(self, event: WorkflowEvent) -> None:
        if self._on_workflow_complete is None:
            return
        try:
            self._on_workflow_complete(event)
        except Exception:
            logger.exception("on_workflow_complete callback raised")


class BatchOutcome(NamedTuple):
    """What a batch's callbacks decided."""

    decision: Decision
    """The last callback's decision."""
    last: WorkflowEvent
    """The event of that callback."""
    tasks: list[NewTask]
    """Every task the batch enqueues (the continuing callbacks')."""
    asked_keys: frozenset[str]
    """The task idempotency keys the callbacks enqueued under (none of the held ones)."""


async def held_task_keys(
    driver: Driver, workflow_name: str, instance_name: str, keys: list[str]
) -> frozenset[str]:
    """Of ``keys``, those the live run of these names holds (asked in bounded chunks)."""
    held: set[str] = set()
    for start in range(0, len(keys), MAX_TASK_KEY_LOOKUP):
        chunk = keys[start : start + MAX_TASK_KEY_LOOKUP]
        found = await driver.list_task_keys(workflow_name, instance_name, chunk)
        held.update(key.idempotency_key for key in found)
    return frozenset(held)


class _Batch:
    """The state a batch's callbacks see, carried from one decision to the next."""

    def __init__(
        self,
        events: list[WorkflowEvent],
        max_value_bytes: int,
        held_keys: frozenset[str] = frozenset(),
    ) -> None:
        self._max_value_bytes = max_value_bytes
        self._payload = events[0].instance.payload
        self._tasks: list[NewTask] = []
        self._last: tuple[Decision, WorkflowEvent] | None = None
        self._held = held_keys
        self._asked: set[str] = set()

    def instance(self, event: WorkflowEvent) -> LiveWorkflowInstance:
        """The instance as the callback of ``event`` sees it."""
        data = event.instance
        # the run holds the stored keys and those the batch's earlier steps enqueued
        taken = {task.idempotency_key for task in self._tasks if task.idempotency_key is not None}
        return LiveWorkflowInstance(
            data.workflow_name,
            data.instance_name,
            parameters=data.parameters,
            payload=self._payload,
            enqueued_tasks=event.enqueued_task_count + len(self._tasks),
            completed_tasks=event.completed_task_count,
            max_value_bytes=self._max_value_bytes,
            held_keys=self._held | taken,
        )

    def absorb(
        self,
        decision: Decision,
        event: WorkflowEvent,
        instance: LiveWorkflowInstance,
        traceparent: str | None = None,
    ) -> bool:
        """Take ``decision`` in; False when it ends the batch (complete or fail).

        ``instance`` is the one its callback used (for the keys it enqueued
        under); ``traceparent`` (the callback's span, when traced) goes with
        its tasks.
        """
        self._asked.update(
            task.idempotency_key for task in instance.enqueued if task.idempotency_key is not None
        )
        self._last = (decision, event)
        if not decision.is_continuing:
            return False
        self._payload = decision.payload
        traceparent = usable_traceparent(traceparent)  # a custom observer's may be malformed
        if traceparent is None:
            self._tasks.extend(decision.tasks)
        else:
            self._tasks.extend(replace(task, traceparent=traceparent) for task in decision.tasks)
        return True

    def outcome(self) -> BatchOutcome:
        """The last decision, its event, every task the batch enqueues, the keys asked."""
        assert self._last is not None
        return BatchOutcome(self._last[0], self._last[1], self._tasks, frozenset(self._asked))


def _backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failed tries in a row (doubling, capped)."""
    return float(min(_BACKOFF_MAX, 0.1 * 2.0 ** min(failures, 6)))


def _names(instance: WorkflowInstanceData) -> tuple[str, str]:
    return instance.workflow_name, instance.instance_name


def _age(started_at: datetime | None) -> float:
    """Seconds since ``started_at`` (0 when unknown)."""
    if started_at is None:
        return 0.0
    return max(0.0, (utcnow() - started_at).total_seconds())


def _log_finished(event: WorkflowEvent, decision: Decision) -> None:
    data = event.instance
    seconds = _age(data.started_at)
    extra = {
        "workflow_name": data.workflow_name,
        "instance_name": data.instance_name,
        "duration": seconds,
    }
    if decision.is_failed:
        logger.info(
            "workflow %s/%s failed after %.3f s: %s",
            data.workflow_name,
            data.instance_name,
            seconds,
            decision.error,
            extra={"event": "workflow_failed", **extra},
        )
    else:
        logger.info(
            "workflow %s/%s completed in %.3f s",
            data.workflow_name,
            data.instance_name,
            seconds,
            extra={"event": "workflow_completed", **extra},
        )


def _is_async(executor: object, callback_name: str) -> bool:
    callback = getattr(executor, callback_name, None)
    return callback is None or is_async_callable(callback)


def _followed_span(event: WorkflowEvent) -> str | None:
    """The stored span an event's callback follows from (one trace per run).

    A task result's: the run that reported it (or the enqueuing callback);
    any other event's: the run's enqueue. ``None`` when nothing was traced.
    """
    if event.task_result is not None and event.task_result.traceparent:
        return event.task_result.traceparent
    return event.instance.traceparent


def _callback_for(event: WorkflowEvent) -> tuple[str, object]:
    """The callback an event goes to, and the event object it receives."""
    if event.type is WorkflowEventType.START:
        return "on_start", StartEvent(event.enqueued_at)
    if event.type is WorkflowEventType.CANCEL:
        return "on_cancel", CancelEvent(event.enqueued_at)
    data = event.task_result or TaskResultData(task_name="", status=TaskStatus.UNUSABLE_RESULT)
    ev = TaskCompleteEvent(data.task_name, TaskResult(data), event.enqueued_at)
    return "on_task_complete", ev
