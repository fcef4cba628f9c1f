"""The records and plain operations behind :class:`~cereal.drivers.memory.MemoryDriver`.

Nothing here locks: every function expects the caller to hold the driver's
lock, and none of them awaits. Records are mutable and never leave this
module's caller; views handed to users are fresh dataclasses from
:mod:`cereal.models`.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cereal import errors
from cereal.checks.times import to_utc
from cereal.drivers._start_key_store import START_KEY_WINDOW
from cereal.drivers.base import start_run_plan
from cereal.models import (
    UNSET,
    DeadTask,
    ExpiredLease,
    FailureDetails,
    HistoryRetention,
    LeaseSettlement,
    NewTask,
    Overlap,
    QueueDepth,
    RequeueOutcome,
    RunOutcome,
    Schedule,
    ScheduleUpdate,
    TaskResultData,
    TaskStatus,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
    WorkflowRetention,
)
from cereal.priority import PRIORITY_STEP

Key = tuple[str, str]
"""(workflow_name, instance_name)."""


@dataclass(eq=False)
class LiveInstance:
    """A starting or running instance with its pending events and tasks."""

    workflow_name: str
    instance_name: str
    parameters: bytes | None
    started_at: datetime
    status: WorkflowInstanceStatus = WorkflowInstanceStatus.STARTING
    payload: bytes | None = None
    enqueued_tasks: int = 0
    completed_tasks: int = 0
    claimed_by: object | None = None
    # pending events in sequence order (dicts keep insertion order)
    events: dict[int, Event] = field(default_factory=dict)
    # the sequence of this instance's entry in its name's ready heap (None: no entry)
    ready_seq: int | None = None
    tasks: dict[int, Task] = field(default_factory=dict)
    # every event received, pending or handled, in sequence order (the event history)
    received: list[Event] = field(default_factory=list)
    # the enqueue's span, handed to every claim (tracing only)
    traceparent: str | None = None
    # the idempotency keys of the run's tasks, each with the sequence of its task
    task_keys: dict[str, int] = field(default_factory=dict)
    # a workflow concurrency key: at most concurrency_limit runs of it started at once;
    # a run over the limit waits (its events are not delivered) until its turn
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    waiting: bool = False

    @property
    def key(self) -> Key:
        """The (workflow_name, instance_name) pair."""
        return (self.workflow_name, self.instance_name)


@dataclass(eq=False)
class Event:
    """One queued event; a ``task_complete`` event carries its task result."""

    seq: int
    type: WorkflowEventType
    instance: LiveInstance
    enqueued_at: datetime
    task_result: TaskResultData | None = None
    # a task_complete event's: when the ended task was enqueued
    task_enqueued_at: datetime | None = None


@dataclass(eq=False)
class Task:
    """A queued task, or a running one when ``lease`` is set."""

    seq: int
    instance: LiveInstance
    task_name: str
    parameters: bytes | None
    start_after: datetime
    enqueued_at: datetime
    lease: int | None = None
    # the lease's deadline: claim or last heartbeat plus the holder's expiry
    lease_deadline: datetime | None = None
    attempt: int = 0
    traceparent: str | None = None
    retry_policy: str | None = None
    hand_backs: int = 0
    # at most concurrency_limit tasks of concurrency_key run at once, and at most
    # rate_limit_starts start per rate_limit_seconds (a key has one or both)
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_limit_starts: int | None = None
    rate_limit_seconds: float | None = None
    priority: int = 0
    idempotency_key: str | None = None

    def ready_rank(self) -> tuple[datetime, int]:
        """The claim's order: due time less a minute per priority level, then sequence."""
        return (self.start_after - timedelta(seconds=self.priority * PRIORITY_STEP), self.seq)


@dataclass(eq=False)
class HistoryRow:
    """One finished run."""

    id: int
    workflow_name: str
    instance_name: str
    parameters: bytes | None
    started_at: datetime
    ended_at: datetime
    result: bytes | None
    err: str | None
    error_type: str | None = None
    error_traceback: str | None = None
    # the events the run received (its event history), trimmed with the row
    received: list[Event] = field(default_factory=list)
    # the run's instance record: its dead tasks are trimmed with the row
    instance: LiveInstance | None = None
    # a failed run started again (requeue_failed_runs): no longer listed as failed
    requeued: bool = False


@dataclass(eq=False)
class DeadEntry:
    """A dead task (failed or lost for good) and the instance record of its run."""

    task: DeadTask
    instance: LiveInstance
    # the task's concurrency key and limits: a requeue runs under them again
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_limit_starts: int | None = None
    rate_limit_seconds: float | None = None
    priority: int = 0


@dataclass(eq=False)
class ScheduleRow:
    """A stored schedule; ``locked_by`` is the completer holding it, if any."""

    id: int
    workflow_name: str
    instance_name: str
    parameters: bytes | None
    enabled: bool
    recurrence: str
    next_due_at: datetime
    last_enqueued_at: datetime | None = None
    overlap: Overlap = "skip"
    catch_up_window: float = 0.0
    run_pending: bool = False
    locked_by: object | None = None
    updates_while_locked: list[ScheduleUpdate] = field(default_factory=list)


class MemoryState:
    """Every structure of one in-memory store (the caller holds the lock)."""

    def __init__(self) -> None:
        self.sequence = itertools.count(1)
        self.leases = itertools.count(1)
        self.history_ids = itertools.count(1)
        self.schedule_ids = itertools.count(1)
        self.instances: dict[Key, LiveInstance] = {}
        # per workflow name, a heap of (oldest event seq, tiebreak, instance) over ready,
        # unclaimed instances; entries go stale (ready_seq no longer matches) and are
        # dropped when they surface, so a claim never walks events
        self.ready: dict[str, list[tuple[int, int, LiveInstance]]] = {}
        self._ready_entries = itertools.count()
        # per task name, queued tasks in sequence order
        self.queued: dict[str, dict[int, Task]] = {}
        # per task name, a heap of (ready rank, seq, task) over its queued tasks, so a
        # claim pops them in rank order; entries go stale (the task left the queue, or
        # came back with another rank) and are dropped when they surface
        self.rank_heaps: dict[str, list[tuple[datetime, int, Task]]] = {}
        self.running: dict[int, Task] = {}
        # running tasks per concurrency key (keys with none are dropped): kept by
        # _start_running and _stop_running, the only ways in and out of running
        self.running_per_key: dict[str, int] = {}
        # per key with a rate limit, when each start in its window leaves it, soonest first
        self.key_starts: dict[str, list[datetime]] = {}
        self.history: list[HistoryRow] = []
        self.latest: dict[Key, HistoryRow] = {}
        self.schedules: dict[Key, ScheduleRow] = {}
        # dead tasks by task seq, oldest first
        self.dead: dict[int, DeadEntry] = {}
        # (workflow name, idempotency key) -> (instance name it started, when)
        self.start_keys: dict[Key, tuple[str, datetime]] = {}
        # the history retention the sweeps last applied, and when it was first applied
        self.retention_applied: tuple[HistoryRetention, datetime] | None = None
        # per workflow concurrency key: its started live runs, and its waiting ones
        # in enqueue order (keys with none are dropped)
        self.key_runs: dict[str, set[LiveInstance]] = {}
        self.key_waiting: dict[str, list[LiveInstance]] = {}
        # workflow names of runs started from waiting, for the driver's wakeups
        self.admitted: list[str] = []

    # ---- instances and events --------------------------------------------------

    def add_instance(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        now: datetime,
        traceparent: str | None = None,
        concurrency: tuple[str, int] | None = None,
    ) -> LiveInstance:
        """Create a live instance with its start event, or raise if one is live.

        With ``concurrency`` (key, limit) the run is started only while fewer
        than the limit of the key's live runs are; else it waits its turn.
        """
        key = (workflow_name, instance_name)
        if key in self.instances:
            raise errors.WorkflowInstanceExistsError()
        inst = LiveInstance(
            workflow_name, instance_name, parameters, started_at=now, traceparent=traceparent
        )
        self.instances[key] = inst
        if concurrency is not None:
            # queued behind the key's waiting runs, then started if it fits: in enqueue order
            inst.concurrency_key, inst.concurrency_limit = concurrency
            inst.waiting = True
            self.key_waiting.setdefault(concurrency[0], []).append(inst)
        self.add_event(inst, WorkflowEventType.START, now)
        if concurrency is not None:
            self._start_waiting(concurrency[0])
        return inst

    def _release_key(self, inst: LiveInstance) -> None:
        """``inst`` ended: start the waiting runs of its key that now fit."""
        key = inst.concurrency_key
        if key is None:
            return
        if inst.waiting:
            self.key_waiting.setdefault(key, []).remove(inst)
        else:
            self.key_runs.setdefault(key, set()).discard(inst)
        self._start_waiting(key)

    def _start_waiting(self, key: str) -> None:
        """Start the oldest waiting runs of ``key`` while fewer than their limit are started."""
        waiting = self.key_waiting.setdefault(key, [])
        started = self.key_runs.setdefault(key, set())
        while waiting:
            first = waiting[0]
            if len(started) >= (first.concurrency_limit or 1):
                break
            waiting.pop(0)
            first.waiting = False
            started.add(first)
            self.mark_ready(first)
            self.admitted.append(first.workflow_name)
        if not waiting:
            self.key_waiting.pop(key, None)
        if not started:
            self.key_runs.pop(key, None)

    def take_admitted(self) -> list[str]:
        """The workflow names of runs started from waiting since the last call."""
        names, self.admitted = self.admitted, []
        return list(dict.fromkeys(names))

    def add_instance_once(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        key: str,
        now: datetime,
        traceparent: str | None = None,
        concurrency: tuple[str, int] | None = None,
    ) -> str | None:
        """:meth:`add_instance` unless ``key`` started a run within the window.

        Returns None when it started this run, else the instance name the key started.
        """
        recorded = self.start_keys.get((workflow_name, key))
        if recorded is not None and recorded[1] > now - START_KEY_WINDOW:
            return recorded[0]
        self.add_instance(workflow_name, instance_name, parameters, now, traceparent, concurrency)
        self.start_keys[(workflow_name, key)] = (instance_name, now)
        return None

    def add_event(
        self,
        inst: LiveInstance,
        type: WorkflowEventType,
        now: datetime,
        task_result: TaskResultData | None = None,
        task_enqueued_at: datetime | None = None,
    ) -> None:
        """Append an event to ``inst``'s queue (it becomes claimable unless claimed)."""
        event = Event(next(self.sequence), type, inst, now, task_result, task_enqueued_at)
        inst.events[event.seq] = event
        inst.received.append(event)
        self.mark_ready(inst)

    def mark_ready(self, inst: LiveInstance) -> None:
        """Put ``inst`` in its ready heap if it is unclaimed, has events and is not there.

        A run waiting for its concurrency key is never ready.
        """
        if (
            inst.claimed_by is not None
            or inst.ready_seq is not None
            or not inst.events
            or inst.waiting
        ):
            return
        inst.ready_seq = next(iter(inst.events))
        heap = self.ready.setdefault(inst.workflow_name, [])
        heapq.heappush(heap, (inst.ready_seq, next(self._ready_entries), inst))

    def claim_instances(
        self, workflow_names: Iterable[str], max_instances: int
    ) -> list[LiveInstance]:
        """Take up to ``max_instances`` ready instances out of the heaps, oldest event first.

        The caller sets each one's ``claimed_by`` before it releases the lock.
        """
        heaps = [heap for name in set(workflow_names) if (heap := self.ready.get(name))]
        claimed: list[LiveInstance] = []
        while len(claimed) < max_instances:
            best: list[tuple[int, int, LiveInstance]] | None = None
            for heap in heaps:
                while heap and not self._is_ready_entry(heap[0]):
                    heapq.heappop(heap)  # stale: claimed, finished or re-queued since
                if heap and (best is None or heap[0] < best[0]):
                    best = heap
            if best is None:
                break
            _, _, inst = heapq.heappop(best)
            inst.ready_seq = None  # no entry left, so it cannot be taken twice
            claimed.append(inst)
        for name in set(workflow_names):
            if name in self.ready and not self.ready[name]:
                del self.ready[name]
        return claimed

    def _is_ready_entry(self, entry: tuple[int, int, LiveInstance]) -> bool:
        seq, _, inst = entry
        return inst.ready_seq == seq and inst.claimed_by is None and self.is_live(inst)

    def release(self, inst: LiveInstance) -> bool:
        """Drop the claim on ``inst``; True when it has events left (claimable again)."""
        inst.claimed_by = None
        self.mark_ready(inst)
        return inst.ready_seq is not None

    def consume_events(self, events: Iterable[Event]) -> None:
        """Delete claimed events."""
        for event in events:
            del event.instance.events[event.seq]

    def is_live(self, inst: LiveInstance) -> bool:
        """True while ``inst`` is the live instance of its names (not finished)."""
        return self.instances.get(inst.key) is inst

    def finish(
        self,
        inst: LiveInstance,
        result: bytes | None,
        err: str | None,
        now: datetime,
        failure: FailureDetails | None = None,
    ) -> None:
        """Write the history row and delete the instance with its events and tasks."""
        row = HistoryRow(
            next(self.history_ids),
            inst.workflow_name,
            inst.instance_name,
            inst.parameters,
            inst.started_at,
            now,
            result,
            err,
            error_type=None if failure is None else failure.error_type,
            error_traceback=None if failure is None else failure.error_traceback,
            received=inst.received,
            instance=inst,
        )
        self.history.append(row)
        self.latest[inst.key] = row
        inst.events.clear()
        inst.ready_seq = None  # its heap entry, if any, is stale now
        for task in list(inst.tasks.values()):
            self.remove_task(task)
        inst.claimed_by = None
        del self.instances[inst.key]
        self._release_key(inst)

    # ---- tasks -----------------------------------------------------------------------

    def add_tasks(self, inst: LiveInstance, tasks: Sequence[NewTask], now: datetime) -> int:
        """Queue ``tasks`` for ``inst``; a missing ``start_after`` means ``now``.

        A task whose idempotency key the run already has is dropped.

        Returns:
            How many were queued.
        """
        added = 0
        for new in tasks:
            if new.idempotency_key is not None and new.idempotency_key in inst.task_keys:
                continue
            start_after = now if new.start_after is None else to_utc(new.start_after)
            task = Task(
                next(self.sequence),
                inst,
                new.task_name,
                new.parameters,
                start_after,
                now,
                traceparent=new.traceparent,
                retry_policy=new.retry_policy,
                concurrency_key=new.concurrency_key,
                concurrency_limit=new.concurrency_limit,
                rate_limit_starts=new.rate_limit_starts,
                rate_limit_seconds=new.rate_limit_seconds,
                priority=new.priority,
                idempotency_key=new.idempotency_key,
            )
            inst.tasks[task.seq] = task
            if new.idempotency_key is not None:
                inst.task_keys[new.idempotency_key] = task.seq
            self._queue(task)
            added += 1
        return added

    def claim_tasks(
        self,
        task_name: str,
        max_tasks: int,
        now: datetime,
        expiry: float,
        retry_policy: str | None = None,
    ) -> list[tuple[Task, int]]:
        """Lease up to ``max_tasks`` ready tasks of ``task_name``, lowest ready rank first.

        Each lease's deadline is ``now`` plus ``expiry`` seconds (the claimer's);
        a task without a stored retry policy gets ``retry_policy``. A task with
        a concurrency key is skipped (it stays queued) while its key has its
        own limit of tasks running, or its rate limit of starts in the window,
        those leased by this call counted.
        """
        queue = self.queued.get(task_name)
        if not queue or max_tasks <= 0:
            return []
        claimed: list[Task] = []
        # claims made by this call per key, on top of running_per_key
        taken: dict[str, int] = {}
        heap = self.rank_heaps.get(task_name, [])
        passed: list[tuple[datetime, int, Task]] = []  # kept queued: pushed back after
        # a rank is never later than its due time, so past now nothing is due
        while heap and len(claimed) < max_tasks and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            rank, seq, task = entry
            if queue.get(seq) is not task or task.ready_rank()[0] != rank:
                continue  # stale
            if task.start_after > now:
                passed.append(entry)  # a higher priority not due yet
                continue
            key = task.concurrency_key
            if key is not None:
                busy = self.running_per_key.get(key, 0) + taken.get(key, 0)
                limit = task.concurrency_limit
                if (limit is not None and busy >= limit) or not self._start_within_rate(
                    task, key, now
                ):
                    passed.append(entry)  # over its key's limits: it stays queued
                    continue
                taken[key] = taken.get(key, 0) + 1
            claimed.append(task)
        for entry in passed:
            heapq.heappush(heap, entry)
        leased: list[tuple[Task, int]] = []
        for task in claimed:
            del queue[task.seq]
            task.lease = next(self.leases)
            task.lease_deadline = now + timedelta(seconds=expiry)
            task.attempt += 1
            if task.retry_policy is None:
                task.retry_policy = retry_policy
            self._start_running(task)
            leased.append((task, task.lease))
        if not queue:
            del self.queued[task_name]
            self.rank_heaps.pop(task_name, None)
        return leased

    def _queue(self, task: Task) -> None:
        """Put ``task`` in its name's queue and rank heap."""
        self.queued.setdefault(task.task_name, {})[task.seq] = task
        rank, seq = task.ready_rank()
        heapq.heappush(self.rank_heaps.setdefault(task.task_name, []), (rank, seq, task))

    def _start_within_rate(self, task: Task, key: str, now: datetime) -> bool:
        """Record a start of ``key`` if its window has room for ``task``'s rate limit."""
        starts, seconds = task.rate_limit_starts, task.rate_limit_seconds
        if starts is None or seconds is None:
            return True
        window = self.key_starts.setdefault(key, [])
        # kept in leaving order (tasks of a key may have different periods)
        del window[: bisect.bisect_right(window, now)]
        if len(window) >= starts:
            return False
        bisect.insort(window, now + timedelta(seconds=seconds))
        return True

    def _start_running(self, task: Task) -> None:
        self.running[task.seq] = task
        key = task.concurrency_key
        if key is not None:
            self.running_per_key[key] = self.running_per_key.get(key, 0) + 1

    def _stop_running(self, task: Task) -> None:
        del self.running[task.seq]
        key = task.concurrency_key
        if key is not None:
            left = self.running_per_key[key] - 1
            if left:
                self.running_per_key[key] = left
            else:
                del self.running_per_key[key]

    def holds_lease(self, task: Task, lease: int) -> bool:
        """True while ``task`` is running under ``lease``."""
        return self.running.get(task.seq) is task and task.lease == lease

    def remove_task(self, task: Task) -> None:
        """Delete a queued or running task (a running task's lease is lost)."""
        del task.instance.tasks[task.seq]
        if task.lease is not None:
            self._stop_running(task)
            task.lease = None
            return
        queue = self.queued[task.task_name]
        del queue[task.seq]
        if not queue:
            del self.queued[task.task_name]
            self.rank_heaps.pop(task.task_name, None)

    def complete_task(
        self,
        task: Task,
        status: TaskStatus,
        now: datetime,
        error_text: str = "",
        result: bytes | None = None,
        failure: FailureDetails | None = None,
        run_traceparent: str | None = None,
    ) -> str:
        """Record how a running task ended as a ``task_complete`` event; return its workflow.

        ``run_traceparent`` is the reporting run's span; without one the
        result carries the task's own (its enqueuing callback's).
        """
        task_result = TaskResultData(
            task_name=task.task_name,
            status=status,
            parameters=task.parameters,
            error_text=error_text,
            result=result,
            error_type=None if failure is None else failure.error_type,
            error_traceback=None if failure is None else failure.error_traceback,
            attempts=max(task.attempt, 1),
            traceparent=run_traceparent or task.traceparent,
        )
        self.remove_task(task)
        self.add_event(
            task.instance, WorkflowEventType.TASK_COMPLETE, now, task_result, task.enqueued_at
        )
        if status is not TaskStatus.SUCCESS:
            self._record_dead(task, task_result, now)
        return task.instance.workflow_name

    def _record_dead(self, task: Task, ended: TaskResultData, now: datetime) -> None:
        inst = task.instance
        dead = DeadTask(
            task_id=str(task.seq),
            task_name=task.task_name,
            workflow_name=inst.workflow_name,
            instance_name=inst.instance_name,
            status=ended.status,
            parameters=task.parameters,
            error_text=ended.error_text,
            error_type=ended.error_type,
            error_traceback=ended.error_traceback,
            attempts=ended.attempts,
            enqueued_at=task.enqueued_at,
            died_at=now,
            run_live=True,
        )
        self.dead[task.seq] = DeadEntry(
            dead,
            inst,
            task.concurrency_key,
            task.concurrency_limit,
            task.rate_limit_starts,
            task.rate_limit_seconds,
            task.priority,
        )

    def dead_view(self, entry: DeadEntry) -> DeadTask:
        """The dead task as listed now (whether its run is still live)."""
        return replace(entry.task, run_live=self.is_live(entry.instance))

    def requeue_dead(self, task_id: str, now: datetime) -> tuple[RequeueOutcome, str | None]:
        """Queue the dead task ``task_id`` again in its live run; the outcome and task name."""
        entry = self.dead.get(int(task_id))
        if entry is None:
            return RequeueOutcome.NOT_FOUND, None
        if not self.is_live(entry.instance):
            return RequeueOutcome.RUN_FINISHED, None
        dead = entry.task
        # the dead task's idempotency key passes to the task that replaces it
        keys = entry.instance.task_keys
        key = next((k for k, seq in keys.items() if seq == int(task_id)), None)
        if key is not None:
            del keys[key]
        again = NewTask(
            dead.task_name,
            dead.parameters,
            concurrency_key=entry.concurrency_key,
            concurrency_limit=entry.concurrency_limit,
            rate_limit_starts=entry.rate_limit_starts,
            rate_limit_seconds=entry.rate_limit_seconds,
            priority=entry.priority,
            idempotency_key=key,
        )
        self.add_tasks(entry.instance, [again], now)
        entry.instance.enqueued_tasks += 1
        del self.dead[int(task_id)]
        return RequeueOutcome.REQUEUED, dead.task_name

    def requeue_task(self, task: Task, start_after: datetime) -> None:
        """End a running task's lease and queue it again from ``start_after``."""
        self._stop_running(task)
        task.lease = None
        task.lease_deadline = None
        task.start_after = start_after
        self._queue(task)

    def expired_leases(self, now: datetime, limit: int) -> list[ExpiredLease]:
        """Up to ``limit`` running tasks whose lease deadline is before ``now``, oldest first."""
        expired = sorted(
            (task for task in self.running.values() if self._expired(task, now)),
            key=lambda task: (task.lease_deadline, task.seq),
        )
        return [
            ExpiredLease(
                task_id=str(task.seq),
                lease=str(task.lease),
                attempt=task.attempt,
                task_name=task.task_name,
                workflow_name=task.instance.workflow_name,
                instance_name=task.instance.instance_name,
                retry_policy=task.retry_policy,
            )
            for task in expired[: max(limit, 0)]
        ]

    def settle(self, settlement: LeaseSettlement, now: datetime) -> str | None:
        """Apply ``settlement`` if its task still runs under its lease, expired at ``now``.

        Returns:
            The settled task's workflow name, or ``None`` when nothing changed.
        """
        seq = settlement.task_id
        task = self.running.get(int(seq)) if seq.isascii() and seq.isdigit() else None
        if task is None or str(task.lease) != settlement.lease or not self._expired(task, now):
            return None
        if settlement.delay is not None:
            self.requeue_task(task, now + timedelta(seconds=settlement.delay))
            return task.instance.workflow_name
        return self.complete_task(task, TaskStatus.LOST, now, settlement.error)

    @staticmethod
    def _expired(task: Task, now: datetime) -> bool:
        return task.lease_deadline is not None and task.lease_deadline < now

    def queue_depths(self, now: datetime) -> list[QueueDepth]:
        """Due queued tasks per task name; ready, unclaimed live instances per workflow name."""
        depths: list[QueueDepth] = []
        for task_name, queue in sorted(self.queued.items()):
            due = [task.enqueued_at for task in queue.values() if task.start_after <= now]
            if due:
                depths.append(QueueDepth("task", task_name, len(due), min(due)))
        waiting: dict[str, list[datetime]] = {}
        for inst in self.instances.values():
            if inst.claimed_by is None and inst.events:
                oldest = next(iter(inst.events.values())).enqueued_at
                waiting.setdefault(inst.workflow_name, []).append(oldest)
        for workflow_name, times in sorted(waiting.items()):
            depths.append(QueueDepth("workflow", workflow_name, len(times), min(times)))
        return depths

    # ---- history -----------------------------------------------------------------

    def trim_history(self, retention: HistoryRetention, now: datetime) -> int:
        """Apply ``retention`` (and record it); return how many rows were removed."""
        if self.retention_applied is None or self.retention_applied[0] != retention:
            self.retention_applied = (retention, now)
        expired = now - START_KEY_WINDOW
        self.start_keys = {k: v for k, v in self.start_keys.items() if v[1] > expired}
        # rate windows whose every start has left
        self.key_starts = {k: w for k, w in self.key_starts.items() if w and w[-1] > now}
        before = len(self.history)
        rows = self.history
        if retention.max_age is not None:
            oldest = now - timedelta(seconds=retention.max_age)
            rows = [row for row in rows if row.ended_at >= oldest]
        for workflow_name, rule in retention.per_workflow.items():
            rows = _apply_workflow_rule(rows, workflow_name, rule, now)
        if len(rows) > retention.max_rows:
            keep = max(retention.max_rows - retention.margin_rows, 0)
            newest = sorted(rows, key=lambda row: (row.ended_at, row.id), reverse=True)[:keep]
            kept_ids = {row.id for row in newest}
            rows = [row for row in rows if row.id in kept_ids]
        if len(rows) == before:
            return 0
        self.history = rows
        self.latest = {}
        for row in rows:
            self.latest[(row.workflow_name, row.instance_name)] = row
        self._trim_dead(rows)
        return before - len(rows)

    def _trim_dead(self, kept_rows: list[HistoryRow]) -> None:
        """Drop the dead tasks of runs that are neither live nor kept in the history."""
        kept = {id(row.instance) for row in kept_rows}
        self.dead = {
            seq: entry
            for seq, entry in self.dead.items()
            if self.is_live(entry.instance) or id(entry.instance) in kept
        }

    # ---- views -------------------------------------------------------------------

    def instance_view(self, key: Key) -> WorkflowInstanceData | None:
        """The live instance of ``key`` if any, else its newest finished run."""
        inst = self.instances.get(key)
        if inst is not None:
            return live_view(inst)
        row = self.latest.get(key)
        if row is None:
            return None
        return WorkflowInstanceData(
            workflow_name=row.workflow_name,
            instance_name=row.instance_name,
            status=WorkflowInstanceStatus.COMPLETED,
            parameters=row.parameters,
            result=row.result,
            err=row.err,
            started_at=row.started_at,
            ended_at=row.ended_at,
            error_type=row.error_type,
            error_traceback=row.error_traceback,
            concurrency_key=None if row.instance is None else row.instance.concurrency_key,
            concurrency_limit=None if row.instance is None else row.instance.concurrency_limit,
        )

    def start_run(
        self, row: ScheduleRow, parameters: bytes | None, kill_error: str, now: datetime
    ) -> RunOutcome:
        """Ask ``row`` for a run under its overlap policy (see ``start_run_plan``)."""
        inst = self.instances.get((row.workflow_name, row.instance_name))
        outcome = start_run_plan(row.overlap, inst is not None, row.run_pending)
        if outcome is RunOutcome.REPLACED and inst is not None:
            self.finish(inst, None, kill_error, now)
        if outcome.started:
            self.add_instance(row.workflow_name, row.instance_name, parameters, now)
            row.last_enqueued_at = now
            row.run_pending = False
        elif outcome is RunOutcome.CANCELLING and inst is not None:
            self.add_event(inst, WorkflowEventType.CANCEL, now)
            row.run_pending = True
        elif outcome is RunOutcome.BUFFERED:
            row.run_pending = True
        return outcome

    def schedule_view(self, row: ScheduleRow) -> Schedule:
        """A :class:`Schedule` with the last run's times from history."""
        last = self.latest.get((row.workflow_name, row.instance_name))
        return Schedule(
            id=row.id,
            enabled=row.enabled,
            workflow_name=row.workflow_name,
            instance_name=row.instance_name,
            parameters=row.parameters,
            recurrence=row.recurrence,
            next_due_at=row.next_due_at,
            last_enqueued_at=row.last_enqueued_at,
            last_start=None if last is None else last.started_at,
            last_end=None if last is None else last.ended_at,
            overlap=row.overlap,
            catch_up_window=row.catch_up_window,
            run_pending=row.run_pending,
        )


def live_view(inst: LiveInstance) -> WorkflowInstanceData:
    """A fresh view of a live instance (no result, no error)."""
    return WorkflowInstanceData(
        workflow_name=inst.workflow_name,
        instance_name=inst.instance_name,
        status=inst.status,
        parameters=inst.parameters,
        payload=inst.payload,
        started_at=inst.started_at,
        traceparent=inst.traceparent,
        concurrency_key=inst.concurrency_key,
        concurrency_limit=inst.concurrency_limit,
        waiting_for_key=inst.waiting,
    )


def resolve_schedule_update(row: ScheduleRow, update: ScheduleUpdate) -> ScheduleUpdate:
    """``update`` with its ``due_rule`` condition decided against ``row`` as it is now."""
    if update.due_rule is None:
        return update
    applies = not row.enabled and row.recurrence == update.due_rule
    return replace(update, next_due_at=update.next_due_at if applies else None, due_rule=None)


def apply_schedule_update(row: ScheduleRow, update: ScheduleUpdate) -> None:
    """Apply every field ``update`` sets to ``row`` (its ``due_rule`` already resolved)."""
    if update.enabled is not None:
        row.enabled = update.enabled
    if update.parameters is not UNSET:
        row.parameters = update.parameters
    if update.recurrence is not None:
        row.recurrence = update.recurrence
    if update.next_due_at is not None:
        row.next_due_at = to_utc(update.next_due_at)
    if update.overlap is not None:
        row.overlap = update.overlap
    if update.catch_up_window is not None:
        row.catch_up_window = update.catch_up_window


def _apply_workflow_rule(
    rows: list[HistoryRow], workflow_name: str, rule: WorkflowRetention, now: datetime
) -> list[HistoryRow]:
    """``rows`` without the runs of ``workflow_name`` that its rule no longer keeps."""
    own = [row for row in rows if row.workflow_name == workflow_name]
    kept = own
    if rule.max_age is not None:
        oldest = now - timedelta(seconds=rule.max_age)
        kept = [row for row in kept if row.ended_at >= oldest]
    if rule.max_runs is not None:
        kept = sorted(kept, key=lambda row: (row.ended_at, row.id))
        kept = kept[max(len(kept) - rule.max_runs, 0) :]
    if len(kept) == len(own):
        return rows
    kept_ids = {row.id for row in kept}
    return [row for row in rows if row.workflow_name != workflow_name or row.id in kept_ids]
