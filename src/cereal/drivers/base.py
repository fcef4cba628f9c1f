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
   :meth:`Driver.expired_task_leases` lists leases whose stored deadline has
   passed, by the driver's clock; the sweeper's own ``task_expiry`` never
   judges a lease that has a deadline, so Managers with different expiries
   can share a store. The engine decides each (retry or ``LOST``) and
   :meth:`Driver.settle_expired_leases` applies a decision only while the
   task still runs under that lease, past its deadline. Once a lease is gone
   (expired, the instance ended, or abandoned) every call on its completer
   raises :class:`~cereal.errors.TaskLostError` and changes nothing.
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

The contract comes in parts, one module each, and :class:`Driver` joins them:

==========================  ==================================================
:class:`StoreLifecycle`      ``_open``/``_close``; init/close, wakeups (given)
:class:`WorkflowStore`       enqueue, claim_workflows (+ WorkflowCompleter),
                             cancel, kill, get and list instances
:class:`TaskStore`           dequeue_tasks (+ TaskCompleter), resume a lease
:class:`ScheduleStore`       schedules (+ ScheduledWorkflowCompleter)
:class:`MaintenanceStore`    expired task leases and their settlement, stale
                             claims, history trimming (the engine sweeps)
:class:`InspectionStore`     optional: an instance's tasks and events, tasks
                             by name, stats (read operations: see
                             :mod:`cereal.drivers._read_operations`)
:class:`WorkerRegistry`      optional: live workers (default: this process)
:class:`DeadLetterStore`     optional: tasks that ended failed or lost, listed
                             and requeued
:class:`StartKeyStore`       optional: workflow starts guarded by an
                             idempotency key
==========================  ==================================================
"""

from __future__ import annotations

from typing import ClassVar

from cereal.drivers._dead_letter_store import DeadLetterStore
from cereal.drivers._inspection_store import InspectionStore
from cereal.drivers._lifecycle import (
    DURABLE,
    MULTIPROCESS,
    RESUMABLE_LEASES,
    ClaimingPromise,
    ClaimTerms,
    LocalPromise,
    StoreLifecycle,
    TaskTaker,
    WakeupListener,
    WorkKind,
)
from cereal.drivers._maintenance_store import MaintenanceStore
from cereal.drivers._schedule_store import ScheduledWorkflowCompleter, ScheduleStore, start_run_plan
from cereal.drivers._start_key_store import START_KEY_WINDOW, StartKeyStore
from cereal.drivers._task_store import DEFAULT_TASK_EXPIRY, TaskCompleter, TaskStore
from cereal.drivers._worker_registry import WorkerRegistry
from cereal.drivers._workflow_store import (
    MAX_TASK_KEY_LOOKUP,
    ClaimedWorkflow,
    WorkflowCompleter,
    WorkflowStore,
    check_claim_sizes,
)
from cereal.models import HistoryRetention

__all__ = [
    "DEFAULT_TASK_EXPIRY",
    "DURABLE",
    "MAX_TASK_KEY_LOOKUP",
    "MULTIPROCESS",
    "RESUMABLE_LEASES",
    "START_KEY_WINDOW",
    "ClaimTerms",
    "ClaimedWorkflow",
    "ClaimingPromise",
    "DeadLetterStore",
    "Driver",
    "InspectionStore",
    "LocalPromise",
    "MaintenanceStore",
    "ScheduleStore",
    "ScheduledWorkflowCompleter",
    "StartKeyStore",
    "StoreLifecycle",
    "TaskCompleter",
    "TaskStore",
    "TaskTaker",
    "WakeupListener",
    "WorkKind",
    "WorkerRegistry",
    "WorkflowCompleter",
    "WorkflowStore",
    "check_claim_sizes",
    "start_run_plan",
]


class Driver(
    StoreLifecycle,
    WorkflowStore,
    TaskStore,
    ScheduleStore,
    MaintenanceStore,
    InspectionStore,
    DeadLetterStore,
    StartKeyStore,
    WorkerRegistry,
):
    """Durable storage for workflow instances, tasks and schedules.

    Subclasses implement :meth:`_open`, :meth:`_close` and the abstract
    methods of the store parts; this class joins the parts and provides
    reference-counted ``init``/``close``, the wakeup listener registry and
    the one-at-a-time forms (``dequeue_workflow``, ``dequeue_task``).
    """

    default_task_poll_interval: float = 1.0
    """Seconds between task polls when the Manager sets none."""
    default_workflow_poll_interval: float = 1.0
    """Seconds between workflow-event polls when the Manager sets none."""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    """What this driver offers beyond the contract (``DURABLE``, ``MULTIPROCESS``)."""
    wakes_runners_of_new_tasks: ClassVar[bool] = False
    """True when a committed decision's ready tasks wake this process's listeners.

    The engine then leaves the waking to the store, which knows better: it
    need not wake a runner that already took the tasks in the commit. False:
    the engine wakes the process's runners of those task names itself.
    """

    def __init__(self, *, retention: HistoryRetention | None = None) -> None:
        StoreLifecycle.__init__(self)
        WorkerRegistry.__init__(self)
        self.retention = retention or HistoryRetention()
