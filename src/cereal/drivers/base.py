"""The storage contract every cereal driver implements.

Rules that hold for every driver (the conformance suite checks each one):

1. **Bytes in, bytes out.** Drivers store and return encoded JSON bytes and
   never validate, encode or size-check values: the Manager does that once.
   ``None`` means "no bytes" and is stored as SQL NULL, never as ``null``.
   (The ``grpc://`` driver's server is the exception: its clients need not be
   Managers, so it applies the Manager's checks to every request, see
   :mod:`cereal.checks.validation`, and refuses bytes that are not JSON.)
2. **Drivers raise only** :mod:`cereal.errors`. Backend exceptions are
   translated; unknown failures become :class:`~cereal.errors.DriverError`
   with the cause chained.
3. **Leaving a completer without a decision rolls back.** The dequeued event
   becomes visible again (redelivered) with identical counts; a decision is
   all-or-nothing (consume the event, store payload and counters, insert the
   tasks, or finalise the instance).
4. **One callback per instance at a time, anywhere.** While a
   :class:`WorkflowCompleter` is open, no other dequeue returns an event of the
   same instance, in any process sharing the store.
5. **The driver's clock decides** what is due: a task's default
   ``start_after``, task eligibility, schedule due-ness and lease expiry.
   PostgreSQL uses the database's ``now()``; memory and SQLite the host clock.
6. **Events of one instance are ordered by a monotonic sequence**, never by a
   timestamp, so a cancel can never be seen before its start.
7. **Task leases.** A claimed task carries a lease with a deadline stored
   with it: the claim's time plus the ``task_expiry`` the claimer passed to
   :meth:`Driver.dequeue_tasks`. ``heartbeat`` moves the deadline to now plus
   that same expiry (the holder's, kept with the lease).
   :meth:`Driver.sweep` turns leases whose stored deadline has passed, by the
   driver's clock, into ``LOST`` results for the workflow; the sweeper's own
   ``task_expiry`` never judges a lease that has a deadline, so Managers with
   different expiries can share a store. Once a lease is gone (expired, the
   instance ended, or abandoned) every call on its completer raises
   :class:`~cereal.errors.TaskLostError` and changes nothing.
8. **Optional knobs are attributes with defaults** (poll intervals,
   capabilities), not optional interfaces.
9. **Live workers.** A started Manager registers a row
   (:meth:`Driver.register_worker`), refreshes it every heartbeat and removes
   it at stop. A row not refreshed within the expiry stored with it is dead:
   :meth:`Driver.list_workers` never returns it, and the next
   :meth:`Driver.refresh_worker` (of any worker) deletes it.

A driver may be shared by several Managers in one process: ``init`` and
``close`` are reference-counted by this base class, and a driver supports
``init -> close -> init`` cycles.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import ClassVar, Literal, Self

from cereal import errors
from cereal.checks import times
from cereal.models import (
    FailureDetails,
    HistoryRetention,
    InstanceEvent,
    InstanceTask,
    ListWorkflowFilter,
    NewTask,
    NewWorker,
    Overlap,
    QueueDepth,
    RunOutcome,
    Schedule,
    ScheduleUpdate,
    SweepReport,
    TaskData,
    TaskQueueStats,
    WorkerInfo,
    WorkflowEvent,
    WorkflowInstanceData,
)

logger = logging.getLogger(__name__)

WorkKind = Literal["workflow", "task", "schedule"]
"""What kind of work a wakeup announces."""

DEFAULT_TASK_EXPIRY = 60.0
"""Seconds a task lease lasts without a heartbeat when the claimer passes no ``task_expiry``."""

ClaimedWorkflow = tuple[list[WorkflowEvent], "WorkflowCompleter"]
"""One claimed instance: its events in sequence order, and the completer that decides them."""

WakeupListener = Callable[[WorkKind, str | None], None]
"""Called with the kind of new work and its name (``None``: any name).

Listeners may be called from any thread and must be cheap and thread-safe.
"""

# Capabilities a driver may declare; tests needing one skip on drivers without it.
DURABLE = "durable"  # survives a process restart
MULTIPROCESS = "multiprocess"  # several processes may share the store safely
RESUMABLE_LEASES = "resumable_leases"  # a lease is taken up again by its token (resume_task_lease)


class WorkflowCompleter(abc.ABC):
    """Holds the claimed event(s) of one instance until a decision is applied or it is closed.

    A claim holds one event (:meth:`Driver.dequeue_workflow`) or a batch of
    them (:meth:`Driver.claim_workflows`). Exactly one of :meth:`continue_`,
    :meth:`done` or :meth:`fail` may be called, for the whole batch;
    afterwards (or without any) :meth:`close` releases the claim. A completer
    closed without a decision rolls back: every claimed event is redelivered.
    """

    @abc.abstractmethod
    async def continue_(self, payload: bytes | None, tasks: Sequence[NewTask]) -> None:
        """Apply a continue decision atomically.

        Consume every claimed event (and the task results they refer to),
        store the payload, mark the instance ``running``, add ``len(tasks)``
        to the enqueued count, set the completed count to the last claimed
        event's ``completed_task_count``, and insert ``tasks`` in order.

        Raises:
            WorkflowClaimLostError: the instance ended (killed) or the claim
                expired meanwhile; nothing was stored.
        """

    @abc.abstractmethod
    async def done(self, result: bytes | None) -> None:
        """Finish the instance with ``result``.

        Write a history row and delete the live instance with its events,
        tasks and unconsumed task results.

        Raises:
            WorkflowClaimLostError: as for :meth:`continue_`.
        """

    @abc.abstractmethod
    async def fail(self, error: str) -> None:
        """Finish the instance with the error text ``error`` (as :meth:`done`).

        Raises:
            WorkflowClaimLostError: as for :meth:`continue_`.
        """

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Finish the instance with ``failure``'s text, exception type and traceback.

        This default keeps only the text (:meth:`fail`); drivers that store
        the type and traceback with the history row override it.

        Raises:
            WorkflowClaimLostError: as for :meth:`continue_`.
        """
        await self.fail(failure.error)

    async def heartbeat(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Keep the claim alive during a long callback (drivers with claim leases)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the event; roll back if no decision was applied. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class TaskCompleter(abc.ABC):
    """The lease on one claimed task: heartbeat it, then report how it ended."""

    lease_token: str | None = None
    """What proves this lease to :meth:`Driver.resume_task_lease` (None: not resumable)."""

    @abc.abstractmethod
    async def heartbeat(self) -> None:
        """Move the lease's deadline to now plus the expiry it was claimed with.

        Raises:
            TaskLostError: the task is gone (its workflow ended, it expired, or
                it was already completed); the runner should cancel it.
        """

    @abc.abstractmethod
    async def succeed(self, result: bytes | None) -> None:
        """Record success with ``result`` and queue a ``task_complete`` event.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """

    @abc.abstractmethod
    async def fail(self, error: str) -> None:
        """Record failure with the error text ``error`` (as :meth:`succeed`)."""

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Record failure with the exception's type and traceback as well as its text.

        This default keeps only the text (:meth:`fail`); drivers that store
        the type and traceback override it.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        await self.fail(failure.error)

    @abc.abstractmethod
    async def abandon(self) -> None:
        """Give the task up now: its workflow sees it as ``LOST`` at once.

        Used by :meth:`hand_back` for a task handed back too often, and by
        its default for drivers without hand-back.

        Raises:
            TaskLostError: the lease is gone already.
        """

    async def retry(self, error: str, delay: float) -> None:
        """Queue the task again ``delay`` seconds from now: a failed attempt with attempts left.

        The lease ends; the stored attempt count stays (the next claim adds
        one) and the workflow sees nothing. A driver without retries fails
        the task with ``error`` instead (this default).

        Raises:
            TaskLostError: the lease is gone; nothing changed.
        """
        await self.fail(error)

    async def hand_back(self) -> bool:
        """Give the task back to the queue at once, for any worker (a graceful stop).

        The attempt is not counted and no backoff applies; the task's
        hand-back count grows by one. A task handed back
        :data:`~cereal.retry.DEFAULT_MAX_HAND_BACKS` times before is reported
        ``LOST`` instead. Returns True when queued again, False when reported
        ``LOST``. A driver without hand-back reports ``LOST`` (this default).

        Raises:
            TaskLostError: the lease is gone already.
        """
        await self.abandon()
        return False


class ScheduledWorkflowCompleter(abc.ABC):
    """Holds one schedule (locked against other schedulers) until applied or closed.

    A schedule is handed out for one of two reasons, told by :attr:`due`: its
    due time has passed (by the driver's clock), or a run it buffered
    (``run_pending``) can start because its instance is no longer live.
    """

    due: bool = True
    """True when the schedule was handed out because its due time passed; False when
    only its waiting run became ready (then the due time must not move)."""

    @abc.abstractmethod
    async def run_and_advance(
        self,
        *,
        run: bool,
        next_due_at: datetime | None = None,
        enabled: bool | None = None,
        kill_error: str = "killed",
    ) -> RunOutcome:
        """Ask for a run under the schedule's stored overlap policy and advance it, atomically.

        With ``run`` the driver applies the policy (see :func:`start_run_plan`):
        no live instance -> enqueue one with the parameters as read when the
        schedule was handed out, clear ``run_pending``, set ``last_enqueued_at``;
        live and ``skip`` -> nothing; ``buffer_one`` -> set ``run_pending``;
        ``cancel_other`` -> set ``run_pending`` and, unless it was set already,
        append a cancel event to the live instance; ``terminate_other`` -> kill
        the live instance with ``kill_error`` and enqueue a new one. Without
        ``run`` nothing starts (``MISSED``). ``next_due_at``/``enabled``, when
        given, are stored too (an update made meanwhile wins, as ever).
        """

    async def enqueue_and_update(self, *, next_due_at: datetime, enabled: bool) -> bool:
        """Ask for a run and advance the schedule (:meth:`run_and_advance` with ``run``).

        Returns True when an instance was enqueued; with the default ``skip``
        policy a live instance means the run is skipped and only ``next_due_at``
        and ``enabled`` change (``last_enqueued_at`` does not).
        """
        outcome = await self.run_and_advance(run=True, next_due_at=next_due_at, enabled=enabled)
        return outcome.started

    @abc.abstractmethod
    async def disable(self) -> None:
        """Disable the schedule (its rule no longer parses) and release it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the schedule; roll back if nothing was applied. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _is_dead(worker: NewWorker, last_seen_at: datetime, now: datetime) -> bool:
    """Whether a worker row went unrefreshed for longer than its own expiry."""
    return (now - last_seen_at).total_seconds() > worker.expiry


def start_run_plan(overlap: str, live: bool, pending: bool) -> RunOutcome:
    """What asking for a run does, given the policy and the state read in the transaction.

    Every driver applies this one table: ``STARTED`` (enqueue), ``REPLACED``
    (kill, then enqueue), ``SKIPPED``, ``BUFFERED`` (set ``run_pending``) or
    ``CANCELLING`` (set ``run_pending`` and send a cancel: only the first time,
    so a refused cancel is not repeated at every due time).
    """
    if not live:
        return RunOutcome.STARTED
    if overlap == "terminate_other":
        return RunOutcome.REPLACED
    if overlap == "buffer_one":
        return RunOutcome.BUFFERED
    if overlap == "cancel_other":
        return RunOutcome.BUFFERED if pending else RunOutcome.CANCELLING
    return RunOutcome.SKIPPED


def check_claim_sizes(max_instances: int, max_events: int) -> None:
    """Refuse a claim for fewer than one instance or event.

    Raises:
        ValueError: ``max_instances`` or ``max_events`` is below 1.
    """
    if max_instances < 1 or max_events < 1:
        raise ValueError("claim_workflows needs max_instances >= 1 and max_events >= 1")


async def _wait_for(pending: concurrent.futures.Future[None]) -> None:
    """Wait for another caller's open/close to end; cancelling this wait leaves it running."""
    await asyncio.shield(asyncio.wrap_future(pending))


class Driver(abc.ABC):
    """Durable storage for workflow instances, tasks and schedules.

    Subclasses implement :meth:`_open`, :meth:`_close` and the abstract
    storage methods; this base class provides reference-counted ``init``/
    ``close``, the wakeup listener registry and the single-task dequeue.
    """

    default_task_poll_interval: float = 1.0
    """Seconds between task polls when the Manager sets none."""
    default_workflow_poll_interval: float = 1.0
    """Seconds between workflow-event polls when the Manager sets none."""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    """What this driver offers beyond the contract (``DURABLE``, ``MULTIPROCESS``)."""

    def __init__(self, *, retention: HistoryRetention | None = None) -> None:
        self.retention = retention or HistoryRetention()
        self._open_count = 0
        self._open_lock = threading.Lock()
        # the open or last close in progress; a concurrent Future because a driver may be
        # shared across event loops (e.g. one per thread), which an asyncio.Lock cannot span
        self._transition: concurrent.futures.Future[None] | None = None
        self._listeners: list[WakeupListener] = []
        # the default worker registry (see register_worker): rows of this object only
        self._local_workers: dict[str, tuple[NewWorker, datetime, datetime]] = {}
        self._local_workers_lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------

    async def init(self) -> None:
        """Open the store (and apply pending migrations) unless already open.

        Returns only once the store is open: a call made while another user's
        open (or the last close) is in progress waits for it. If that open
        fails, the waiting call tries to open the store itself.
        """
        while True:
            with self._open_lock:
                pending = self._transition
                if pending is None:
                    if self._open_count > 0:
                        self._open_count += 1
                        return
                    pending = self._transition = concurrent.futures.Future()
                    mine = True
                else:
                    mine = False
            if not mine:
                await _wait_for(pending)
                continue  # look again: open now, or the open failed and this call tries
            try:
                await self._open()
            except BaseException:
                self._end_transition(pending, count=0)
                raise
            self._end_transition(pending, count=1)
            return

    async def close(self) -> None:
        """Release one ``init``; the last one closes the store. Idempotent when closed."""
        while True:
            with self._open_lock:
                pending = self._transition
                if pending is None:
                    if self._open_count == 0:
                        return
                    self._open_count -= 1
                    if self._open_count > 0:
                        return
                    pending = self._transition = concurrent.futures.Future()
                    mine = True
                else:
                    mine = False
            if not mine:
                await _wait_for(pending)
                continue
            try:
                await self._close()
            finally:
                self._end_transition(pending, count=0)
            return

    def _end_transition(self, pending: concurrent.futures.Future[None], *, count: int) -> None:
        with self._open_lock:
            self._open_count = count
            self._transition = None
        pending.set_result(None)

    @property
    def is_open(self) -> bool:
        """True between the first ``init`` and the matching last ``close``."""
        return self._open_count > 0

    async def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns the names applied (none for memory)."""
        await self.init()
        await self.close()
        return []

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect and migrate (called on the first ``init``)."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Disconnect (called on the last ``close``)."""

    async def __aenter__(self) -> Self:
        await self.init()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- wakeups ---------------------------------------------------------------

    def add_wakeup_listener(self, listener: WakeupListener) -> None:
        """Call ``listener`` whenever this driver learns of new ready work."""
        with self._open_lock:
            self._listeners.append(listener)

    def remove_wakeup_listener(self, listener: WakeupListener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._open_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _wake(self, kind: WorkKind, name: str | None = None) -> None:
        """Tell every listener about new work (call after the commit that made it)."""
        with self._open_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(kind, name)
            except Exception:  # a broken listener must not break the driver
                logger.exception("wakeup listener failed")

    # ---- workflow instances -----------------------------------------------------

    @abc.abstractmethod
    async def enqueue_workflow(
        self, workflow_name: str, instance_name: str, parameters: bytes | None
    ) -> None:
        """Create a live instance and its ``start`` event atomically.

        Raises:
            WorkflowInstanceExistsError: a live instance with these names exists;
                nothing was stored.
        """

    async def enqueue_workflow_in_transaction(
        self,
        connection: object,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
    ) -> None:
        """As :meth:`enqueue_workflow`, on the caller's open transaction ``connection``.

        The instance exists if and only if the caller commits; the driver
        neither commits nor rolls back, and arranges for workers to be woken
        by the commit. This default refuses: the driver's store is not
        reachable through a caller's connection.

        Raises:
            TypeError: always here; a driver that supports it names the
                connection types it takes.
        """
        raise TypeError(
            f"{type(self).__name__} cannot enqueue on a caller's connection: transactional "
            "enqueue needs the SQLite driver (a sqlite3.Connection) or the PostgreSQL driver "
            "(a psycopg Connection or AsyncConnection)"
        )

    @abc.abstractmethod
    async def dequeue_workflow(
        self, workflow_names: Sequence[str], *, claim_expiry: float = DEFAULT_TASK_EXPIRY
    ) -> tuple[WorkflowEvent, WorkflowCompleter]:
        """Claim the oldest event (by sequence) of any unclaimed instance of these names.

        For a ``task_complete`` event the task result is consumed with the
        event and the completed count in the returned event is already
        incremented. A missing result gives status ``UNUSABLE_RESULT``.

        ``claim_expiry`` is the claimer's own expiry: a driver whose claims
        can outlive a crashed claimer (SQLite) stores it with the claim, and the
        sweep releases the claim only once that long has passed since its last
        heartbeat, whatever expiry the sweeping process uses. Drivers whose
        claims end with their holder's session (PostgreSQL, memory) ignore it.

        Raises:
            NoWorkflowInstancesError: nothing is ready.
        """

    async def claim_workflows(
        self,
        workflow_names: Sequence[str],
        *,
        max_instances: int = 1,
        max_events: int = 1,
        claim_expiry: float = DEFAULT_TASK_EXPIRY,
    ) -> list[ClaimedWorkflow]:
        """Claim up to ``max_instances`` instances, each with up to ``max_events`` events.

        The batch form of :meth:`dequeue_workflow`: instances whose oldest
        ready event is oldest come first, and each claimed instance comes
        with its oldest events in sequence order. Counts are as
        :meth:`dequeue_workflow` gives them, event by event: each event's
        ``completed_task_count`` includes the ``task_complete`` events up to
        and including it; ``enqueued_task_count`` is the stored count (the
        caller adds what earlier callbacks of the batch enqueued). One
        completer decides the whole batch of an instance. Returns an empty
        list when nothing is ready.

        This default claims one event of one instance; drivers override it
        to claim in one round trip.
        """
        check_claim_sizes(max_instances, max_events)
        try:
            event, completer = await self.dequeue_workflow(
                workflow_names, claim_expiry=claim_expiry
            )
        except errors.NoWorkflowInstancesError:
            return []
        return [([event], completer)]

    async def _dequeue_one_claimed(
        self, workflow_names: Sequence[str], claim_expiry: float
    ) -> tuple[WorkflowEvent, WorkflowCompleter]:
        """:meth:`dequeue_workflow` for a driver whose :meth:`claim_workflows` does the work.

        Raises:
            NoWorkflowInstancesError: nothing is ready.
        """
        claimed = await self.claim_workflows(workflow_names, claim_expiry=claim_expiry)
        if not claimed:
            raise errors.NoWorkflowInstancesError()
        [([event], completer)] = claimed
        return event, completer

    @abc.abstractmethod
    async def cancel_workflow(self, workflow_name: str, instance_name: str) -> None:
        """Append a ``cancel`` event to the live instance.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """

    @abc.abstractmethod
    async def kill_workflow(self, workflow_name: str, instance_name: str, error: str) -> None:
        """Finish the live instance at once with ``error``; no callback runs.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """

    @abc.abstractmethod
    async def get_workflow_instance(
        self, workflow_name: str, instance_name: str
    ) -> WorkflowInstanceData:
        """The live instance if any, else the newest finished run.

        Raises:
            WorkflowInstanceNotFoundError: neither exists.
        """

    @abc.abstractmethod
    async def list_workflow_instances(
        self, where: ListWorkflowFilter
    ) -> list[WorkflowInstanceData]:
        """One entry per (workflow, instance) pair: the live row, else the newest finished run.

        Sorted by workflow name, then instance name, and cut to the window
        ``where.offset`` / ``where.limit`` of that order (:meth:`ListWorkflowFilter.page`).
        """

    # ---- read-only inspection (dashboard) ----------------------------------------------

    @abc.abstractmethod
    async def list_instance_tasks(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[InstanceTask]:
        """The queued and running tasks of the live instance, in enqueue order.

        Empty when no instance with these names is live. With ``limit`` or
        ``before`` the answer is one page, newest first: the ``limit`` (all
        when ``None``) newest tasks enqueued before the task whose
        ``task_id`` is ``before`` (keyset paging: pass the last ``task_id`` of
        a page to get the next, older one). Callers pass them only when set,
        so a driver written before paging keeps working for full listings.

        Raises:
            ValueError: ``limit`` is below 1, or ``before`` is not one of this
                driver's task ids.
        """

    @abc.abstractmethod
    async def list_instance_events(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: int | None = None,
    ) -> list[InstanceEvent]:
        """The event history of one run of these names, oldest first.

        The live instance's events, else those of the newest finished run still
        kept by the retention policy (empty when there is neither): handled
        events and, marked ``pending``, those still waiting for a decision.
        With ``limit`` or ``before`` the answer is one page, newest first: the
        ``limit`` (all when ``None``) newest events whose ``seq`` is below
        ``before`` (pass the last ``seq`` of a page to get the next, older
        one); events arriving meanwhile never shift the older pages.

        Raises:
            ValueError: ``limit`` is below 1 or ``before`` below 0.
        """

    @abc.abstractmethod
    async def task_queue_stats(self) -> list[TaskQueueStats]:
        """One entry per task name with queued or running tasks, ordered by name."""

    # ---- tasks ----------------------------------------------------------------------

    @abc.abstractmethod
    async def dequeue_tasks(
        self,
        task_name: str,
        max_tasks: int,
        *,
        task_expiry: float = DEFAULT_TASK_EXPIRY,
        retry_policy: str | None = None,
    ) -> list[tuple[TaskData, TaskCompleter]]:
        """Claim up to ``max_tasks`` ready tasks of ``task_name``, oldest first.

        A task is ready when it is queued and its ``start_after`` has passed.
        SQLite and PostgreSQL take the earliest ``start_after`` first (then
        the id), which for a task enqueued without delay is its enqueue time,
        so a claim never reads tasks that are not yet due.
        Each lease's deadline is stored as now (the driver's clock) plus
        ``task_expiry`` seconds, the claimer's expiry; each completer's
        ``heartbeat`` renews it by the same amount. Each claim adds one to
        the task's attempt count. ``retry_policy`` (the claimer's executor
        policy, stored form) is stored with every claimed task that has none
        yet, so later attempts and the sweep of an expired lease follow it;
        each :class:`TaskData` carries the task's stored policy. Returns an
        empty list when none is ready.
        """

    async def dequeue_task(
        self,
        task_name: str,
        *,
        task_expiry: float = DEFAULT_TASK_EXPIRY,
        retry_policy: str | None = None,
    ) -> tuple[TaskData, TaskCompleter]:
        """Claim one ready task (its lease lasts ``task_expiry`` seconds per heartbeat).

        Raises:
            NoTasksError: none is ready.
        """
        claimed = await self.dequeue_tasks(
            task_name, 1, task_expiry=task_expiry, retry_policy=retry_policy
        )
        if not claimed:
            raise errors.NoTasksError()
        return claimed[0]

    async def resume_task_lease(
        self, task_id: str, lease_token: str
    ) -> tuple[TaskData, TaskCompleter]:
        """Take up a running task's lease again, by its id and its completer's ``lease_token``.

        For a holder that lost its completer but not its lease (``cereal
        serve`` restarted while its client ran the task on). The lease stays
        what it was (token, stored expiry, attempt); its deadline moves as by
        a heartbeat. Drivers declaring ``RESUMABLE_LEASES`` implement it.

        Raises:
            TaskLostError: no task ``task_id`` runs under ``lease_token`` (it
                ended, expired or was claimed again; nothing changed), or the
                driver cannot resume leases (this default).
        """
        raise errors.TaskLostError(f"{type(self).__name__} cannot resume task leases")

    @abc.abstractmethod
    async def sweep(self, task_expiry: float) -> SweepReport:
        """Maintenance, safe to run from many Managers at once.

        Turns tasks whose stored lease deadline has passed into ``LOST``
        results with ``task_complete`` events (or, while the task's stored
        retry policy leaves attempts, queues them again after its backoff),
        releases workflow claims idle for longer than ``task_expiry`` seconds
        (drivers that lease them), and trims history per :attr:`retention`.
        ``task_expiry`` judges a task lease only when it has no stored
        deadline (taken by a cereal older than the deadline column): then it
        expires ``task_expiry`` seconds after its last heartbeat, as before.
        """

    # ---- live workers ---------------------------------------------------------------
    # These defaults keep the rows in this driver object, so they list the
    # Managers of this process only; drivers whose store is shared override all four.

    async def register_worker(self, worker: NewWorker) -> None:
        """Store ``worker``'s row as seen now (replacing a row with its id)."""
        now = times.utcnow()
        with self._local_workers_lock:
            known = self._local_workers.get(worker.id)
            self._local_workers[worker.id] = (worker, known[1] if known else now, now)

    async def refresh_worker(self, worker_id: str) -> bool:
        """Mark the worker seen now and drop dead rows.

        Returns False when its row is gone (dropped after a long silence):
        the caller registers again.
        """
        now = times.utcnow()
        with self._local_workers_lock:
            self._drop_dead_local_workers(now)
            known = self._local_workers.get(worker_id)
            if known is None:
                return False
            self._local_workers[worker_id] = (known[0], known[1], now)
            return True

    async def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker's row; a missing row is fine."""
        with self._local_workers_lock:
            self._local_workers.pop(worker_id, None)

    async def list_workers(self) -> list[WorkerInfo]:
        """The live workers, oldest first; dead rows are left out (refreshes delete them)."""
        now = times.utcnow()
        with self._local_workers_lock:
            rows = [
                row for row in self._local_workers.values() if not _is_dead(row[0], row[2], now)
            ]
        found = [
            WorkerInfo(
                id=worker.id,
                host=worker.host,
                pid=worker.pid,
                started_at=started,
                last_seen_at=seen,
                workflow_names=worker.workflow_names,
                task_names=worker.task_names,
                version=worker.version,
            )
            for worker, started, seen in rows
        ]
        return sorted(found, key=lambda info: (info.started_at, info.id))

    def _drop_dead_local_workers(self, now: datetime) -> None:
        dead = [
            worker_id
            for worker_id, (worker, _, seen) in self._local_workers.items()
            if _is_dead(worker, seen, now)
        ]
        for worker_id in dead:
            del self._local_workers[worker_id]

    async def queue_depths(self) -> list[QueueDepth]:
        """Read-only: the ready work per task name and per workflow name, for metrics.

        One entry per name with ready work (none for an idle name): queued
        tasks due now, and live unclaimed instances with pending events, each
        with the enqueue time of its oldest item. Drivers answer from their
        claim indexes, so the cost follows the queues, never the history.
        This default reports nothing (a driver that cannot tell).
        """
        return []

    # ---- schedules ------------------------------------------------------------------

    @abc.abstractmethod
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
        """Store a new schedule (values already checked by the Manager).

        Raises:
            WorkflowScheduleExistsError: one with these names exists.
        """

    @abc.abstractmethod
    async def list_workflow_schedules(self) -> list[Schedule]:
        """Every schedule, with ``last_start``/``last_end`` from its newest finished run."""

    @abc.abstractmethod
    async def get_workflow_schedule(self, workflow_name: str, instance_name: str) -> Schedule:
        """One schedule (as in the list).

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """

    @abc.abstractmethod
    async def update_workflow_schedule(
        self, workflow_name: str, instance_name: str, update: ScheduleUpdate
    ) -> None:
        """Apply every change of ``update`` in one transaction.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule; nothing changed.
        """

    @abc.abstractmethod
    async def delete_workflow_schedule(self, workflow_name: str, instance_name: str) -> None:
        """Remove a schedule (running instances it started are untouched).

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """

    @abc.abstractmethod
    async def get_due_scheduled_workflow(self) -> tuple[Schedule, ScheduledWorkflowCompleter]:
        """Lock the earliest enabled schedule whose due time has passed.

        Raises:
            NoDueWorkflowsError: none is due.
        """

    @abc.abstractmethod
    async def get_next_scheduled_workflow(self) -> Schedule:
        """The enabled schedule due soonest.

        Raises:
            NoScheduledWorkflowsError: no schedule is enabled.
        """

    @abc.abstractmethod
    async def trigger_workflow_schedule(
        self, workflow_name: str, instance_name: str, kill_error: str
    ) -> RunOutcome:
        """Ask for a run now under the schedule's overlap policy, in one transaction.

        As :meth:`ScheduledWorkflowCompleter.run_and_advance` with ``run`` and
        the schedule's current parameters; the due time and ``enabled`` stay.
        Waits for a scheduler holding the schedule where the backend locks rows.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule; nothing changed.
        """

    @abc.abstractmethod
    async def has_waiting_schedule_runs(self) -> bool:
        """Whether any schedule has a run waiting for its live instance to end."""
