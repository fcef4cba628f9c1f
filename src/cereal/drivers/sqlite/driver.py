"""The embedded default driver: one SQLite file, durable, shared by processes on one host.

``SQLiteDriver`` keeps one connection on a dedicated thread (see
:mod:`._connection`), so the event loop never waits on SQLite. The file runs
in WAL mode; every write is a short ``BEGIN IMMEDIATE`` transaction, so
processes sharing the file take turns on the write lock (waiting up to
``busy_timeout``) and no transaction ever stays open across a user callback:
work is claimed with tokens instead (see :mod:`._workflows`, :mod:`._tasks`,
:mod:`._schedules`). The host clock decides what is due.

Idle processes learn of other processes' commits within ``wakeup_interval``
through ``PRAGMA data_version`` (four times that after 2 s without one);
in-process wakeups follow each commit.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from cereal import errors
from cereal.checks import times, validation
from cereal.drivers._dead_letter_store import check_dead_task_page, check_failed_run_page
from cereal.drivers._inspect_pages import Page, check_page, id_cursor, is_paged, task_cursor
from cereal.drivers._throughput import check_throughput, window
from cereal.drivers.base import (
    DEFAULT_TASK_EXPIRY,
    DURABLE,
    MULTIPROCESS,
    RESUMABLE_LEASES,
    ClaimedWorkflow,
    Driver,
    ScheduledWorkflowCompleter,
    TaskCompleter,
    check_claim_sizes,
)
from cereal.drivers.sqlite import (
    _caller_transaction,
    _dead_letters,
    _history,
    _inspect,
    _maintenance,
    _schedules,
    _tasks,
    _workers,
    _workflows,
)
from cereal.drivers.sqlite._connection import Connection, Settings, number
from cereal.drivers.sqlite._migrate import apply_migrations, migrations
from cereal.drivers.sqlite._sql import (
    Q,
    epoch,
    instance_from_row,
    now,
    schedule_from_row,
)
from cereal.models import (
    DeadTask,
    ExpiredLease,
    FailedRun,
    HistoryRetention,
    InstanceEvent,
    InstanceTask,
    LeaseSettlement,
    ListWorkflowFilter,
    NewWorker,
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
    TaskQueueStats,
    ThroughputBucket,
    WorkerInfo,
    WorkflowInstanceData,
)

__all__ = ["SQLiteDriver"]


class SQLiteDriver(Driver):
    """Workflow, task and schedule storage in one SQLite file.

    Durable across restarts; several processes on one host may share the
    file (not over a network filesystem: WAL needs shared memory). Options may
    come from the URL query (``sqlite:///cereal.db?busy_timeout=10``), so
    numbers are also accepted as strings.

    Args:
        path: the database file; created (with its schema) when missing.
        busy_timeout: seconds a write waits for another process's write lock.
        busy_retries: how many more times a write is retried after waiting a
            whole ``busy_timeout`` before it fails with ``DriverError``.
        synchronous: ``"FULL"`` (default: every commit survives power loss)
            or ``"NORMAL"`` (faster; a power cut may lose the last commits).
        wakeup_interval: seconds between checks for other processes' commits
            (each check is one ``PRAGMA data_version``, only while a Manager
            listens). With the default of 10 ms, on a 2-core machine,
            cross-process pickup p99 was about 15 ms (30 ms: 29 ms). After
            2 s without another process's commit the checks come 4 times
            less often (40 ms by default) until the next one is seen, so an
            idle Manager wakes 25 times a second, not 100.
        schedule_claim_timeout: seconds after which a scheduler's claim on a
            due schedule counts as abandoned (its process died).
        retention: how much finished-run history a sweep keeps.

    Raises:
        ValueError: an option is out of range or not a number.
    """

    capabilities = frozenset({DURABLE, MULTIPROCESS, RESUMABLE_LEASES})

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float | str = 5.0,
        busy_retries: int | str = 2,
        synchronous: str = "FULL",
        wakeup_interval: float | str = 0.01,
        schedule_claim_timeout: float | str = 60.0,
        retention: HistoryRetention | None = None,
    ) -> None:
        super().__init__(retention=retention)
        self._settings = Settings.parse(
            os.fspath(path),
            busy_timeout=busy_timeout,
            busy_retries=busy_retries,
            synchronous=synchronous,
            wakeup_interval=wakeup_interval,
        )
        self._schedule_claim_timeout = number(schedule_claim_timeout, "schedule_claim_timeout")
        self._db: Connection | None = None
        self._applied_at_open: list[str] = []
        # where this process's sweeps go on through keys with runs left waiting
        self._waiting_keys_after = ""

    @property
    def path(self) -> str:
        """The database file."""
        return self._settings.path

    def __repr__(self) -> str:
        return f"SQLiteDriver({self.path!r})"

    # ---- lifecycle -----------------------------------------------------------------

    async def _open(self) -> None:
        """Start the connection thread and apply pending migrations."""
        db = Connection(
            self._settings, watching=self._has_listeners, on_foreign_change=self._foreign
        )
        await db.start()
        known = migrations()
        applied: list[str] = []  # survives the connection's busy retries of the job
        try:
            self._applied_at_open = await db.call(
                lambda conn: apply_migrations(conn, known, applied), mode="auto"
            )
        except BaseException:
            await db.stop()
            raise
        self._db = db

    async def _close(self) -> None:
        """Finish queued work, close the connection and stop its thread."""
        db, self._db = self._db, None
        if db is not None:
            await db.stop()

    async def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns the names applied (``0001_initial``...)."""
        was_open = self.is_open
        await self.init()
        try:
            if was_open:
                known = migrations()
                applied: list[str] = []
                return await self._connection().call(
                    lambda conn: apply_migrations(conn, known, applied), mode="auto"
                )
            return list(self._applied_at_open)
        finally:
            await self.close()

    def _connection(self) -> Connection:
        db = self._db
        if db is None:
            raise errors.DriverError(
                f"{self!r} is not open: call `await driver.init()` first (a Manager does)"
            )
        return db

    def _has_listeners(self) -> bool:
        return bool(self._listeners)

    def _foreign(self) -> None:
        """Another process committed: any kind of work may be ready."""
        self._wake("workflow", None)
        self._wake("task", None)
        self._wake("schedule", None)

    # ---- workflow instances ----------------------------------------------------------

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
        created = await self._connection().call(
            lambda conn: _workflows.enqueue(
                conn, workflow_name, instance_name, parameters, traceparent
            )
        )
        if not created:
            raise errors.WorkflowInstanceExistsError()
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

        def job(conn: sqlite3.Connection) -> str | bool | None:
            if idempotency_key is None:
                started = _workflows.enqueue_keyed(
                    conn, workflow_name, instance_name, parameters, concurrency, traceparent
                )
                return False if started is None else None
            return _workflows.enqueue_once(
                conn,
                workflow_name,
                instance_name,
                parameters,
                idempotency_key,
                traceparent,
                concurrency,
            )

        outcome = await self._connection().call(job)
        if outcome is False:
            raise errors.WorkflowInstanceExistsError()
        if outcome is None:
            self._wake("workflow", workflow_name)
            return None
        assert isinstance(outcome, str)
        return outcome

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
        outcome = await self._connection().call(
            lambda conn: _workflows.enqueue_once(
                conn, workflow_name, instance_name, parameters, idempotency_key, traceparent
            )
        )
        if outcome is False:
            raise errors.WorkflowInstanceExistsError()
        if outcome is None:
            self._wake("workflow", workflow_name)
            return None
        assert isinstance(outcome, str)
        return outcome

    async def enqueue_workflow_in_transaction(
        self,
        connection: object,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        *,
        traceparent: str | None = None,
    ) -> None:
        """Create the instance on the caller's ``sqlite3.Connection`` to this file.

        The statements run at once on the caller's connection, in the calling
        thread (``sqlite3`` connections belong to their thread), inside its
        transaction; a connection in legacy transaction mode gets the
        ``BEGIN`` it would have issued itself. The caller commits or rolls
        back. Workers learn of the commit through ``PRAGMA data_version``.

        Raises:
            TypeError: ``connection`` is not a ``sqlite3.Connection``.
            ValueError: it is on another file, or in autocommit mode outside
                a transaction.
            WorkflowInstanceExistsError: a live instance with these names exists.
        """
        self._connection()  # open, so the schema is migrated
        conn = _caller_transaction.check_connection(connection, self.path)
        _caller_transaction.enqueue(conn, workflow_name, instance_name, parameters, traceparent)

    async def claim_workflows(
        self,
        workflow_names: Sequence[str],
        *,
        max_instances: int = 1,
        max_events: int = 1,
        claim_expiry: float = DEFAULT_TASK_EXPIRY,
    ) -> list[ClaimedWorkflow]:
        """Claim up to ``max_instances`` instances, each with up to ``max_events`` events.

        One ``BEGIN IMMEDIATE`` transaction, taken only when a cheap read finds
        a claimable instance; its cost depends on the batch size, not on how
        many events are queued.
        """
        check_claim_sizes(max_instances, max_events)
        names = _workflows.names_json(workflow_names)
        expiry = times.seconds(claim_expiry, name="claim_expiry")
        claims: list[_workflows.Claim] = await self._connection().call(
            lambda conn: _workflows.claim_batch(
                conn, names, max_instances=max_instances, max_events=max_events, expiry=expiry
            ),
            ready=lambda conn: _workflows.has_claimable(conn, names),
            empty=[],
            undo=_workflows.release,
        )
        return [(claim.events, _workflows.SQLiteWorkflowCompleter(self, claim)) for claim in claims]

    async def cancel_workflow(self, workflow_name: str, instance_name: str) -> None:
        """Append a ``cancel`` event to the live instance.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """
        names = {"workflow_name": workflow_name, "instance_name": instance_name}
        added = await self._connection().call(
            lambda conn: conn.execute(Q["insert_cancel_event"], {**names, "now": now()}).rowcount
        )
        if added != 1:
            raise errors.WorkflowInstanceNotFoundError()
        self._wake("workflow", workflow_name)

    async def kill_workflow(self, workflow_name: str, instance_name: str, error: str) -> None:
        """Finish the live instance at once with ``error``, even while it is claimed.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """
        started = await self._connection().call(
            lambda conn: _workflows.kill(conn, workflow_name, instance_name, error)
        )
        for name in dict.fromkeys(started):  # runs its end started from waiting for a key
            self._wake("workflow", name)

    async def get_workflow_instance(
        self, workflow_name: str, instance_name: str
    ) -> WorkflowInstanceData:
        """The live instance if any, else the newest finished run.

        Raises:
            WorkflowInstanceNotFoundError: neither exists.
        """
        names = {"workflow_name": workflow_name, "instance_name": instance_name}
        row = await self._connection().call(
            lambda conn: conn.execute(Q["get_instance"], names).fetchone(), mode="auto"
        )
        if row is None:
            raise errors.WorkflowInstanceNotFoundError()
        return instance_from_row(row)

    async def list_workflow_instances(
        self, where: ListWorkflowFilter
    ) -> list[WorkflowInstanceData]:
        """One entry per (workflow, instance) pair: the live row, else the newest finished run.

        Sorted by workflow name, then instance name; the query itself applies
        ``where.offset`` and ``where.limit``.
        """
        rows = await self._connection().call(
            lambda conn: _workflows.list_rows(conn, where), mode="read"
        )
        return [instance_from_row(row) for row in rows]

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
        paged = is_paged(limit, before)
        return await self._connection().call(
            lambda conn: _inspect.instance_tasks(
                conn, workflow_name, instance_name, Page(limit, cursor) if paged else None
            ),
            mode="read",
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
        paged = is_paged(limit, before)
        return await self._connection().call(
            lambda conn: _inspect.instance_events(
                conn, workflow_name, instance_name, Page(limit, before) if paged else None
            ),
            mode="read",
        )

    async def list_tasks(
        self, task_name: str, *, limit: int | None = None, before: str | None = None
    ) -> list[InstanceTask]:
        """See :meth:`Driver.list_tasks`."""
        cursor = task_cursor(before)
        check_page(limit, cursor)
        page = Page(limit, cursor) if is_paged(limit, before) else None
        return await self._connection().call(
            lambda conn: _inspect.named_tasks(conn, task_name, page), mode="read"
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
        page = Page(limit, task_cursor(before))
        return await self._connection().call(
            lambda conn: _dead_letters.dead_tasks(conn, task_name, workflow_name, page),
            mode="read",
        )

    async def list_failed_runs(
        self,
        *,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[FailedRun]:
        """See :meth:`Driver.list_failed_runs`."""
        check_failed_run_page(workflow_name, limit, before)
        page = Page(limit, id_cursor(before, "run id"))
        return await self._connection().call(
            lambda conn: _dead_letters.failed_runs(conn, workflow_name, page), mode="read"
        )

    async def requeue_failed_runs(self, run_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """See :meth:`Driver.requeue_failed_runs`."""
        outcomes, started = await self._connection().call(
            lambda conn: _dead_letters.requeue_runs(conn, run_ids)
        )
        for workflow_name in sorted(started):
            self._wake("workflow", workflow_name)
        return outcomes

    async def requeue_dead_tasks(self, task_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """See :meth:`Driver.requeue_dead_tasks`."""
        outcomes, requeued = await self._connection().call(
            lambda conn: _dead_letters.requeue(conn, task_ids)
        )
        for task_name in sorted(requeued):
            self._wake("task", task_name)
        return outcomes

    async def task_queue_stats(self) -> list[TaskQueueStats]:
        """One entry per task name with queued or running tasks, ordered by name."""
        return await self._connection().call(_inspect.queue_stats, mode="read")

    async def run_throughput(
        self, bucket_seconds: int, buckets: int, *, until: float | None = None
    ) -> list[ThroughputBucket]:
        """See :meth:`Driver.run_throughput`."""
        check_throughput(bucket_seconds, buckets, until)
        span = window(bucket_seconds, buckets, until)
        return await self._connection().call(
            lambda conn: _inspect.throughput(conn, span), mode="read"
        )

    async def list_start_keys(self, workflow_name: str, instance_name: str) -> list[StartKey]:
        """See :meth:`Driver.list_start_keys`."""
        validation.check_pair(workflow_name, instance_name)
        return await self._connection().call(
            lambda conn: _inspect.start_keys(conn, workflow_name, instance_name), mode="read"
        )

    async def applied_retention(self) -> list[RetentionRule]:
        """See :meth:`Driver.applied_retention`."""
        return await self._connection().call(_inspect.applied_retention, mode="read")

    async def list_task_keys(
        self, workflow_name: str, instance_name: str, keys: Sequence[str]
    ) -> list[TaskKey]:
        """See :meth:`Driver.list_task_keys`."""
        validation.check_pair(workflow_name, instance_name)
        return await self._connection().call(
            lambda conn: _inspect.task_keys(conn, workflow_name, instance_name, keys), mode="read"
        )

    # ---- tasks ------------------------------------------------------------------------

    async def dequeue_tasks(
        self,
        task_name: str,
        max_tasks: int,
        *,
        task_expiry: float = DEFAULT_TASK_EXPIRY,
        retry_policy: str | None = None,
    ) -> list[tuple[TaskData, TaskCompleter]]:
        """Claim up to ``max_tasks`` ready tasks, each leased for ``task_expiry`` seconds."""
        if max_tasks <= 0:
            return []
        expiry = times.seconds(task_expiry, name="task_expiry")
        leases: list[_tasks.Lease] = await self._connection().call(
            lambda conn: _tasks.claim_tasks(conn, task_name, max_tasks, expiry, retry_policy),
            ready=lambda conn: _tasks.has_ready_task(conn, task_name),
            empty=[],
            undo=_tasks.unclaim,
        )
        return [(lease.data, _tasks.SQLiteTaskCompleter(self, lease)) for lease in leases]

    async def resume_task_lease(
        self, task_id: str, lease_token: str
    ) -> tuple[TaskData, TaskCompleter]:
        """See :meth:`Driver.resume_task_lease`: one statement refreshes and returns the lease."""
        lease: _tasks.Lease = await self._connection().call(
            lambda conn: _tasks.resume_lease(conn, task_id, lease_token)
        )
        return lease.data, _tasks.SQLiteTaskCompleter(self, lease)

    async def queue_depths(self) -> list[QueueDepth]:
        """Ready tasks per task name and ready, unclaimed instances per workflow name.

        One read snapshot over the two claim indexes (no write lock).
        """
        return await self._connection().call(_tasks.queue_depths, mode="read")

    # ---- maintenance (the engine's sweep decides; see drivers/_maintenance_store.py) ----

    async def expired_task_leases(self, task_expiry: float, limit: int) -> list[ExpiredLease]:
        """Running tasks past their lease deadline, oldest first: one read, no write lock.

        ``task_expiry`` judges only leases taken by older code, stored without an expiry.
        """
        expiry = times.seconds(task_expiry, name="task_expiry")
        if limit <= 0:
            return []
        at = now()
        found: list[ExpiredLease] = await self._connection().call(
            lambda conn: _maintenance.expired_leases(conn, at, at - expiry, limit), mode="read"
        )
        return found

    async def settle_expired_leases(
        self, settlements: Sequence[LeaseSettlement], *, task_expiry: float
    ) -> list[str]:
        """Apply the settlements whose leases are still expired, in one write transaction."""
        expiry = times.seconds(task_expiry, name="task_expiry")
        if not settlements:
            return []

        def job(conn: sqlite3.Connection) -> list[tuple[str, str | None]]:
            at = now()
            return _maintenance.settle(conn, settlements, at, at - expiry)

        applied: list[tuple[str, str | None]] = await self._connection().call(job)
        for workflow_name in dict.fromkeys(name for _, name in applied if name is not None):
            self._wake("workflow", workflow_name)
        return [task_id for task_id, _ in applied]

    async def release_stale_claims(self, task_expiry: float) -> int:
        """Release workflow claims past their claimer's expiry (``task_expiry``: older ones').

        Also starts runs waiting for a workflow concurrency key that has room
        (a run ended by a process of an earlier release started none).
        """
        expiry = times.seconds(task_expiry, name="task_expiry")
        at = now()
        released: int = await self._connection().call(
            lambda conn: _maintenance.release_stale_claims(conn, at, at - expiry),
            ready=lambda conn: _maintenance.has_stale_claim(conn, at, at - expiry),
            empty=0,
        )
        if released:
            self._wake("workflow", None)
        # runs a process of an earlier release left waiting for their key, a slice of
        # the keys per sweep, going round
        after = self._waiting_keys_after
        none_started: tuple[list[str], str] = ([], "")
        started, self._waiting_keys_after = await self._connection().call(
            lambda conn: _maintenance.start_waiting_runs(conn, after),
            ready=_maintenance.has_waiting_run,
            empty=none_started,
        )
        for name in dict.fromkeys(started):
            self._wake("workflow", name)
        return released

    async def trim_history(self, retention: HistoryRetention) -> int:
        """Apply ``retention`` in bounded batches, each its own short write transaction."""
        return await _history.trim_history(self._connection(), retention)

    # ---- live workers -------------------------------------------------------------------

    async def register_worker(self, worker: NewWorker) -> None:
        """Store ``worker``'s row as seen now (replacing a row with its id)."""
        await self._connection().call(lambda conn: _workers.register(conn, worker))

    async def refresh_worker(self, worker_id: str) -> bool:
        """Mark the worker seen now and drop dead rows; False when its row is gone."""
        refreshed: bool = await self._connection().call(
            lambda conn: _workers.refresh(conn, worker_id)
        )
        return refreshed

    async def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker's row; a missing row is fine."""
        await self._connection().call(lambda conn: _workers.unregister(conn, worker_id))

    async def list_workers(self) -> list[WorkerInfo]:
        """The live workers, oldest first; a read only, so it never waits for the write lock."""
        found: list[WorkerInfo] = await self._connection().call(_workers.list_live, mode="read")
        return found

    # ---- schedules ----------------------------------------------------------------------

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
        values = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": parameters,
            "recurrence": recurrence,
            "enabled": int(enabled),
            "next_due_at": epoch(next_due_at),
            "overlap": overlap,
            "catch_up_window": catch_up_window,
        }
        row = await self._connection().call(
            lambda conn: conn.execute(Q["insert_schedule"], {**values, "now": now()}).fetchone()
        )
        if row is None:
            raise errors.WorkflowScheduleExistsError()
        self._wake("schedule", None)

    async def list_workflow_schedules(
        self, *, limit: int | None = None, offset: int = 0
    ) -> list[Schedule]:
        """See :meth:`Driver.list_workflow_schedules`; the query applies the page."""
        page = {"page_limit": limit, "page_offset": offset}
        rows = await self._connection().call(
            lambda conn: conn.execute(Q["list_schedules"], page).fetchall(), mode="auto"
        )
        return [schedule_from_row(row) for row in rows]

    async def get_workflow_schedule(self, workflow_name: str, instance_name: str) -> Schedule:
        """One schedule (as in the list).

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        names = {"workflow_name": workflow_name, "instance_name": instance_name}
        row = await self._connection().call(
            lambda conn: conn.execute(Q["get_schedule"], names).fetchone(), mode="auto"
        )
        if row is None:
            raise errors.WorkflowScheduleNotFoundError()
        return schedule_from_row(row)

    async def update_workflow_schedule(
        self, workflow_name: str, instance_name: str, update: ScheduleUpdate
    ) -> None:
        """Apply every change of ``update`` in one transaction.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule; nothing changed.
        """
        values = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            **_schedules.update_parameters(update),
        }
        changed = await self._connection().call(
            lambda conn: conn.execute(Q["update_schedule"], values).rowcount
        )
        if changed != 1:
            raise errors.WorkflowScheduleNotFoundError()
        self._wake("schedule", None)

    async def delete_workflow_schedule(self, workflow_name: str, instance_name: str) -> None:
        """Remove a schedule; running instances it started are untouched.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        names = {"workflow_name": workflow_name, "instance_name": instance_name}
        deleted = await self._connection().call(
            lambda conn: conn.execute(Q["delete_schedule"], names).rowcount
        )
        if deleted != 1:
            raise errors.WorkflowScheduleNotFoundError()
        self._wake("schedule", None)

    async def get_due_scheduled_workflow(self) -> tuple[Schedule, ScheduledWorkflowCompleter]:
        """Claim the earliest enabled schedule whose due time has passed.

        Raises:
            NoDueWorkflowsError: none is due (or every due one is claimed).
        """
        timeout = self._schedule_claim_timeout
        claim: _schedules.ScheduleClaim | None = await self._connection().call(
            lambda conn: _schedules.claim_due(conn, timeout),
            ready=lambda conn: _schedules.has_due(conn, timeout),
            empty=None,
            undo=_schedules.release,
        )
        if claim is None:
            raise errors.NoDueWorkflowsError()
        return claim.schedule, _schedules.SQLiteScheduleCompleter(self, claim)

    async def trigger_workflow_schedule(
        self, workflow_name: str, instance_name: str, kill_error: str
    ) -> RunOutcome:
        """Ask for a run now under the schedule's overlap policy; the due time stays.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        started: list[str] = []
        outcome = await self._connection().call(
            _schedules.trigger(workflow_name, instance_name, kill_error, started)
        )
        if outcome is None:
            raise errors.WorkflowScheduleNotFoundError()
        if outcome in (RunOutcome.STARTED, RunOutcome.REPLACED, RunOutcome.CANCELLING):
            self._wake("workflow", workflow_name)
        for name in dict.fromkeys(started):  # runs the replaced run's end started
            self._wake("workflow", name)
        if outcome in (RunOutcome.BUFFERED, RunOutcome.CANCELLING):
            self._wake("schedule", None)
        return outcome

    async def has_waiting_schedule_runs(self) -> bool:
        """Whether any schedule has a run waiting for its live instance to end."""
        row = await self._connection().call(
            lambda conn: conn.execute(Q["has_waiting_schedule_run"]).fetchone(), mode="auto"
        )
        return row is not None

    async def get_next_scheduled_workflow(self) -> Schedule:
        """The enabled schedule due soonest.

        Raises:
            NoScheduledWorkflowsError: no schedule is enabled.
        """
        row = await self._connection().call(
            lambda conn: conn.execute(Q["next_scheduled"]).fetchone(), mode="auto"
        )
        if row is None:
            raise errors.NoScheduledWorkflowsError()
        return schedule_from_row(row)
