"""The store side of a sweep: expired leases, their settlement, stale claims, history.

Reading expired leases locks nothing. Settling a batch is one transaction
that locks the tasks still running under the leases named and still
expired, with their instance rows, skipping rows others hold (``SKIP
LOCKED``), so it is safe to run from every process at once and never
waits. History trimming runs in one process at a time under a
transaction-level advisory lock that others skip rather than wait for, in
batches of bounded size, each its own transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from cereal import errors
from cereal.drivers._lease_ids import row_id
from cereal.drivers._retention_record import retention_changed
from cereal.drivers._start_key_store import START_KEY_WINDOW_S
from cereal.drivers.postgres._db import Conn, execute, fetch_all, fetch_one
from cereal.drivers.postgres._inspect import recorded_retention
from cereal.drivers.postgres._listen import Wake
from cereal.models import (
    ExpiredLease,
    HistoryRetention,
    LeaseSettlement,
    WorkflowRetention,
    rules_of,
)

TRIM_LOCK_KEY = 0x63657265616C02
"""The advisory lock key of history trimming (per database)."""

TRIM_BATCH = 500
"""Finished runs trimmed per transaction (each commits before the next begins)."""

logger = logging.getLogger(__name__)


async def expired_leases(conn: Conn, task_expiry: float, limit: int) -> list[ExpiredLease]:
    """Up to ``limit`` leases past their deadline (last heartbeat + holder's expiry), oldest first.

    ``task_expiry`` (the sweeper's) judges only leases stored without an
    expiry, which older code took.
    """
    rows = await fetch_all(
        conn, "expired_task_leases", {"expiry": float(task_expiry), "limit": limit}
    )
    return [
        ExpiredLease(
            task_id=str(row["id"]),
            lease=row["lease"],
            attempt=row["attempt"],
            task_name=row["task_name"],
            workflow_name=row["workflow_name"],
            instance_name=row["instance_name"],
            retry_policy=row["retry_policy"],
        )
        for row in rows
    ]


async def settle(
    conn: Conn,
    settlements: Sequence[LeaseSettlement],
    task_expiry: float,
    note: Callable[[Sequence[Wake]], str | None],
) -> tuple[list[str], list[str]]:
    """Apply, in one transaction, each settlement whose lease is still the task's and expired.

    A settlement naming a task id or lease no task can have matches nothing.
    The workflows of LOST tasks are announced with the commit (``note``
    builds the NOTIFY payload, ``None``: none sent).

    Returns:
        The task ids applied, and the workflow name of each task made LOST.
    """
    keyed: dict[int, LeaseSettlement] = {}
    leases: list[uuid.UUID] = []
    for settlement in settlements:
        task_id = row_id(settlement.task_id)
        lease = _lease(settlement.lease)
        if task_id is None or lease is None or task_id in keyed:
            continue
        keyed[task_id] = settlement
        leases.append(lease)
    if not keyed:
        return [], []
    params = {"task_ids": list(keyed), "leases": leases, "expiry": float(task_expiry)}
    async with conn.transaction():
        locked = [row["id"] for row in await fetch_all(conn, "lock_settled_leases", params)]
        retry = [task_id for task_id in locked if keyed[task_id].delay is not None]
        lose = [task_id for task_id in locked if keyed[task_id].delay is None]
        applied: list[int] = []
        lost: list[str] = []
        if retry:
            delays = [keyed[task_id].delay for task_id in retry]
            rows = await fetch_all(conn, "retry_tasks", {"task_ids": retry, "delays": delays})
            applied.extend(row["id"] for row in rows)
        if lose:
            texts = [keyed[task_id].error for task_id in lose]
            rows = await fetch_all(conn, "lose_tasks", {"task_ids": lose, "errors": texts})
            applied.extend(row["id"] for row in rows)
            lost = [row["workflow_name"] for row in rows]
        payload = note([("workflow", name) for name in dict.fromkeys(lost)])
        if payload is not None:
            # delivered with this commit
            await fetch_one(conn, "notify", {"note": payload})
    return [keyed[task_id].task_id for task_id in applied], lost


def _lease(text: str) -> uuid.UUID | None:
    """The lease token ``text`` names, or ``None`` when it is no token this store issues."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def trim_history(
    conn: Conn, retention: HistoryRetention, batch: int = TRIM_BATCH
) -> int | None:
    """Apply ``retention`` to the finished-run history, in batches of at most ``batch`` runs.

    Each batch is its own transaction under the trimming lock (the history
    trigger drops the batch's events in it), so no transaction grows with the
    history to remove.

    Returns:
        The number of rows removed, or ``None`` when another process holds the
        trimming lock (and this sweep skipped it).
    """
    await record_retention(conn, retention)
    await trim_start_keys(conn, batch)
    await trim_key_windows(conn, batch)
    trimmed = 0
    if retention.max_age is not None:
        max_age = float(retention.max_age)
        removed = await _in_batches(
            conn,
            lambda: execute(conn, "trim_history_age", {"max_age": max_age, "batch": batch}),
            batch,
        )
        if removed is None:
            return None
        trimmed += removed
    for workflow_name, rule in retention.per_workflow.items():
        removed = await _trim_workflow(conn, workflow_name, rule, batch)
        if removed is None:
            return None if trimmed == 0 else trimmed
        trimmed += removed
    over = await fetch_one(conn, "history_row_at", {"position": retention.max_rows})
    if over is None:
        return trimmed
    keep = max(retention.max_rows - retention.margin_rows, 0)
    if keep == 0:
        removed = await _in_batches(
            conn, lambda: execute(conn, "trim_history_all", {"batch": batch}), batch
        )
    else:
        last_kept = await fetch_one(conn, "history_row_at", {"position": keep - 1})
        if last_kept is None:
            return trimmed
        bound = {"ended_at": last_kept["ended_at"], "id": last_kept["id"], "batch": batch}
        removed = await _in_batches(
            conn, lambda: execute(conn, "trim_history_before", bound), batch
        )
    if removed is None:
        return None if trimmed == 0 else trimmed
    return trimmed + removed


async def _trim_workflow(
    conn: Conn, workflow_name: str, rule: WorkflowRetention, batch: int
) -> int | None:
    """One workflow name's rule: its runs past ``max_age``, then beyond its newest ``max_runs``.

    Returns ``None`` when another process holds the trimming lock.
    """
    trimmed = 0
    name = {"workflow_name": workflow_name, "batch": batch}
    if rule.max_age is not None:
        aged = {**name, "max_age": float(rule.max_age)}
        removed = await _in_batches(conn, lambda: execute(conn, "trim_workflow_age", aged), batch)
        if removed is None:
            return None
        trimmed += removed
    if rule.max_runs is None:
        return trimmed
    over = await fetch_one(conn, "workflow_row_at", {**name, "position": rule.max_runs})
    if over is None:
        return trimmed
    if rule.max_runs == 0:
        removed = await _in_batches(conn, lambda: execute(conn, "trim_workflow_all", name), batch)
    else:
        last_kept = await fetch_one(
            conn, "workflow_row_at", {**name, "position": rule.max_runs - 1}
        )
        if last_kept is None:
            return trimmed
        bound = {**name, "ended_at": last_kept["ended_at"], "id": last_kept["id"]}
        removed = await _in_batches(
            conn, lambda: execute(conn, "trim_workflow_before", bound), batch
        )
    if removed is None:  # another process took the lock: what this one removed still counts
        return trimmed or None
    return trimmed + removed


async def trim_start_keys(conn: Conn, batch: int = TRIM_BATCH) -> int:
    """Delete the start keys past their window, ``batch`` per transaction; how many."""
    params = {"window": START_KEY_WINDOW_S, "batch": batch}
    return await _until_short(lambda: execute(conn, "trim_start_keys", params), batch)


async def record_retention(conn: Conn, retention: HistoryRetention) -> None:
    """Record ``retention`` as the one the sweeps apply, unless it is recorded already.

    What is recorded is only shown (``applied_retention``): a failure here is
    logged and does not fail the trim; the next trim records it.
    """
    try:
        await _record_retention(conn, retention)
    except errors.DriverError:
        logger.warning("could not record the history retention applied; the next trim will")


async def _record_retention(conn: Conn, retention: HistoryRetention) -> None:
    if not retention_changed(await recorded_retention(conn), retention):
        return
    rules = rules_of(retention, datetime.now(UTC))
    await execute(
        conn,
        "replace_retention_rules",
        {
            "workflow_names": [rule.workflow_name or "" for rule in rules],
            "max_rows": [rule.max_rows for rule in rules],
            "margin_rows": [rule.margin_rows for rule in rules],
            "max_runs": [rule.max_runs for rule in rules],
            "max_ages": [None if rule.max_age is None else float(rule.max_age) for rule in rules],
        },
    )


async def trim_key_windows(conn: Conn, batch: int = TRIM_BATCH) -> int:
    """Delete rate-limit starts that left their windows and expired full-window markers.

    ``batch`` rows per statement (each its own transaction); returns how many.
    """
    params = {"batch": batch}
    starts = await _until_short(lambda: execute(conn, "trim_key_starts", params), batch)
    markers = await _until_short(lambda: execute(conn, "trim_key_windows", params), batch)
    return starts + markers


async def _until_short(delete_batch: Callable[[], Awaitable[int]], batch: int) -> int:
    """Run ``delete_batch`` (one autocommit statement) until it removes fewer than ``batch``."""
    removed_in_all = 0
    while True:
        removed = await delete_batch()
        removed_in_all += removed
        if removed < batch:
            return removed_in_all


async def _in_batches(
    conn: Conn, delete_batch: Callable[[], Awaitable[int]], batch: int
) -> int | None:
    """Run ``delete_batch`` (at most ``batch`` runs), one transaction each, until one is short.

    Returns:
        The runs removed, or ``None`` when another process held the trimming
        lock before this removed anything.
    """
    trimmed = 0
    while True:
        async with conn.transaction():
            locked = await fetch_one(conn, "try_trim_lock", {"key": TRIM_LOCK_KEY})
            if locked is None or not locked["locked"]:
                return trimmed or None
            removed = await delete_batch()
        trimmed += removed
        if removed < batch:
            return trimmed


async def release_lapsed_claims(conn: Conn, task_expiry: float) -> list[str]:
    """Release workflow claims whose holder stopped heartbeating for its expiry.

    ``task_expiry`` (the sweeper's) judges only claims stored without one.

    Returns:
        The workflow name of each released instance.
    """
    rows = await fetch_all(conn, "release_lapsed_claims", {"expiry": float(task_expiry)})
    return [row["workflow_name"] for row in rows]
