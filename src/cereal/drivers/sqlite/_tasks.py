"""Tasks on SQLite: lease ready tasks, report how they ended.

A dequeue leases up to N ready tasks (queued, ``start_after`` passed) in one
``BEGIN IMMEDIATE`` transaction, lowest ready rank first (the due time less a
minute per priority level: :mod:`cereal.priority`), each with its own random
128-bit token and a heartbeat time. Every completer call presents the token;
once the row is gone or holds another token the call raises
:class:`~cereal.errors.TaskLostError` and changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cereal import errors
from cereal.drivers.base import TaskCompleter
from cereal.drivers.sqlite._sql import Q, blob, instant, now
from cereal.models import (
    FailureDetails,
    QueueDepth,
    TaskData,
    TaskMetadata,
    TaskStatus,
    WorkflowEventType,
)
from cereal.retry import DEFAULT_MAX_HAND_BACKS

if TYPE_CHECKING:
    from cereal.drivers.sqlite.driver import SQLiteDriver


@dataclass(frozen=True)
class Lease:
    """One leased task: its id, token and the workflow to wake when it ends."""

    task_id: int
    token: str
    workflow_name: str
    data: TaskData
    concurrency_key: str | None = None
    """The task's concurrency key: when it stops running, its name's claimer is woken."""


def has_ready_task(conn: sqlite3.Connection, task_name: str) -> bool:
    """Whether a task of ``task_name`` is ready and within its key's limit (autocommit read)."""
    row = conn.execute(Q["has_ready_task"], {"task_name": task_name, "now": now()}).fetchone()
    return row is not None


KEYS_VISITED = 256
"""Most keys one claim visits; the next claim goes on after the last one (wrapping)."""

KEYS_TAKEN = 64
"""Most keys one claim takes tasks from (twice ``max_tasks`` below that)."""


def claim_tasks(
    conn: sqlite3.Connection,
    task_name: str,
    max_tasks: int,
    expiry: float,
    retry_policy: str | None = None,
) -> list[Lease]:
    """Lease up to ``max_tasks`` ready tasks for ``expiry`` seconds each, lowest rank first.

    Runs inside ``BEGIN IMMEDIATE``, SQLite's one writer: the running counts
    and rate windows read here cannot change before the leases are written.
    The expiry is stored with each lease, and ``retry_policy`` with each task
    that has none yet. With no keyed task queued this is one probe and one
    statement (``claim_unkeyed_tasks``). Otherwise keyed tasks are taken
    lowest ready rank first, each while its key runs fewer than its concurrency
    limit and started fewer than its rate limit's starts in the window, and
    while it and the unkeyed tasks due before it fit the claim; unkeyed ones
    fill the rest. Each start of a rate-limited task is recorded with the lease.
    """
    at = now()
    named = {"task_name": task_name, "now": at}
    lease = {"now": at, "expiry": expiry, "retry_policy": retry_policy}
    rows: list[sqlite3.Row] = []
    if conn.execute(Q["has_queued_keyed_task"], named).fetchone() is not None:
        chosen = _keyed_within_limits(
            conn, named, _keys_with_room(conn, named, max_tasks), max_tasks
        )
        if chosen.task_ids:
            found = conn.execute(
                Q["lease_tasks"], {**lease, "task_ids": json.dumps(chosen.task_ids)}
            )
            rows.extend(found.fetchall())
        _record_starts(conn, chosen.starts, at)
        for key in chosen.full_keys:
            conn.execute(Q["mark_key_window_full"], {"key": key, "now": at})
    if len(rows) < max_tasks:
        rest = {**named, **lease, "max_tasks": max_tasks - len(rows)}
        rows.extend(conn.execute(Q["claim_unkeyed_tasks"], rest).fetchall())
    return [_lease_from_row(row) for row in sorted(rows, key=_claim_order)]


@dataclass(frozen=True)
class _KeyCounts:
    """What one key has in use: its running tasks, and the most it may take now."""

    running: int
    room: int


@dataclass(frozen=True)
class _KeyedChoice:
    """The keyed tasks a claim leases, the rate-limited starts it records, full windows."""

    task_ids: list[int]
    starts: list[tuple[str, float]]
    """(key, window seconds) per rate-limited task taken."""
    full_keys: set[str]
    """Keys whose rate window this claim found or left full."""


def _room(head: sqlite3.Row) -> int:
    """How many more of a key's tasks may start now, at most: the least of its limits' rooms.

    Every keyed task has a concurrency limit, a rate limit or both (the
    table's check), so there is at least one room to take. A rate window is
    not counted here (that is done once per key a claim takes from): it has
    no room while a claim's mark says it is full, else up to its starts.
    """
    rooms = []
    if head["concurrency_limit"] is not None:
        rooms.append(int(head["concurrency_limit"]) - int(head["running"]))
    if head["rate_limit_starts"] is not None:
        rooms.append(0 if head["window_full"] else int(head["rate_limit_starts"]))
    return min(rooms)


def _keys_with_room(
    conn: sqlite3.Connection, named: dict[str, object], max_tasks: int
) -> dict[str, _KeyCounts]:
    """Keys whose first due task (by ready rank) fits under its limits, and what each uses.

    Visits at most :data:`KEYS_VISITED` keys, going on after the last key the
    previous claim of this name visited and wrapping round (so every key has
    its turn), and keeps at most ``2 * max_tasks`` (:data:`KEYS_TAKEN`) of
    them, lowest rank first: the first ``max_tasks`` tasks in rank order come
    from keys whose first due task is among them.
    """
    task_name = named["task_name"]
    row = conn.execute(Q["key_cursor"], {"task_name": task_name}).fetchone()
    cursor = None if row is None else str(row["after_key"])
    walk = {"task_name": task_name}
    found = conn.execute(Q["keys_after"], {**walk, "after": cursor, "count": KEYS_VISITED})
    keys = [str(r["k"]) for r in found]
    if cursor is not None and len(keys) < KEYS_VISITED:
        wrapped = conn.execute(
            Q["keys_after"], {**walk, "after": None, "count": KEYS_VISITED - len(keys)}
        )
        keys.extend(k for k in (str(r["k"]) for r in wrapped) if k <= cursor)
    after = keys[-1] if len(keys) >= KEYS_VISITED else None
    if after is not None:
        conn.execute(Q["set_key_cursor"], {**walk, "after_key": after})
    elif cursor is not None:
        conn.execute(Q["clear_key_cursor"], walk)
    heads = conn.execute(Q["key_heads"], {**named, "keys": json.dumps(keys)}).fetchall()
    with_room = sorted(
        (
            float(h["ready_rank"]),
            int(h["id"]),
            str(h["concurrency_key"]),
            _KeyCounts(int(h["running"]), _room(h)),
        )
        for h in heads
        if _room(h) > 0
    )[: min(2 * max_tasks, KEYS_TAKEN)]
    return {key: counts for _, _, key, counts in with_room}


def _keyed_within_limits(
    conn: sqlite3.Connection,
    named: dict[str, object],
    keys: dict[str, _KeyCounts],
    max_tasks: int,
) -> _KeyedChoice:
    """The keyed tasks to lease: lowest ready rank first, each within its own limits.

    ``keys`` maps each candidate key to what it has in use. A keyed task is
    taken only while it, the keyed ones taken and the due unkeyed ones before
    it fit in ``max_tasks`` (so neither kind starves).
    """
    choice = _KeyedChoice([], [], set())
    if not keys:
        return choice
    unkeyed = [
        (float(r["ready_rank"]), int(r["id"]))
        for r in conn.execute(Q["due_unkeyed_tasks"], {**named, "max_tasks": max_tasks})
    ]
    running = {key: counts.running for key, counts in keys.items()}
    started: dict[str, int] = {}  # a key's starts in its window, counted once it is met
    candidates: list[tuple[float, int, str, sqlite3.Row]] = []
    for key, counts in keys.items():
        most = min(max_tasks, counts.room)
        found = conn.execute(Q["keyed_candidates"], {**named, "key": key, "max_tasks": most})
        candidates.extend((float(row["ready_rank"]), int(row["id"]), key, row) for row in found)
    ahead = 0
    for rank, task_id, key, row in sorted(candidates, key=lambda c: c[:2]):
        while ahead < len(unkeyed) and unkeyed[ahead] < (rank, task_id):
            ahead += 1
        if len(choice.task_ids) + ahead >= max_tasks:
            break
        limit, starts = row["concurrency_limit"], row["rate_limit_starts"]
        if limit is not None and running[key] >= int(limit):
            continue
        if starts is not None:
            if key not in started:
                window = {"key": key, "now": named["now"]}
                started[key] = int(conn.execute(Q["key_window_starts"], window).fetchone()[0])
            if started[key] >= int(starts):
                choice.full_keys.add(key)
                continue
            started[key] += 1
            choice.starts.append((key, float(row["rate_limit_seconds"])))
            if started[key] >= int(starts):
                choice.full_keys.add(key)
        running[key] += 1
        choice.task_ids.append(task_id)
    return choice


def _record_starts(conn: sqlite3.Connection, starts: list[tuple[str, float]], at: float) -> None:
    """Record each rate-limited start in its key's window; drop starts that left theirs."""
    if not starts:
        return
    conn.executemany(
        Q["record_key_start"],
        [{"key": key, "leaves_at": at + seconds} for key, seconds in starts],
    )
    conn.execute(Q["prune_key_starts"], {"now": at})


def resume_lease(conn: sqlite3.Connection, task_id: str, token: str) -> Lease:
    """Take up the lease of running task ``task_id`` held under ``token``; refresh it.

    Raises:
        TaskLostError: no such lease (ended, expired or claimed again).
    """
    if not task_id.isdigit():
        raise errors.TaskLostError(f"no task lease {task_id!r}")
    params = {"task_id": int(task_id), "token": token, "now": now()}
    row = conn.execute(Q["resume_task_lease"], params).fetchone()
    if row is None:
        raise errors.TaskLostError()
    return _lease_from_row(row)


def _claim_order(row: sqlite3.Row) -> tuple[float, int]:
    # RETURNING follows the update's row order, not the claim's (ready rank, id)
    return (float(row["ready_rank"]), int(row["id"]))


def _lease_from_row(row: sqlite3.Row) -> Lease:
    metadata = TaskMetadata(
        enqueued_at=instant(row["enqueued_at"]),
        task_name=str(row["task_name"]),
        workflow_name=str(row["workflow_name"]),
        instance_name=str(row["instance_name"]),
        attempt=int(row["attempt"]),
        task_id=str(row["id"]),
        traceparent=row["traceparent"],
    )
    data = TaskData(
        name=metadata.task_name,
        parameters=blob(row["parameters"]),
        metadata=metadata,
        retry_policy=row["retry_policy"],
    )
    return Lease(
        int(row["id"]),
        str(row["lease_token"]),
        metadata.workflow_name,
        data,
        row["concurrency_key"],
    )


def unclaim(leases: list[Lease]) -> Callable[[sqlite3.Connection], None]:
    """A job giving leased tasks back to the queue (the caller was cancelled mid-claim)."""

    def job(conn: sqlite3.Connection) -> None:
        conn.executemany(
            Q["unclaim_task"],
            [{"task_id": lease.task_id, "token": lease.token} for lease in leases],
        )

    return job


def record_outcome(
    conn: sqlite3.Connection,
    task: sqlite3.Row,
    status: TaskStatus,
    error_text: str,
    result: bytes | None,
    failure: FailureDetails | None = None,
    run_traceparent: str | None = None,
) -> None:
    """Store how ``task`` ended as a result with a ``task_complete`` event; delete the task.

    The result keeps ``run_traceparent`` (the reporting run's span), else the
    task's own (its enqueuing callback's).
    """
    at = now()
    inserted = conn.execute(
        Q["insert_task_result"],
        {
            "task_id": task["id"],
            "instance_id": task["instance_id"],
            "task_name": task["task_name"],
            "parameters": task["parameters"],
            "status": status.value,
            "error_text": error_text,
            "result": result,
            "enqueued_at": task["enqueued_at"],
            "now": at,
            "error_type": None if failure is None else failure.error_type,
            "error_traceback": None if failure is None else failure.error_traceback,
            "attempts": max(int(task["attempt"]), 1),
            "traceparent": run_traceparent or task["traceparent"],
            # kept so a dead letter requeued runs under its key again
            "concurrency_key": task["concurrency_key"],
            "concurrency_limit": task["concurrency_limit"],
            "rate_limit_starts": task["rate_limit_starts"],
            "rate_limit_seconds": task["rate_limit_seconds"],
            "priority": task["priority"],
        },
    )
    conn.execute(
        Q["insert_event"],
        {
            "instance_id": task["instance_id"],
            "workflow_name": task["workflow_name"],
            "event_type": WorkflowEventType.TASK_COMPLETE.value,
            "task_result_id": inserted.lastrowid,
            "now": at,
        },
    )
    conn.execute(Q["delete_task"], {"task_id": task["id"]})


def requeue(
    conn: sqlite3.Connection,
    task_id: int,
    start_after: float,
    *,
    refund: bool,
    count_hand_back: bool | None = None,
) -> None:
    """End a task's lease and queue it from ``start_after``.

    ``refund`` (a hand-back) gives the attempt back and, unless
    ``count_hand_back`` is False (a task that never started), counts the hand-back.
    """
    counted = refund if count_hand_back is None else count_hand_back
    params = {
        "task_id": task_id,
        "start_after": start_after,
        "refund": 1 if refund else 0,
        "counted": 1 if counted else 0,
    }
    conn.execute(Q["requeue_task"], params)


class SQLiteTaskCompleter(TaskCompleter):
    """The lease on one running task."""

    def __init__(self, driver: SQLiteDriver, lease: Lease) -> None:
        self._driver = driver
        self._lease = lease
        self.lease_token = lease.token

    def _ids(self) -> dict[str, object]:
        return {"task_id": self._lease.task_id, "token": self._lease.token}

    async def heartbeat(self) -> None:
        """Refresh the lease.

        Raises:
            TaskLostError: the task is gone (its workflow ended, it expired or completed).
        """
        ids = self._ids()

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(Q["heartbeat_task"], {**ids, "now": now()}).rowcount != 1:
                raise errors.TaskLostError()

        await self._driver._connection().call(job)

    async def succeed(self, result: bytes | None) -> None:
        """Record success with ``result`` and queue a ``task_complete`` event.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        await self._complete(TaskStatus.SUCCESS, "", result)

    async def fail(self, error: str) -> None:
        """Record failure with the error text ``error``.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        await self._complete(TaskStatus.FAILED, error, None)

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Record failure with the exception's text, type and traceback.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        await self._complete(TaskStatus.FAILED, failure.error, None, failure)

    async def abandon(self) -> None:
        """Report the task ``LOST`` to its workflow now.

        Raises:
            TaskLostError: the lease is gone already.
        """
        await self._complete(TaskStatus.LOST, "", None)

    async def retry(self, error: str, delay: float) -> None:
        """Queue the task again ``delay`` seconds from now; the lease ends.

        Raises:
            TaskLostError: the lease is gone; nothing changed.
        """
        ids = self._ids()

        def job(conn: sqlite3.Connection) -> None:
            task = conn.execute(Q["leased_task"], ids).fetchone()
            if task is None:
                raise errors.TaskLostError()
            requeue(conn, int(task["id"]), now() + delay, refund=False)

        await self._driver._connection().call(job)
        self._wake_key_waiters()

    async def hand_back(self) -> bool:
        """Queue the task again at once, the attempt not counted; LOST after too many.

        Raises:
            TaskLostError: the lease is gone already.
        """
        return await self._hand_back(counted=True)

    async def hand_back_unstarted(self) -> bool:
        """Queue the never-started task again at once; neither attempt nor hand-back counted.

        Raises:
            TaskLostError: the lease is gone already.
        """
        return await self._hand_back(counted=False)

    async def _hand_back(self, *, counted: bool) -> bool:
        ids = self._ids()

        def job(conn: sqlite3.Connection) -> bool:
            task = conn.execute(Q["leased_task"], ids).fetchone()
            if task is None:
                raise errors.TaskLostError()
            if counted and int(task["hand_backs"]) >= DEFAULT_MAX_HAND_BACKS:
                record_outcome(conn, task, TaskStatus.LOST, "", None, None, self.result_traceparent)
                return False
            requeue(conn, int(task["id"]), now(), refund=True, count_hand_back=counted)
            return True

        queued: bool = await self._driver._connection().call(job)
        if queued:
            self._driver._wake("task", self._lease.data.name)
        else:
            self._driver._wake("workflow", self._lease.workflow_name)
        return queued

    async def _complete(
        self,
        status: TaskStatus,
        error_text: str,
        result: bytes | None,
        failure: FailureDetails | None = None,
    ) -> None:
        ids = self._ids()

        def job(conn: sqlite3.Connection) -> None:
            task = conn.execute(Q["leased_task"], ids).fetchone()
            if task is None:
                raise errors.TaskLostError()
            record_outcome(conn, task, status, error_text, result, failure, self.result_traceparent)

        await self._driver._connection().call(job)
        self._driver._wake("workflow", self._lease.workflow_name)
        self._wake_key_waiters()

    def _wake_key_waiters(self) -> None:
        # a slot of its key is free: tasks of its name held back by the key may go now
        # (other names sharing the key, and other processes, find it at their next poll)
        if self._lease.concurrency_key is not None:
            self._driver._wake("task", self._lease.data.name)


def queue_depths(conn: sqlite3.Connection) -> list[QueueDepth]:
    """Due queued tasks per task name, then ready unclaimed instances per workflow name."""
    depths = []
    for kind, query in (("task", Q["task_queue_depths"]), ("workflow", Q["workflow_queue_depths"])):
        for row in conn.execute(query, {"now": now()}).fetchall():
            oldest = row["oldest_at"]
            depths.append(
                QueueDepth(
                    kind=kind,
                    name=str(row["name"]),
                    depth=int(row["depth"]),
                    oldest_at=None if oldest is None else instant(oldest),
                )
            )
    return depths
