"""Workflow events on SQLite: claim instances, apply a decision, or release a claim.

A claim takes up to N instance rows with a random token each and a heartbeat
time, in one short ``BEGIN IMMEDIATE`` transaction, together with up to M of
each instance's oldest events. Claimable instances are found from the instance
table: ``ready_seq`` (migration 0003) is the id of an instance's oldest pending
event, kept by a trigger on every event insert and recomputed by the decision
that consumes events, and a partial index holds only ready, unclaimed
instances, so a claim never walks events (nor those of instances claimed
elsewhere). Only instances without a claim are eligible, so one callback per
instance runs at a time across processes. No write transaction stays open
during the user's callback. The decision runs in its own ``BEGIN IMMEDIATE``
transaction that first checks the token (else
:class:`~cereal.errors.WorkflowClaimLostError`, nothing changed) and then
applies everything at once. A ``task_complete`` event's task result is only
read at claim time and deleted by the decision, so a rollback has nothing to
restore: closing without a decision just drops the claim.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cereal import errors
from cereal.drivers._start_key_store import START_KEY_WINDOW_S
from cereal.drivers.base import WorkflowCompleter
from cereal.drivers.sqlite._sql import (
    Q,
    blob,
    epoch,
    finish_instance,
    instant,
    now,
    start_waiting_runs,
)
from cereal.models import (
    FailureDetails,
    ListWorkflowFilter,
    NewTask,
    TaskResultData,
    TaskStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
)

if TYPE_CHECKING:
    from cereal.drivers.sqlite.driver import SQLiteDriver

logger = logging.getLogger(__name__)

MISSING_RESULT_TEXT = "the task result was not found"

_Job = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Claim:
    """One claimed instance (by token) and the events it holds, in sequence order."""

    instance_id: int
    token: str
    workflow_name: str
    event_ids: list[int]
    task_result_ids: list[int]
    events: list[WorkflowEvent]


def has_claimable(conn: sqlite3.Connection, names_json: str) -> bool:
    """Whether an unclaimed instance of these names has an event (autocommit read)."""
    row = conn.execute(Q["has_claimable_instance"], {"workflow_names": names_json}).fetchone()
    return row is not None


def claim_batch(
    conn: sqlite3.Connection,
    names_json: str,
    *,
    max_instances: int,
    max_events: int,
    expiry: float,
) -> list[Claim]:
    """Claim instances with their oldest events (inside ``BEGIN IMMEDIATE``).

    Up to ``max_instances`` unclaimed instances whose oldest event is oldest,
    each with up to ``max_events`` events. Each claim stores the claimer's
    ``expiry``: the sweep releases it only once that long has passed since its
    last heartbeat.
    """
    rows = conn.execute(
        Q["claim_instances"],
        {
            "workflow_names": names_json,
            "max_instances": max_instances,
            "now": now(),
            "expiry": expiry,
        },
    ).fetchall()
    # RETURNING gives no order: oldest ready event first, as claimed
    rows.sort(key=lambda row: int(row["ready_seq"]))
    return [_claim_events(conn, row, max_events) for row in rows]


def _claim_events(conn: sqlite3.Connection, row: sqlite3.Row, max_events: int) -> Claim:
    """The claimed instance ``row`` with its oldest events and their counts."""
    instance_id = int(row["id"])
    event_rows = conn.execute(
        Q["instance_events"], {"instance_id": instance_id, "max_events": max_events}
    ).fetchall()
    result_ids = [int(e["task_result_id"]) for e in event_rows if e["task_result_id"] is not None]
    results = _read_task_results(conn, result_ids)
    instance = WorkflowInstanceData(
        workflow_name=str(row["workflow_name"]),
        instance_name=str(row["instance_name"]),
        status=WorkflowInstanceStatus(row["status"]),
        parameters=blob(row["parameters"]),
        payload=blob(row["payload"]),
        started_at=instant(row["started_at"]),
        traceparent=row["traceparent"],
    )
    enqueued = int(row["enqueued_tasks"])
    completed = int(row["completed_tasks"])
    events: list[WorkflowEvent] = []
    for event_row in event_rows:
        event_type = WorkflowEventType(event_row["event_type"])
        task_result = None
        if event_type is WorkflowEventType.TASK_COMPLETE:
            result_id = event_row["task_result_id"]
            task_result = results.get(None if result_id is None else int(result_id))
            if task_result is None:
                task_result = TaskResultData(
                    task_name="", status=TaskStatus.UNUSABLE_RESULT, error_text=MISSING_RESULT_TEXT
                )
            completed += 1  # each event counts the completions up to and including it
        events.append(
            WorkflowEvent(
                type=event_type,
                instance=replace(instance),  # its own copy: callers may update it per callback
                enqueued_task_count=enqueued,
                completed_task_count=completed,
                enqueued_at=instant(event_row["enqueued_at"]),
                task_result=task_result,
            )
        )
    return Claim(
        instance_id=instance_id,
        token=str(row["claim_token"]),
        workflow_name=instance.workflow_name,
        event_ids=[int(e["id"]) for e in event_rows],
        task_result_ids=result_ids,
        events=events,
    )


def _read_task_results(
    conn: sqlite3.Connection, task_result_ids: list[int]
) -> dict[int | None, TaskResultData]:
    if not task_result_ids:
        return {}
    rows = conn.execute(
        Q["get_task_results"], {"task_result_ids": json.dumps(task_result_ids)}
    ).fetchall()
    return {
        int(row["id"]): TaskResultData(
            task_name=str(row["task_name"]),
            status=TaskStatus(row["status"]),
            parameters=blob(row["parameters"]),
            error_text=str(row["error_text"]),
            result=blob(row["result"]),
            error_type=row["error_type"],
            error_traceback=row["error_traceback"],
            attempts=int(row["attempts"]),
            traceparent=row["traceparent"],
        )
        for row in rows
    }


def release(claims: list[Claim]) -> _Job:
    """A job dropping ``claims`` without a decision (their events are redelivered)."""

    def job(conn: sqlite3.Connection) -> None:
        conn.executemany(
            Q["release_claim"],
            [{"instance_id": claim.instance_id, "token": claim.token} for claim in claims],
        )

    return job


def names_json(workflow_names: Sequence[str]) -> str:
    """The workflow names as the JSON array the claim queries expect."""
    return json.dumps(sorted(set(workflow_names)))


def enqueue(
    conn: sqlite3.Connection | sqlite3.Cursor,
    workflow_name: str,
    instance_name: str,
    params: bytes | None,
    traceparent: str | None = None,
    at: float | None = None,
) -> bool:
    """Create a live instance with its start event; False when one is live already.

    ``conn`` may be a cursor of a caller's connection (rows as ``sqlite3.Row``).
    ``traceparent`` (the enqueue's span, when traced) is kept with the instance.
    ``at``, the start time (default: now), lets a start key share it.
    """
    if at is None:
        at = now()
    row = conn.execute(
        Q["insert_instance"],
        {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": params,
            "now": at,
            "traceparent": traceparent,
        },
    ).fetchone()
    if row is None:
        return False
    _start_event(conn, int(row["id"]), workflow_name, at)
    return True


def kill(conn: sqlite3.Connection, workflow_name: str, instance_name: str, error: str) -> list[str]:
    """Finish the live instance with ``error`` whether or not it is claimed.

    Returns:
        The workflow names of runs its end started from waiting for their key.

    Raises:
        WorkflowInstanceNotFoundError: no live instance.
    """
    names = {"workflow_name": workflow_name, "instance_name": instance_name}
    row = conn.execute(Q["find_live_instance"], names).fetchone()
    if row is None:
        raise errors.WorkflowInstanceNotFoundError()
    return finish_instance(conn, int(row["id"]), None, error, now())


def enqueue_keyed(
    conn: sqlite3.Connection,
    workflow_name: str,
    instance_name: str,
    params: bytes | None,
    concurrency: tuple[str, int],
    traceparent: str | None = None,
    at: float | None = None,
) -> list[str] | None:
    """:func:`enqueue` under a workflow concurrency key; None when the names are live.

    The run is created waiting (its start event is not ready), then the key's
    oldest waiting runs that fit are started, so runs start in enqueue order.

    Returns:
        The workflow names of the runs started (this one, if it fit).
    """
    at = now() if at is None else at
    key, limit = concurrency
    row = conn.execute(
        Q["insert_keyed_instance"],
        {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": params,
            "now": at,
            "traceparent": traceparent,
            "concurrency_key": key,
            "concurrency_limit": limit,
        },
    ).fetchone()
    if row is None:
        return None
    _start_event(conn, int(row["id"]), workflow_name, at)
    return start_waiting_runs(conn, key)


def _start_event(
    conn: sqlite3.Connection | sqlite3.Cursor, instance_id: int, workflow_name: str, at: float
) -> None:
    conn.execute(
        Q["insert_event"],
        {
            "instance_id": instance_id,
            "workflow_name": workflow_name,
            "event_type": WorkflowEventType.START.value,
            "task_result_id": None,
            "now": at,
        },
    )


_BY_NAMES = "workflow_name, instance_name"
_NEWEST_FIRST = "started_at DESC, workflow_name, instance_name"


def list_rows(conn: sqlite3.Connection, where: ListWorkflowFilter) -> list[sqlite3.Row]:
    """Live rows and the newest finished run of each pair without one, in name order.

    One statement: the two kinds are joined with UNION ALL (the pairs are
    disjoint), sorted, and cut to ``where.offset`` / ``where.limit``. A page
    newest first walks the start-time index and reads about offset + limit
    rows of each kind, however long the history (unfiltered by names).
    """
    # the start-time walk pays off only unfiltered: a name filter matching few
    # recent runs would walk most of the index (the names index serves it)
    paged_newest = (
        where.newest_first
        and where.limit is not None
        and where.workflow_name is None
        and where.instance_name is None
    )
    parts: list[str] = []
    if where.is_running is not False:
        live = _subquery(Q["list_live_instances"])
        # a page newest first needs at most offset + limit of each kind
        parts.append(f"{live}\nORDER BY {_NEWEST_FIRST} LIMIT :window" if paged_newest else live)
    if where.is_running is not True and paged_newest:
        parts.append(_subquery(Q["list_history_newest_first"]))
    elif where.is_running is not True and where.workflow_name is None:
        parts.append(_subquery(Q["list_history_of_any_workflow"]))
    elif where.is_running is not True:
        parts.append(_subquery(Q["list_history_of_workflow"]))
    # composed from the named queries only; every value is a bound parameter
    union = " UNION ALL ".join(f"SELECT * FROM (\n{part}\n)" for part in parts)
    order = _NEWEST_FIRST if where.newest_first else _BY_NAMES
    statement = f"{union} ORDER BY {order} LIMIT :limit OFFSET :offset"
    params = {
        "workflow_name": where.workflow_name,
        "instance_name": where.instance_name,
        "limit": -1 if where.limit is None else where.limit,  # -1: no limit
        "offset": where.offset,
        "window": where.offset + (where.limit or 0),
    }
    return conn.execute(statement, params).fetchall()


def insert_new_tasks(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> int:
    """Queue the tasks of ``rows`` in order, but none whose idempotency key the run has.

    Returns:
        How many were queued.
    """
    if all(row["idempotency_key"] is None for row in rows):
        conn.executemany(Q["insert_task"], rows)
        return len(rows)
    added = 0
    for row in rows:  # one at a time: a key is recorded before the next task is checked
        key = {"instance_id": row["instance_id"], "idempotency_key": row["idempotency_key"]}
        if key["idempotency_key"] is not None:
            if conn.execute(Q["task_key_taken"], key).fetchone() is not None:
                continue
            inserted = conn.execute(Q["insert_task"], row)
            conn.execute(Q["record_task_key"], {**key, "task_id": inserted.lastrowid})
        else:
            conn.execute(Q["insert_task"], row)
        added += 1
    return added


def _subquery(query: str) -> str:
    """A named query as a subquery: trailing comment lines and its ``;`` removed."""
    lines = query.strip().splitlines()
    while lines and lines[-1].lstrip().startswith("--"):
        lines.pop()
    return "\n".join(lines).rstrip().rstrip(";")


class SQLiteWorkflowCompleter(WorkflowCompleter):
    """Holds the claim on one instance and the events it was claimed with."""

    def __init__(self, driver: SQLiteDriver, claim: Claim) -> None:
        self._driver = driver
        self._claim = claim
        self._open = True

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("this workflow completer already applied a decision or closed")

    async def continue_(self, payload: bytes | None, tasks: Sequence[NewTask]) -> None:
        """Consume every claimed event, store payload and counts, queue ``tasks``, atomically.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim expired; nothing stored.
        """
        self._check_open()
        claim = self._claim
        start_afters = [None if t.start_after is None else epoch(t.start_after) for t in tasks]

        def job(conn: sqlite3.Connection) -> bool:
            at = now()
            self._check_claim(conn)
            self._consume(conn)
            instance = claim.events[-1].instance
            rows = [
                {
                    "instance_id": claim.instance_id,
                    "workflow_name": instance.workflow_name,
                    "instance_name": instance.instance_name,
                    "task_name": task.task_name,
                    "parameters": task.parameters,
                    "now": at,
                    "start_after": at if start_after is None else start_after,
                    "traceparent": task.traceparent,
                    "retry_policy": task.retry_policy,
                    "concurrency_key": task.concurrency_key,
                    "concurrency_limit": task.concurrency_limit,
                    "rate_limit_starts": task.rate_limit_starts,
                    "rate_limit_seconds": task.rate_limit_seconds,
                    "priority": task.priority,
                    "idempotency_key": task.idempotency_key,
                }
                for task, start_after in zip(tasks, start_afters, strict=True)
            ]
            added = insert_new_tasks(conn, rows)
            # after the consume, so ready_seq is recomputed from the events left
            row = conn.execute(
                Q["continue_instance"],
                {
                    "payload": payload,
                    "added_tasks": added,
                    "completed_tasks": claim.events[-1].completed_task_count,
                    "instance_id": claim.instance_id,
                    "token": claim.token,
                },
            ).fetchone()
            return row is not None and row["ready_seq"] is not None

        ready_again = await self._decide(job)
        for task_name in dict.fromkeys(task.task_name for task in tasks):
            self._driver._wake("task", task_name)
        if ready_again:  # events arrived during the callback; wakeups then found it claimed
            self._driver._wake("workflow", claim.workflow_name)

    async def done(self, result: bytes | None) -> None:
        """Finish the instance with ``result``.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim expired.
        """
        await self._finish(result, None)

    async def fail(self, error: str) -> None:
        """Finish the instance with the error text ``error``.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim expired.
        """
        await self._finish(None, error)

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Finish the instance with ``failure``'s text, exception type and traceback.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim expired.
        """
        await self._finish(None, failure.error, failure)

    async def _finish(
        self, result: bytes | None, error: str | None, failure: FailureDetails | None = None
    ) -> None:
        self._check_open()
        claim = self._claim

        started: list[str] = []

        def job(conn: sqlite3.Connection) -> bool:
            self._check_claim(conn)
            started[:] = finish_instance(conn, claim.instance_id, result, error, now(), failure)
            return False

        await self._decide(job)
        for workflow_name in dict.fromkeys(started):  # runs its end started from waiting
            self._driver._wake("workflow", workflow_name)

    def _check_claim(self, conn: sqlite3.Connection) -> None:
        ids = {"instance_id": self._claim.instance_id, "token": self._claim.token}
        if conn.execute(Q["check_claim"], ids).fetchone() is None:
            raise errors.WorkflowClaimLostError()

    def _consume(self, conn: sqlite3.Connection) -> None:
        claim = self._claim
        ids: dict[str, object] = {"instance_id": claim.instance_id}
        conn.execute(Q["delete_events"], {**ids, "event_ids": json.dumps(claim.event_ids)})
        if claim.task_result_ids:
            conn.execute(
                Q["delete_task_results"],
                {**ids, "task_result_ids": json.dumps(claim.task_result_ids)},
            )

    async def _decide(self, job: Callable[[sqlite3.Connection], bool]) -> bool:
        try:
            applied = await self._driver._connection().call(job)
        except errors.WorkflowClaimLostError:
            self._open = False
            raise
        # any other failure leaves it open, so close() releases the claim at once
        self._open = False
        return applied

    async def heartbeat(self) -> None:
        """Refresh the claim so the sweep does not release it during a long callback."""
        if not self._open:
            return
        claim = self._claim

        def job(conn: sqlite3.Connection) -> None:
            ids = {"instance_id": claim.instance_id, "token": claim.token, "now": now()}
            if conn.execute(Q["heartbeat_claim"], ids).rowcount != 1:
                logger.debug("workflow claim already lost", extra={"event": "claim_lost"})

        await self._driver._connection().call(job)

    async def close(self) -> None:
        """Drop the claim if no decision was applied (the events are redelivered). Idempotent."""
        if not self._open:
            return
        self._open = False
        try:
            await self._driver._connection().call(release([self._claim]))
        except errors.CerealError:
            # the sweep releases the claim once its heartbeat is older than the task expiry
            logger.warning("could not release a workflow claim", exc_info=True)
            return
        self._driver._wake("workflow", self._claim.workflow_name)


def enqueue_once(
    conn: sqlite3.Connection,
    workflow_name: str,
    instance_name: str,
    params: bytes | None,
    idempotency_key: str,
    traceparent: str | None = None,
    concurrency: tuple[str, int] | None = None,
) -> str | bool | None:
    """:func:`enqueue` guarded by a start key, in one write transaction.

    With ``concurrency`` (a workflow concurrency key and its limit): :func:`enqueue_keyed`.

    Returns:
        None when it created the run (and recorded the key); the instance
        name the key started when the key is within its window (nothing
        written); False when the key is new but the names are live.
    """
    at = now()
    key = {"workflow_name": workflow_name, "idempotency_key": idempotency_key}
    found = conn.execute(Q["find_start_key"], {**key, "cutoff": at - START_KEY_WINDOW_S}).fetchone()
    if found is not None:
        return str(found["instance_name"])
    if concurrency is None:
        created = enqueue(conn, workflow_name, instance_name, params, traceparent, at)
    else:
        created = (
            enqueue_keyed(conn, workflow_name, instance_name, params, concurrency, traceparent, at)
            is not None
        )
    if not created:
        return False
    # the key's time is its run's start time: shown, a key names the run it started
    conn.execute(Q["record_start_key"], {**key, "instance_name": instance_name, "now": at})
    return None
