"""The in-process driver: every structure lives in this object, nothing is durable.

``MemoryDriver`` implements :mod:`cereal.drivers.base` directly. One
``threading.Lock`` guards the whole store; every method does its work
synchronously under that lock and never awaits while holding it, so a
decision or a claim is all-or-nothing exactly as a database transaction
would be. The host clock decides what is due. Several Managers in one
process may share one ``MemoryDriver``; the object *is* the store, so its
data survives ``close`` / ``init`` cycles but not the process.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cereal import errors
from cereal.checks import validation
from cereal.checks.times import to_utc, utcnow
from cereal.drivers import _memory_inspect
from cereal.drivers._dead_letter_store import check_dead_task_page, check_failed_run_page
from cereal.drivers._inspect_pages import (
    check_page,
    id_cursor,
    is_paged,
    newest_first,
    task_cursor,
)
from cereal.drivers._memory_state import (
    Event,
    LiveInstance,
    MemoryState,
    ScheduleRow,
    Task,
    apply_schedule_update,
    live_view,
    resolve_schedule_update,
)
from cereal.drivers._throughput import check_throughput, count_in_python, window
from cereal.drivers.base import (
    DEFAULT_TASK_EXPIRY,
    ClaimedWorkflow,
    Driver,
    ScheduledWorkflowCompleter,
    TaskCompleter,
    WorkflowCompleter,
    check_claim_sizes,
)
from cereal.models import (
    DeadTask,
    ExpiredLease,
    FailedRun,
    FailureDetails,
    HistoryRetention,
    InstanceEvent,
    InstanceTask,
    LeaseSettlement,
    ListWorkflowFilter,
    NewTask,
    Overlap,
    QueueDepth,
    RequeueOutcome,
    RetentionRule,
    RunOutcome,
    Schedule,
    ScheduleUpdate,
    StartKey,
    TaskData,
    TaskKey,
    TaskMetadata,
    TaskQueueStats,
    TaskStatus,
    ThroughputBucket,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
)
from cereal.retry import DEFAULT_MAX_HAND_BACKS

__all__ = ["MemoryDriver"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MemoryDriver(Driver):
    """Workflow, task and schedule storage in this process's memory.

    For tests, demos and single-process use: not durable, not shared between
    processes (it declares no capabilities). Live workers use the base
    class's rows, kept in this object; a caller's connection (transactional
    enqueue) is refused with ``TypeError``.

    Args:
        retention: how much finished-run history a sweep keeps.
    """

    capabilities = frozenset()

    def __init__(self, *, retention: HistoryRetention | None = None) -> None:
        super().__init__(retention=retention)
        self._lock = threading.Lock()
        self._state = MemoryState()

    async def _open(self) -> None:
        """Nothing to connect: the object is the store."""

    async def _close(self) -> None:
        """Nothing to disconnect; the data stays for a later ``init``."""

    # ---- workflow instances -----------------------------------------------------

    async def enqueue_workflow(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        *,
        traceparent: str | None = None,
    ) -> None:
        """Create a live instance and its ``start`` event atomically.

        Raises:
            WorkflowInstanceExistsError: a live instance with these names exists.
        """
        with self._lock:
            self._state.add_instance(
                workflow_name, instance_name, parameters, utcnow(), traceparent
            )
        self._wake("workflow", workflow_name)

    async def enqueue_keyed_workflow(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        concurrency_key: str,
        concurrency_limit: int,
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> str | None:
        """See :meth:`Driver.enqueue_keyed_workflow`."""
        concurrency = (concurrency_key, concurrency_limit)
        with self._lock:
            if idempotency_key is None:
                self._state.add_instance(
                    workflow_name, instance_name, parameters, utcnow(), traceparent, concurrency
                )
                existing = None
            else:
                existing = self._state.add_instance_once(
                    workflow_name,
                    instance_name,
                    parameters,
                    idempotency_key,
                    utcnow(),
                    traceparent,
                    concurrency,
                )
        if existing is None:
            self._wake("workflow", workflow_name)
        self._wake_admitted()
        return existing

    def _wake_admitted(self) -> None:
        """Wake the runners of runs started from waiting for their key (call unlocked)."""
        with self._lock:
            names = self._state.take_admitted()
        for name in names:
            self._wake("workflow", name)

    async def enqueue_workflow_once(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        idempotency_key: str,
        *,
        traceparent: str | None = None,
    ) -> str | None:
        """Start the run unless the key started one within the window (see ``StartKeyStore``)."""
        with self._lock:
            existing = self._state.add_instance_once(
                workflow_name, instance_name, parameters, idempotency_key, utcnow(), traceparent
            )
        if existing is None:
            self._wake("workflow", workflow_name)
        return existing

    async def claim_workflows(
        self,
        workflow_names: Sequence[str],
        *,
        max_instances: int = 1,
        max_events: int = 1,
        claim_expiry: float = DEFAULT_TASK_EXPIRY,
    ) -> list[ClaimedWorkflow]:
        """Claim up to ``max_instances`` instances, each with up to ``max_events`` events.

        Claims end with their completer, so ``claim_expiry`` is unused.
        """
        check_claim_sizes(max_instances, max_events)
        result: list[ClaimedWorkflow] = []
        with self._lock:
            for inst in self._state.claim_instances(workflow_names, max_instances):
                events = list(itertools.islice(inst.events.values(), max_events))
                completer = _MemoryWorkflowCompleter(self, inst, events)
                inst.claimed_by = completer
                result.append((_event_views(inst, events), completer))
        return result

    async def cancel_workflow(self, workflow_name: str, instance_name: str) -> None:
        """Append a ``cancel`` event to the live instance.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """
        with self._lock:
            inst = self._live(workflow_name, instance_name)
            self._state.add_event(inst, WorkflowEventType.CANCEL, utcnow())
        self._wake("workflow", workflow_name)

    async def kill_workflow(self, workflow_name: str, instance_name: str, error: str) -> None:
        """Finish the live instance at once with ``error``, even while it is claimed.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """
        with self._lock:
            inst = self._live(workflow_name, instance_name)
            self._state.finish(inst, None, error, utcnow())
        self._wake_admitted()

    async def get_workflow_instance(
        self, workflow_name: str, instance_name: str
    ) -> WorkflowInstanceData:
        """The live instance if any, else the newest finished run.

        Raises:
            WorkflowInstanceNotFoundError: neither exists.
        """
        with self._lock:
            view = self._state.instance_view((workflow_name, instance_name))
        if view is None:
            raise errors.WorkflowInstanceNotFoundError()
        return view

    async def list_workflow_instances(
        self, where: ListWorkflowFilter
    ) -> list[WorkflowInstanceData]:
        """One entry per (workflow, instance) pair: the live row, else the newest finished run."""
        with self._lock:
            if where.is_running is True:
                keys = set(self._state.instances)
            elif where.is_running is False:
                keys = set(self._state.latest) - set(self._state.instances)
            else:
                keys = set(self._state.instances) | set(self._state.latest)
            found = [
                self._state.instance_view(key)
                for key in sorted(keys)
                if where.workflow_name in (None, key[0]) and where.instance_name in (None, key[1])
            ]
        views = [view for view in found if view is not None]
        if where.newest_first:  # stable: names order ties
            views.sort(key=lambda view: view.started_at or _EPOCH, reverse=True)
        return where.page(views)

    async def list_instance_tasks(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[InstanceTask]:
        """See :meth:`Driver.list_instance_tasks`."""
        cursor = task_cursor(before)
        check_page(limit, cursor)
        with self._lock:
            return _memory_inspect.instance_tasks(
                self._state,
                workflow_name,
                instance_name,
                limit=limit,
                before=cursor,
                paged=is_paged(limit, before),
            )

    async def list_instance_events(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: int | None = None,
    ) -> list[InstanceEvent]:
        """See :meth:`Driver.list_instance_events`."""
        check_page(limit, before)
        with self._lock:
            return _memory_inspect.instance_events(
                self._state, workflow_name, instance_name, limit=limit, before=before
            )

    async def list_tasks(
        self, task_name: str, *, limit: int | None = None, before: str | None = None
    ) -> list[InstanceTask]:
        """See :meth:`Driver.list_tasks`."""
        cursor = task_cursor(before)
        check_page(limit, cursor)
        with self._lock:
            return _memory_inspect.named_tasks(
                self._state, task_name, limit=limit, before=cursor, paged=is_paged(limit, before)
            )

    async def list_dead_tasks(
        self,
        *,
        task_name: str | None = None,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[DeadTask]:
        """See :meth:`Driver.list_dead_tasks`."""
        check_dead_task_page(task_name, workflow_name, limit, before)
        with self._lock:
            found = [
                self._state.dead_view(entry)
                for entry in self._state.dead.values()
                if task_name in (None, entry.task.task_name)
                and workflow_name in (None, entry.task.workflow_name)
            ]
        found.sort(key=lambda dead: int(dead.task_id))
        return newest_first(found, lambda dead: int(dead.task_id), limit, task_cursor(before))

    async def list_failed_runs(
        self,
        *,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[FailedRun]:
        """See :meth:`Driver.list_failed_runs`."""
        check_failed_run_page(workflow_name, limit, before)
        with self._lock:
            failed = [
                FailedRun(
                    run_id=str(row.id),
                    workflow_name=row.workflow_name,
                    instance_name=row.instance_name,
                    parameters=row.parameters,
                    error_text=row.err,
                    error_type=row.error_type,
                    error_traceback=row.error_traceback,
                    started_at=row.started_at,
                    ended_at=row.ended_at,
                )
                # the history is kept in id order: rows are appended as ids are drawn
                for row in self._state.history
                if row.err is not None
                and not row.requeued
                and workflow_name in (None, row.workflow_name)
            ]
        return newest_first(failed, lambda run: int(run.run_id), limit, id_cursor(before, "run id"))

    async def requeue_failed_runs(self, run_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """See :meth:`Driver.requeue_failed_runs`."""
        outcomes: dict[str, RequeueOutcome] = {}
        started: set[str] = set()
        with self._lock:
            rows = {str(row.id): row for row in self._state.history}
            for run_id in run_ids:
                row = rows.get(run_id)
                if row is None or row.err is None or row.requeued:
                    outcomes[run_id] = RequeueOutcome.NOT_FOUND
                elif (row.workflow_name, row.instance_name) in self._state.instances:
                    outcomes[run_id] = RequeueOutcome.RUN_LIVE
                else:
                    # under the failed run's workflow concurrency key again, if it had one
                    ended = row.instance
                    key = None if ended is None else ended.concurrency_key
                    limit = None if ended is None else ended.concurrency_limit
                    self._state.add_instance(
                        row.workflow_name,
                        row.instance_name,
                        row.parameters,
                        utcnow(),
                        concurrency=None if key is None or limit is None else (key, limit),
                    )
                    row.requeued = True
                    outcomes[run_id] = RequeueOutcome.REQUEUED
                    started.add(row.workflow_name)
        for workflow_name in sorted(started):
            self._wake("workflow", workflow_name)
        self._wake_admitted()
        return outcomes

    async def requeue_dead_tasks(self, task_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """See :meth:`Driver.requeue_dead_tasks`."""
        outcomes: dict[str, RequeueOutcome] = {}
        requeued: set[str] = set()
        with self._lock:
            now = utcnow()
            for task_id in task_ids:
                outcomes[task_id], task_name = self._state.requeue_dead(task_id, now)
                if task_name is not None:
                    requeued.add(task_name)
        for task_name in sorted(requeued):
            self._wake("task", task_name)
        return outcomes

    async def task_queue_stats(self) -> list[TaskQueueStats]:
        """One entry per task name with queued or running tasks, ordered by name."""
        with self._lock:
            return _memory_inspect.queue_stats(self._state)

    async def run_throughput(
        self, bucket_seconds: int, buckets: int, *, until: float | None = None
    ) -> list[ThroughputBucket]:
        """See :meth:`Driver.run_throughput`."""
        check_throughput(bucket_seconds, buckets, until)
        span = window(bucket_seconds, buckets, until)
        with self._lock:
            runs = [(row.ended_at, row.err is not None) for row in self._state.history]
        return count_in_python(span, runs)

    async def list_start_keys(self, workflow_name: str, instance_name: str) -> list[StartKey]:
        """See :meth:`Driver.list_start_keys`."""
        validation.check_pair(workflow_name, instance_name)
        with self._lock:
            return _memory_inspect.start_keys(self._state, workflow_name, instance_name)

    async def applied_retention(self) -> list[RetentionRule]:
        """See :meth:`Driver.applied_retention`."""
        with self._lock:
            return _memory_inspect.applied_retention(self._state)

    async def list_task_keys(
        self, workflow_name: str, instance_name: str, keys: Sequence[str]
    ) -> list[TaskKey]:
        """See :meth:`Driver.list_task_keys`."""
        validation.check_pair(workflow_name, instance_name)
        with self._lock:
            inst = self._state.instances.get((workflow_name, instance_name))
            held = {} if inst is None else inst.task_keys
            return [TaskKey(key, str(held[key])) for key in dict.fromkeys(keys) if key in held]

    def _live(self, workflow_name: str, instance_name: str) -> LiveInstance:
        inst = self._state.instances.get((workflow_name, instance_name))
        if inst is None:
            raise errors.WorkflowInstanceNotFoundError()
        return inst

    # ---- tasks ----------------------------------------------------------------------

    async def dequeue_tasks(
        self,
        task_name: str,
        max_tasks: int,
        *,
        task_expiry: float = DEFAULT_TASK_EXPIRY,
        retry_policy: str | None = None,
    ) -> list[tuple[TaskData, TaskCompleter]]:
        """Claim up to ``max_tasks`` ready tasks, each leased for ``task_expiry`` seconds."""
        with self._lock:
            leased = self._state.claim_tasks(
                task_name, max_tasks, utcnow(), task_expiry, retry_policy
            )
        result: list[tuple[TaskData, TaskCompleter]] = []
        for task, lease in leased:
            metadata = TaskMetadata(
                enqueued_at=task.enqueued_at,
                task_name=task.task_name,
                workflow_name=task.instance.workflow_name,
                instance_name=task.instance.instance_name,
                attempt=task.attempt,
                task_id=str(task.seq),
                traceparent=task.traceparent,
            )
            data = TaskData(
                name=task.task_name,
                parameters=task.parameters,
                metadata=metadata,
                retry_policy=task.retry_policy,
            )
            result.append((data, _MemoryTaskCompleter(self, task, lease, task_expiry)))
        return result

    async def queue_depths(self) -> list[QueueDepth]:
        """Ready tasks per task name and ready, unclaimed instances per workflow name."""
        with self._lock:
            return self._state.queue_depths(utcnow())

    # ---- maintenance (the engine's sweep decides; see drivers/_maintenance_store.py) ----

    async def expired_task_leases(self, task_expiry: float, limit: int) -> list[ExpiredLease]:
        """Running tasks past their lease deadline, oldest first.

        Every lease here has a deadline, so ``task_expiry`` (the sweeper's) is unused.
        """
        with self._lock:
            return self._state.expired_leases(utcnow(), limit)

    async def settle_expired_leases(
        self, settlements: Sequence[LeaseSettlement], *, task_expiry: float
    ) -> list[str]:
        """Apply each settlement whose lease is still the task's and still expired, at once."""
        applied: list[str] = []
        woken: list[str] = []
        with self._lock:
            now = utcnow()
            for settlement in settlements:
                workflow_name = self._state.settle(settlement, now)
                if workflow_name is None:
                    continue
                applied.append(settlement.task_id)
                if settlement.delay is None:
                    woken.append(workflow_name)
        for workflow_name in dict.fromkeys(woken):
            self._wake("workflow", workflow_name)
        return applied

    async def release_stale_claims(self, task_expiry: float) -> int:
        """None to release: a claim here ends with its completer (or this process)."""
        return 0

    async def trim_history(self, retention: HistoryRetention) -> int:
        """Apply ``retention`` to the finished runs; how many were removed."""
        with self._lock:
            return self._state.trim_history(retention, utcnow())

    # ---- schedules ------------------------------------------------------------------

    async def create_workflow_schedule(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        enabled: bool,
        recurrence: str,
        next_due_at: datetime,
        *,
        overlap: Overlap = "skip",
        catch_up_window: float = 0.0,
    ) -> None:
        """Store a new schedule.

        Raises:
            WorkflowScheduleExistsError: one with these names exists.
        """
        key = (workflow_name, instance_name)
        with self._lock:
            if key in self._state.schedules:
                raise errors.WorkflowScheduleExistsError()
            self._state.schedules[key] = ScheduleRow(
                id=next(self._state.schedule_ids),
                workflow_name=workflow_name,
                instance_name=instance_name,
                parameters=parameters,
                enabled=enabled,
                recurrence=recurrence,
                next_due_at=to_utc(next_due_at),
                overlap=overlap,
                catch_up_window=catch_up_window,
            )
        self._wake("schedule", None)

    async def list_workflow_schedules(
        self, *, limit: int | None = None, offset: int = 0
    ) -> list[Schedule]:
        """See :meth:`Driver.list_workflow_schedules`."""
        with self._lock:
            keys = sorted(self._state.schedules)[offset:]
            page = keys if limit is None else keys[:limit]
            return [self._state.schedule_view(self._state.schedules[key]) for key in page]

    async def get_workflow_schedule(self, workflow_name: str, instance_name: str) -> Schedule:
        """One schedule (as in the list).

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        with self._lock:
            return self._state.schedule_view(self._schedule(workflow_name, instance_name))

    async def update_workflow_schedule(
        self, workflow_name: str, instance_name: str, update: ScheduleUpdate
    ) -> None:
        """Apply every change of ``update`` at once.

        A schedule locked by a scheduler gets the change now and again when
        that scheduler releases it, as if the update had waited for its lock.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule; nothing changed.
        """
        with self._lock:
            row = self._schedule(workflow_name, instance_name)
            # decided under the lock, so a replay after a scheduler's lock is unconditional
            update = resolve_schedule_update(row, update)
            apply_schedule_update(row, update)
            if row.locked_by is not None:
                row.updates_while_locked.append(update)
        self._wake("schedule", None)

    async def delete_workflow_schedule(self, workflow_name: str, instance_name: str) -> None:
        """Remove a schedule; running instances it started are untouched.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        with self._lock:
            row = self._schedule(workflow_name, instance_name)
            del self._state.schedules[(row.workflow_name, row.instance_name)]
        self._wake("schedule", None)

    async def get_due_scheduled_workflow(self) -> tuple[Schedule, ScheduledWorkflowCompleter]:
        """Lock the earliest schedule that is due or whose waiting run can start.

        Due: enabled and its due time has passed. A waiting run can start once
        no live instance has the schedule's names.

        Raises:
            NoDueWorkflowsError: none is due (or every due one is locked).
        """
        with self._lock:
            now = utcnow()
            ready = [
                row
                for row in self._state.schedules.values()
                if row.locked_by is None and (self._time_due(row, now) or self._pending_ready(row))
            ]
            if not ready:
                raise errors.NoDueWorkflowsError()
            row = min(ready, key=lambda row: (row.next_due_at, row.id))
            completer = _MemoryScheduleCompleter(self, row, due=self._time_due(row, now))
            row.locked_by = completer
            return self._state.schedule_view(row), completer

    @staticmethod
    def _time_due(row: ScheduleRow, now: datetime) -> bool:
        return row.enabled and row.next_due_at <= now

    def _pending_ready(self, row: ScheduleRow) -> bool:
        return row.run_pending and (row.workflow_name, row.instance_name) not in (
            self._state.instances
        )

    async def trigger_workflow_schedule(
        self, workflow_name: str, instance_name: str, kill_error: str
    ) -> RunOutcome:
        """Ask for a run now under the schedule's overlap policy; the due time stays.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        with self._lock:
            row = self._schedule(workflow_name, instance_name)
            outcome = self._state.start_run(row, row.parameters, kill_error, utcnow())
        if outcome in (RunOutcome.STARTED, RunOutcome.REPLACED, RunOutcome.CANCELLING):
            self._wake("workflow", workflow_name)
        self._wake_admitted()
        return outcome

    async def has_waiting_schedule_runs(self) -> bool:
        """Whether any schedule has a run waiting for its live instance to end."""
        with self._lock:
            return any(row.run_pending for row in self._state.schedules.values())

    async def get_next_scheduled_workflow(self) -> Schedule:
        """The enabled schedule due soonest.

        Raises:
            NoScheduledWorkflowsError: no schedule is enabled.
        """
        with self._lock:
            enabled = [row for row in self._state.schedules.values() if row.enabled]
            if not enabled:
                raise errors.NoScheduledWorkflowsError()
            row = min(enabled, key=lambda row: (row.next_due_at, row.id))
            return self._state.schedule_view(row)

    def _schedule(self, workflow_name: str, instance_name: str) -> ScheduleRow:
        row = self._state.schedules.get((workflow_name, instance_name))
        if row is None:
            raise errors.WorkflowScheduleNotFoundError()
        return row


def _event_views(inst: LiveInstance, events: Sequence[Event]) -> list[WorkflowEvent]:
    """What the callbacks see: each event counts the completions up to and including it."""
    completed = inst.completed_tasks
    views: list[WorkflowEvent] = []
    for event in events:
        if event.type is WorkflowEventType.TASK_COMPLETE:
            completed += 1
        views.append(
            WorkflowEvent(
                type=event.type,
                instance=live_view(inst),  # its own copy: callers may update it per callback
                enqueued_task_count=inst.enqueued_tasks,
                completed_task_count=completed,
                enqueued_at=event.enqueued_at,
                task_result=event.task_result,
            )
        )
    return views


class _MemoryWorkflowCompleter(WorkflowCompleter):
    """The claim on one instance, holding a batch of its oldest events."""

    def __init__(self, driver: MemoryDriver, inst: LiveInstance, events: list[Event]) -> None:
        self._driver = driver
        self._inst = inst
        self._events = events
        self._open = True

    def _claimed(self) -> LiveInstance:
        """The claimed instance, or raise if the claim is gone (caller holds the lock)."""
        if not self._open:
            raise RuntimeError("this workflow completer already applied a decision or closed")
        inst = self._inst
        if not self._driver._state.is_live(inst) or inst.claimed_by is not self:
            self._open = False
            raise errors.WorkflowClaimLostError()
        return inst

    async def continue_(self, payload: bytes | None, tasks: Sequence[NewTask]) -> None:
        """Consume every claimed event, store payload and counts, queue ``tasks``, atomically.

        Raises:
            WorkflowClaimLostError: the instance was killed meanwhile; nothing was stored.
        """
        state = self._driver._state
        with self._driver._lock:
            inst = self._claimed()
            state.consume_events(self._events)
            inst.payload = payload
            inst.status = WorkflowInstanceStatus.RUNNING
            inst.completed_tasks += sum(
                1 for event in self._events if event.type is WorkflowEventType.TASK_COMPLETE
            )
            inst.enqueued_tasks += state.add_tasks(inst, tasks, utcnow())
            ready_again = state.release(inst)
            self._open = False
        for task_name in dict.fromkeys(task.task_name for task in tasks):
            self._driver._wake("task", task_name)
        if ready_again:  # events arrived during the callback; wakeups then found it claimed
            self._driver._wake("workflow", inst.workflow_name)

    async def done(self, result: bytes | None) -> None:
        """Finish the instance with ``result``.

        Raises:
            WorkflowClaimLostError: the instance was killed meanwhile.
        """
        self._finish(result, None)

    async def fail(self, error: str) -> None:
        """Finish the instance with the error text ``error``.

        Raises:
            WorkflowClaimLostError: the instance was killed meanwhile.
        """
        self._finish(None, error)

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Finish the instance with ``failure``'s text, exception type and traceback.

        Raises:
            WorkflowClaimLostError: the instance was killed meanwhile.
        """
        self._finish(None, failure.error, failure)

    def _finish(
        self, result: bytes | None, err: str | None, failure: FailureDetails | None = None
    ) -> None:
        with self._driver._lock:
            inst = self._claimed()
            self._driver._state.finish(inst, result, err, utcnow(), failure)
            self._open = False
        self._driver._wake_admitted()

    async def close(self) -> None:
        """Release the claim; without a decision every event stays queued. Idempotent."""
        with self._driver._lock:
            if not self._open:
                return
            self._open = False
            inst = self._inst
            if inst.claimed_by is not self or not self._driver._state.is_live(inst):
                return
            self._driver._state.release(inst)
        self._driver._wake("workflow", inst.workflow_name)


class _MemoryTaskCompleter(TaskCompleter):
    """The lease on one running task."""

    def __init__(self, driver: MemoryDriver, task: Task, lease: int, expiry: float) -> None:
        self._driver = driver
        self._task = task
        self._lease = lease
        self._expiry = timedelta(seconds=expiry)

    def _held(self) -> Task:
        """The leased task, or raise TaskLostError (caller holds the lock)."""
        if not self._driver._state.holds_lease(self._task, self._lease):
            raise errors.TaskLostError()
        return self._task

    async def heartbeat(self) -> None:
        """Move the lease's deadline to now plus the expiry it was claimed with.

        Raises:
            TaskLostError: the task is gone.
        """
        with self._driver._lock:
            self._held().lease_deadline = utcnow() + self._expiry

    async def succeed(self, result: bytes | None) -> None:
        """Record success with ``result`` and queue a ``task_complete`` event.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        self._complete(TaskStatus.SUCCESS, "", result)

    async def fail(self, error: str) -> None:
        """Record failure with the error text ``error``.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        self._complete(TaskStatus.FAILED, error, None)

    async def abandon(self) -> None:
        """Report the task ``LOST`` to its workflow now.

        Raises:
            TaskLostError: the lease is gone already.
        """
        self._complete(TaskStatus.LOST, "", None)

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Record failure with the exception's text, type and traceback.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        self._complete(TaskStatus.FAILED, failure.error, None, failure)

    async def retry(self, error: str, delay: float) -> None:
        """Queue the task again ``delay`` seconds from now; the lease ends.

        Raises:
            TaskLostError: the lease is gone; nothing changed.
        """
        with self._driver._lock:
            task = self._held()
            self._driver._state.requeue_task(task, utcnow() + timedelta(seconds=delay))
        self._wake_key_waiters(task)

    async def hand_back(self) -> bool:
        """Queue the task again at once without counting the attempt (a stop).

        Raises:
            TaskLostError: the lease is gone already.
        """
        with self._driver._lock:
            task = self._held()
            if task.hand_backs >= DEFAULT_MAX_HAND_BACKS:
                workflow_name = self._driver._state.complete_task(
                    task, TaskStatus.LOST, utcnow(), run_traceparent=self.result_traceparent
                )
                queued = False
            else:
                task.hand_backs += 1
                task.attempt -= 1
                self._driver._state.requeue_task(task, utcnow())
                queued = True
        if queued:
            self._driver._wake("task", task.task_name)
        else:
            self._driver._wake("workflow", workflow_name)
        return queued

    async def hand_back_unstarted(self) -> bool:
        """Queue the never-started task again at once; neither attempt nor hand-back counted.

        Raises:
            TaskLostError: the lease is gone already.
        """
        with self._driver._lock:
            task = self._held()
            task.attempt -= 1
            self._driver._state.requeue_task(task, utcnow())
        self._driver._wake("task", task.task_name)
        return True

    def _complete(
        self,
        status: TaskStatus,
        error_text: str,
        result: bytes | None,
        failure: FailureDetails | None = None,
    ) -> None:
        with self._driver._lock:
            task = self._held()
            workflow_name = self._driver._state.complete_task(
                task, status, utcnow(), error_text, result, failure, self.result_traceparent
            )
        self._driver._wake("workflow", workflow_name)
        self._wake_key_waiters(task)

    def _wake_key_waiters(self, task: Task) -> None:
        # a slot of its key is free: tasks of its name held back by the key may go now
        # (other names sharing the key find it at their next poll)
        if task.concurrency_key is not None:
            self._driver._wake("task", task.task_name)


class _MemoryScheduleCompleter(ScheduledWorkflowCompleter):
    """The lock on one due schedule."""

    def __init__(self, driver: MemoryDriver, row: ScheduleRow, *, due: bool) -> None:
        self._driver = driver
        self._row = row
        self._parameters = row.parameters  # as read when locked
        self.due = due

    def _locked(self) -> ScheduleRow:
        if self._row.locked_by is not self:
            raise RuntimeError("this schedule completer already applied its change or closed")
        return self._row

    async def run_and_advance(
        self,
        *,
        run: bool,
        next_due_at: datetime | None = None,
        enabled: bool | None = None,
        kill_error: str = "killed",
    ) -> RunOutcome:
        """Ask for a run under the overlap policy (if ``run``), then advance and release."""
        state = self._driver._state
        with self._driver._lock:
            row = self._locked()
            outcome = RunOutcome.MISSED
            if run:
                outcome = state.start_run(row, self._parameters, kill_error, utcnow())
            if next_due_at is not None:
                row.next_due_at = to_utc(next_due_at)
            if enabled is not None:
                row.enabled = enabled
            self._release(row)
        if outcome in (RunOutcome.STARTED, RunOutcome.REPLACED, RunOutcome.CANCELLING):
            self._driver._wake("workflow", row.workflow_name)
        self._driver._wake_admitted()
        return outcome

    async def disable(self) -> None:
        """Disable the schedule and release it."""
        with self._driver._lock:
            row = self._locked()
            row.enabled = False
            self._release(row)

    async def close(self) -> None:
        """Release the schedule unchanged if nothing was applied. Idempotent."""
        with self._driver._lock:
            if self._row.locked_by is self:
                self._row.updates_while_locked.clear()
                self._row.locked_by = None

    def _release(self, row: ScheduleRow) -> None:
        # updates that arrived while locked land after this change, as behind a row lock
        for update in row.updates_while_locked:
            apply_schedule_update(row, update)
        row.updates_while_locked.clear()
        row.locked_by = None
