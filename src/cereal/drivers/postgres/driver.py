"""The PostgreSQL driver: durable, shared by many processes and hosts.

Every step is one transaction. Tasks and schedules are claimed with ``FOR
UPDATE SKIP LOCKED``. Workflow instances are claimed with a token written
into their row (found through a partial index of ready, unclaimed
instances), together with a batch of their events, so no two callbacks of
one instance overlap anywhere, no transaction stays open during a callback,
no session state outlives a transaction (PgBouncer's transaction pooling
works), and a kill never waits for a callback. Task completions and
decisions share transactions through a group commit. The database's ``now()``
decides what is due. A commit that makes work ready sends at most one
``NOTIFY``, which the LISTEN connection of every other driver turns into
wakeups (polling stays the fallback).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC

from cereal import errors
from cereal.checks import times
from cereal.drivers._start_key_store import START_KEY_WINDOW_S
from cereal.drivers.base import (
    DEFAULT_TASK_EXPIRY,
    ClaimedWorkflow,
    TaskCompleter,
    check_claim_sizes,
)
from cereal.drivers.postgres import _caller_transaction, _maintenance
from cereal.drivers.postgres._completers import PostgresTaskCompleter, PostgresWorkflowCompleter
from cereal.drivers.postgres._db import (
    Conn,
    Row,
    bytes_or_none,
    execute,
    fetch_all,
    fetch_one,
    instance_from_row,
)
from cereal.drivers.postgres._dead_letters import PostgresDeadLetters
from cereal.drivers.postgres._inspect import PostgresInspection
from cereal.drivers.postgres._listen import Wake, encode_note
from cereal.drivers.postgres._schedules import PostgresSchedules
from cereal.drivers.postgres._store_identity import StoreIdentity, read_own
from cereal.drivers.postgres._workers import PostgresWorkers
from cereal.drivers.postgres._workflow_keys import start_waiting_runs
from cereal.models import (
    ExpiredLease,
    HistoryRetention,
    LeaseSettlement,
    ListWorkflowFilter,
    QueueDepth,
    TaskData,
    TaskMetadata,
    TaskResultData,
    TaskStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
)

logger = logging.getLogger(__name__)

__all__ = ["PostgresDriver"]


class PostgresDriver(PostgresSchedules, PostgresInspection, PostgresDeadLetters, PostgresWorkers):
    """Storage in PostgreSQL (``postgresql://user@host/db``), for production.

    Args:
        url: a libpq URL or conninfo string. Query options ``min_size``,
            ``max_size``, ``pool_timeout``, ``notify``, ``listen_url`` and
            ``prepare_threshold`` are taken by cereal; the rest go to libpq,
            among them ``connect_timeout``: seconds a new connection may take
            (default 10 here, where psycopg's own is 130).
        retention: how much finished-run history a sweep keeps.
        min_size: connections the pool keeps open (default 1).
        max_size: most connections the pool opens (default 10). An open
            schedule completer holds one until it is closed; workflow
            completers hold none (their claim is a token in the row).
        pool_timeout: seconds to wait for a pooled connection before an
            operation fails with :class:`~cereal.errors.DriverError` (default 10).
        notify: announce new work to other processes with NOTIFY and listen
            for their announcements (default on). When a probe shows that
            announcements do not reach the LISTEN connection, one WARNING
            says so and polling carries the wakeups.
        listen_url: a URL straight to the server for the LISTEN connection
            (URL-encoded in the query: ``?listen_url=postgresql%3A%2F%2F...``).
            Needed behind a transaction-pooling proxy such as PgBouncer in
            ``pool_mode = transaction``, where a LISTEN hears nothing; NOTIFY
            still goes through ``url``. Default: ``url``.
        prepare_threshold: psycopg's: a statement is prepared server-side on
            its n-th execution on a connection; ``None`` (``none`` in the URL)
            never prepares. Default: psycopg's, 5. Use ``None`` behind
            PgBouncer before 1.21 (or without ``max_prepared_statements``).
    """

    # ---- workflow instances -------------------------------------------------------

    async def enqueue_workflow(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        *,
        traceparent: str | None = None,
    ) -> None:
        """Create a live instance and its start event atomically.

        Raises:
            WorkflowInstanceExistsError: a live instance with these names exists.
        """
        wakes: list[Wake] = [("workflow", workflow_name)]
        window = self._announce_window
        in_commit = window.announce_in_commit()
        params = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": parameters,
            "traceparent": traceparent,
        }
        # concurrent callers share one statement and commit (the group's NOTIFY
        # carries every announcement asked for in its commit)
        [row] = await self._group_commit(
            0,
            [("enqueue_workflow", params)],
            announce=wakes if in_commit else (),
            kind="enqueue",
        )
        if row is None:
            raise errors.WorkflowInstanceExistsError()
        if not in_commit:
            window.announce_later(wakes)
            self._wake_all(wakes)  # the group's flush wakes this process for the others

    async def enqueue_workflow_once(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        idempotency_key: str,
        *,
        traceparent: str | None = None,
    ) -> str | None:
        """Start the run unless the key started one within the window (see ``StartKeyStore``).

        One transaction: the key row first (a racing start with the same key
        waits on it), then the run; a live name rolls both back.
        """
        wakes: list[Wake] = [("workflow", workflow_name)]
        window = self._announce_window
        in_commit = window.announce_in_commit()
        key = {
            "workflow_name": workflow_name,
            "idempotency_key": idempotency_key,
            "instance_name": instance_name,
            "window": START_KEY_WINDOW_S,
        }
        params = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": parameters,
            "traceparent": traceparent,
            "note": self._note(wakes) if in_commit else None,
        }
        async with self._connection("enqueue_workflow_once") as conn, conn.transaction():
            existing = await _take_start_key(conn, key)
            if existing is not None:
                return existing
            created = await fetch_one(conn, "enqueue_workflow", params)
            if created is None:
                raise errors.WorkflowInstanceExistsError()  # rolls the key back too
        if not in_commit:
            window.announce_later(wakes)
        self._wake_all(wakes)
        return None

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
        """See :meth:`Driver.enqueue_keyed_workflow`.

        One transaction: the start key first (if any), then the run, inserted
        waiting and started under the key's lock when the key has room.
        """
        wakes: list[Wake] = [("workflow", workflow_name)]
        params = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": parameters,
            "traceparent": traceparent,
            "concurrency_key": concurrency_key,
            "concurrency_limit": concurrency_limit,
            "note": self._note(wakes),
        }
        async with self._connection("enqueue_keyed_workflow") as conn, conn.transaction():
            if idempotency_key is not None:
                key = {
                    "workflow_name": workflow_name,
                    "idempotency_key": idempotency_key,
                    "instance_name": instance_name,
                    "window": START_KEY_WINDOW_S,
                }
                existing = await _take_start_key(conn, key)
                if existing is not None:
                    return existing
            if await fetch_one(conn, "enqueue_keyed_workflow", params) is None:
                raise errors.WorkflowInstanceExistsError()  # rolls the key back too
        self._wake_all(wakes)
        return None

    async def enqueue_workflow_in_transaction(
        self,
        connection: object,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        *,
        traceparent: str | None = None,
    ) -> None:
        """Create the instance on the caller's psycopg connection, inside its transaction.

        One statement in a savepoint (a failure leaves the caller's
        transaction usable); its ``NOTIFY`` is delivered when, and only if,
        the caller commits. The savepoint goes with a query of the
        connection's store (server, database, instance table), compared with
        the driver's own: no extra round trip. A plain ``Connection`` runs in
        a worker thread.

        Raises:
            TypeError: ``connection`` is not a psycopg ``AsyncConnection`` or ``Connection``.
            ValueError: it is closed, failed, or autocommitting outside a
                transaction, or it reaches another store than the driver's
                (another server, database, or schema on its search path).
            WorkflowInstanceExistsError: a live instance with these names exists
                (as the caller's transaction sees it).
        """
        conn = _caller_transaction.check_connection(connection)
        store = await self._own_store()
        wakes: list[Wake] = [("workflow", workflow_name)]
        params = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": parameters,
            "traceparent": traceparent,
            "note": (
                encode_note(_caller_transaction.CALLER_SENDER, wakes) if self._notify else None
            ),
        }
        if not await _caller_transaction.enqueue(conn, params, store):
            raise errors.WorkflowInstanceExistsError()

    async def _own_store(self) -> StoreIdentity:
        """The store this driver's connections reach (read once per open)."""
        if self._store_identity is None:
            async with self._connection("reading the store's identity") as conn:
                self._store_identity = await read_own(conn)
        return self._store_identity

    async def claim_workflows(
        self,
        workflow_names: Sequence[str],
        *,
        max_instances: int = 1,
        max_events: int = 1,
        claim_expiry: float = DEFAULT_TASK_EXPIRY,
    ) -> list[ClaimedWorkflow]:
        """Claim instances with their oldest events in one round trip and one transaction.

        The claim is a token written into each instance row; a claimer that
        dies leaves it until its ``claim_expiry`` has passed since its last
        heartbeat, when the sweep releases it.
        """
        check_claim_sizes(max_instances, max_events)
        names = list(dict.fromkeys(workflow_names))
        if not names:
            return []
        token = uuid.uuid4()
        params = {
            "workflow_names": names,
            "max_instances": max_instances,
            "max_events": max_events,
            "token": token,
            "expiry": times.seconds(claim_expiry, name="claim_expiry"),
        }
        try:
            async with self._connection("claiming workflow events") as conn:
                rows = await fetch_all(conn, "claim_instances", params)
        except asyncio.CancelledError:
            # the claim may have committed: give it back (in the background) so the
            # events are not held until the claim's expiry
            self._in_background(self._release_token(token))
            raise
        by_instance: dict[int, list[Row]] = {}
        for row in rows:
            by_instance.setdefault(row["instance_id"], []).append(row)
        claimed: list[ClaimedWorkflow] = []
        for instance_id, mine in by_instance.items():
            events = [row for row in mine if row["event_id"] is not None]
            completer = PostgresWorkflowCompleter(
                self,
                instance_id=instance_id,
                token=token,
                event_ids=[event["event_id"] for event in events],
                task_result_ids=[
                    event["task_result_id"]
                    for event in events
                    if event["task_result_id"] is not None
                ],
                completed_tasks=mine[0]["completed_tasks"]
                + sum(event["event_type"] == "task_complete" for event in events),
            )
            if not events:  # marked ready, but its events were consumed or never written
                await completer.close()
                continue
            claimed.append((_events_of(mine[0], events), completer))
        return claimed

    async def _release_token(self, token: uuid.UUID) -> None:
        """Release every instance a cancelled claim took (none if it rolled back)."""
        try:
            async with self._connection("releasing a cancelled claim") as conn:
                rows = await fetch_all(conn, "claimed_instances", {"token": token})
            for row in rows:
                await PostgresWorkflowCompleter(
                    self,
                    instance_id=row["instance_id"],
                    token=token,
                    event_ids=[],
                    task_result_ids=[],
                    completed_tasks=0,
                ).close()
        except errors.CerealError:
            logger.warning(
                "releasing a cancelled workflow claim failed; it lapses at its expiry",
                exc_info=True,
            )

    async def cancel_workflow(self, workflow_name: str, instance_name: str) -> None:
        """Append a cancel event to the live instance.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """
        wakes: list[Wake] = [("workflow", workflow_name)]
        params = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "note": self._note(wakes),
        }
        async with self._connection("cancel_workflow") as conn:
            row = await fetch_one(conn, "cancel_workflow", params)
        if row is None:
            raise errors.WorkflowInstanceNotFoundError()
        self._wake_all(wakes)

    async def kill_workflow(self, workflow_name: str, instance_name: str, error: str) -> None:
        """Finish the live instance with ``error`` now; a running callback loses its claim.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """
        params = {"workflow_name": workflow_name, "instance_name": instance_name, "error": error}
        # the foreign keys' cascade removes tasks, events and results; a run under a
        # workflow concurrency key starts the key's next waiting runs in the same commit
        async with self._connection("kill_workflow") as conn, conn.transaction():
            row = await fetch_one(conn, "kill_instance", params)
            if row is None:
                raise errors.WorkflowInstanceNotFoundError()
            key, waited = row["concurrency_key"], row["waiting_for_key"]
            started = [] if key is None or waited else await start_waiting_runs(conn, [key])
            wakes: list[Wake] = [("workflow", name) for name in dict.fromkeys(started)]
            note = self._note(wakes)
            if note is not None:
                await fetch_one(conn, "notify", {"note": note})
        self._wake_all(wakes)
        if key is not None and waited:
            # a waiting run freed no place, but the run behind it may fit its own limit
            await self._start_runs_behind([key])

    async def get_workflow_instance(
        self, workflow_name: str, instance_name: str
    ) -> WorkflowInstanceData:
        """The live instance if any, else the newest finished run.

        Raises:
            WorkflowInstanceNotFoundError: neither exists.
        """
        params = {"workflow_name": workflow_name, "instance_name": instance_name}
        async with self._connection("get_workflow_instance") as conn:
            row = await fetch_one(conn, "get_workflow_instance", params)
        if row is None:
            raise errors.WorkflowInstanceNotFoundError()
        return instance_from_row(row)

    async def list_workflow_instances(
        self, where: ListWorkflowFilter
    ) -> list[WorkflowInstanceData]:
        """One entry per name pair: the live row, else the newest finished run.

        Sorted by workflow name, then instance name (or newest first); the
        query itself applies ``where.offset`` and ``where.limit``. A page
        newest first reads about offset + limit rows, not the whole history.
        """
        params = {
            "workflow_name": where.workflow_name,
            "instance_name": where.instance_name,
            "is_running": where.is_running,
            "limit": where.limit,
            "offset": where.offset,
            "newest_first": where.newest_first,
        }
        async with self._connection("list_workflow_instances") as conn:
            if where.newest_first and where.limit is not None:
                params["window"] = where.offset + where.limit
                rows = await fetch_all(conn, "list_workflow_instances_newest_page", params)
            else:
                rows = await fetch_all(conn, "list_workflow_instances", params)
        return [instance_from_row(row) for row in rows]

    # ---- tasks ----------------------------------------------------------------------

    async def dequeue_tasks(
        self,
        task_name: str,
        max_tasks: int,
        *,
        task_expiry: float = DEFAULT_TASK_EXPIRY,
        retry_policy: str | None = None,
    ) -> list[tuple[TaskData, TaskCompleter]]:
        """Claim up to ``max_tasks`` ready tasks in one statement, each leased ``task_expiry`` s."""
        if max_tasks <= 0:
            return []
        expiry = times.seconds(task_expiry, name="task_expiry")
        # one lease token for the whole claim: each task is still completed by its
        # (id, lease) pair, and a cancelled claim is given back by the token alone
        lease = uuid.uuid4()
        params = {
            "task_name": task_name,
            "max_tasks": max_tasks,
            "expiry": expiry,
            "lease": lease,
            "retry_policy": retry_policy,
        }
        rows: list[Row] | None = None
        try:
            async with self._connection("dequeue_tasks") as conn:
                rows = await fetch_all(conn, "claim_tasks", params)
        except asyncio.CancelledError:
            if rows:
                # cancelled after the claim: nobody will run these, so give them back
                await asyncio.shield(self._unclaim(task_name, lease))
            elif rows is None:
                # cancelled during it: psycopg cancelled the statement on the server or
                # let it finish; give back whatever it may have committed, in the
                # background, so the caller does not wait behind other locks
                self._in_background(self._unclaim(task_name, lease))
            raise
        # in the claim's order: lowest ready rank first (RETURNING keeps no order)
        rows.sort(key=lambda row: (row["ready_rank"], row["id"]))
        return [self._leased_task(row) for row in rows]

    async def resume_task_lease(
        self, task_id: str, lease_token: str
    ) -> tuple[TaskData, TaskCompleter]:
        """See :meth:`Driver.resume_task_lease`: one statement refreshes and returns the lease."""
        try:
            params = {"task_id": int(task_id), "lease": uuid.UUID(lease_token)}
        except ValueError:
            raise errors.TaskLostError(f"no task lease {task_id!r}") from None
        async with self._connection("resume_task_lease") as conn:
            row = await fetch_one(conn, "resume_task_lease", params)
        if row is None:
            raise errors.TaskLostError()
        return self._leased_task(row)

    def _leased_task(self, row: Row) -> tuple[TaskData, TaskCompleter]:
        """The task and completer of a row returned by a claim or a resumed lease."""
        metadata = TaskMetadata(
            enqueued_at=row["enqueued_at"].astimezone(UTC),
            task_name=row["task_name"],
            workflow_name=row["workflow_name"],
            instance_name=row["instance_name"],
            attempt=row["attempt"],
            task_id=str(row["id"]),
            traceparent=row["traceparent"],
        )
        data = TaskData(
            row["task_name"],
            bytes_or_none(row["parameters"]),
            metadata,
            retry_policy=row["retry_policy"],
        )
        completer = PostgresTaskCompleter(
            self,
            row["id"],
            row["lease"],
            row["instance_id"],
            row["workflow_name"],
            task_name=row["task_name"],
        )
        return data, completer

    async def _unclaim(self, task_name: str, lease: uuid.UUID) -> None:
        """Undo a cancelled claim: queue its tasks again (a no-op if it never committed)."""
        try:
            async with self._connection("unclaim_tasks") as conn:
                given_back = await execute(conn, "unclaim_tasks", {"lease": lease})
        except errors.CerealError:
            logger.warning(
                "giving back a cancelled claim of %r tasks failed; they go LOST at their expiry",
                task_name,
                exc_info=True,
            )
            return
        if given_back:
            self._wake("task", task_name)

    async def queue_depths(self) -> list[QueueDepth]:
        """Ready tasks per task name and ready, unclaimed instances per workflow name.

        Two read-only statements over the claim indexes (no locks taken).
        """
        depths: list[QueueDepth] = []
        async with self._connection("queue_depths") as conn:
            tasks = await fetch_all(conn, "task_queue_depths", {})
            workflows = await fetch_all(conn, "workflow_queue_depths", {})
            for kind, rows in (("task", tasks), ("workflow", workflows)):
                for row in rows:
                    oldest = row["oldest_at"]
                    depths.append(
                        QueueDepth(
                            kind=kind,
                            name=row["name"],
                            depth=row["depth"],
                            oldest_at=None if oldest is None else oldest.astimezone(UTC),
                        )
                    )
        return depths

    # ---- maintenance (the engine's sweep decides; see drivers/_maintenance_store.py) ----

    async def expired_task_leases(self, task_expiry: float, limit: int) -> list[ExpiredLease]:
        """Running tasks past their lease deadline, oldest first: one read, no locks.

        A lease is judged by the expiry its holder stored with it; ``task_expiry``
        only judges leases taken by older code, stored without one.
        """
        expiry = times.seconds(task_expiry, name="task_expiry")
        if limit <= 0:
            return []
        async with self._connection("expired_task_leases") as conn:
            return await _maintenance.expired_leases(conn, expiry, limit)

    async def settle_expired_leases(
        self, settlements: Sequence[LeaseSettlement], *, task_expiry: float
    ) -> list[str]:
        """Apply the settlements whose leases are still expired: one transaction, no waits.

        A lease whose task or instance row another transaction holds is
        skipped (it stays expired, for the next sweep).
        """
        expiry = times.seconds(task_expiry, name="task_expiry")
        if not settlements:
            return []
        async with self._connection("settle_expired_leases") as conn:
            applied, lost = await _maintenance.settle(conn, settlements, expiry, self._note)
        self._wake_all(("workflow", name) for name in lost)
        return applied

    async def release_stale_claims(self, task_expiry: float) -> int:
        """Release workflow claims whose holder stopped heartbeating for its expiry.

        ``task_expiry`` judges only claims stored without one (by older code).
        Also starts runs waiting for a workflow concurrency key that has room
        (a run ended by a process of an earlier release started none).
        """
        expiry = times.seconds(task_expiry, name="task_expiry")
        async with self._connection("release_stale_claims") as conn:
            released = await _maintenance.release_lapsed_claims(conn, expiry)
            # runs a process of an earlier release left waiting for their key
            started = await self._waiting_keys.start_runs_left_waiting(conn)
            names = dict.fromkeys([*released, *started])
            wakes: list[Wake] = [("workflow", name) for name in names]
            note = self._note(wakes)
            if note is not None:
                await fetch_one(conn, "notify", {"note": note})
        self._wake_all(wakes)
        return len(released)

    async def trim_history(self, retention: HistoryRetention) -> int | None:
        """Apply ``retention`` in bounded batches, one process at a time.

        Returns ``None`` when another process holds the trimming lock (this one skipped it).
        """
        async with self._connection("trim_history") as conn:
            return await _maintenance.trim_history(conn, retention)


async def _take_start_key(conn: Conn, key: dict[str, object]) -> str | None:
    """Record a start key in ``conn``'s transaction; the instance name it started, if in use."""
    if await fetch_one(conn, "take_start_key", key) is None:
        found = await fetch_one(conn, "find_start_key", key)
        assert found is not None  # the row take_start_key met is committed
        return str(found["instance_name"])
    return None


def _events_of(instance: Row, rows: list[Row]) -> list[WorkflowEvent]:
    """The claimed events of one instance, with counts as each callback sees them."""
    data = instance_from_row(instance)
    completed = instance["completed_tasks"]
    events: list[WorkflowEvent] = []
    for row in rows:
        event_type = WorkflowEventType(row["event_type"])
        task_result: TaskResultData | None = None
        if event_type == WorkflowEventType.TASK_COMPLETE:
            completed += 1
            task_result = _task_result(row)
        events.append(
            WorkflowEvent(
                type=event_type,
                instance=data,
                enqueued_task_count=instance["enqueued_tasks"],
                completed_task_count=completed,
                enqueued_at=row["enqueued_at"].astimezone(UTC),
                task_result=task_result,
            )
        )
    return events


def _task_result(row: Row) -> TaskResultData:
    """The task result a ``task_complete`` event refers to (UNUSABLE_RESULT if gone)."""
    if row["result_id"] is None:
        return TaskResultData(
            task_name="",
            status=TaskStatus.UNUSABLE_RESULT,
            error_text="the task result of this event is missing",
        )
    return TaskResultData(
        task_name=row["result_task_name"],
        status=TaskStatus(row["result_status"]),
        parameters=bytes_or_none(row["result_parameters"]),
        error_text=row["result_error"] or "",
        result=bytes_or_none(row["result_result"]),
        error_type=row["result_error_type"],
        error_traceback=row["result_error_traceback"],
        attempts=row["result_attempts"],
        traceparent=row["result_traceparent"],
    )
