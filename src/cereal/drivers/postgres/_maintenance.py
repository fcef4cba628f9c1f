"""The maintenance sweep: expire dead task leases and trim finished-run history.

Lease expiry is safe to run from every process at once (``SKIP LOCKED``);
history trimming runs in one process at a time under a transaction-level
advisory lock that others skip rather than wait for, in batches of bounded
size, each its own transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cereal.drivers._expired import (
    ExpiredLease,
    ExpiredTasks,
    decide_expiry,
    invalid_policy_note,
)
from cereal.drivers.postgres._db import Conn, execute, fetch_all, fetch_one
from cereal.models import HistoryRetention
from cereal.retry import given_up_note

TRIM_LOCK_KEY = 0x63657265616C02
"""The advisory lock key of history trimming (per database)."""

EXPIRE_BATCH = 500
"""Leases expired per statement (keeps each transaction short)."""

TRIM_BATCH = 500
"""Finished runs trimmed per transaction (each commits before the next begins)."""


async def expire_leases(conn: Conn, task_expiry: float) -> ExpiredTasks:
    """Handle leases past their deadline (last heartbeat + holder's expiry).

    A task with attempts left under its stored retry policy is queued again
    after its backoff; the others become LOST results (with the reason when
    the policy was refused). Each batch is one transaction that ends every
    lease it locked, so a batch that is full is followed by the next.
    ``task_expiry`` (the sweeper's) judges only leases stored without an
    expiry, which older code took.
    """
    outcome = ExpiredTasks()
    while True:
        retried: list[tuple[str, str]] = []
        async with conn.transaction():
            rows = await fetch_all(
                conn, "lock_expired_leases", {"expiry": float(task_expiry), "batch": EXPIRE_BATCH}
            )
            retry_ids: list[int] = []
            delays: list[float] = []
            lost_ids: list[int] = []
            lost_errors: list[str] = []
            given_up: list[str] = []
            invalid: list[str] = []
            for row in rows:
                lease = ExpiredLease(
                    row["id"], row["task_name"], row["workflow_name"], row["instance_name"]
                )
                decision = decide_expiry(lease, row["retry_policy"], row["attempt"])
                if decision.delay is not None:
                    retry_ids.append(row["id"])
                    delays.append(decision.delay)
                    retried.append((lease.workflow_name, lease.task_name))
                    continue
                lost_ids.append(row["id"])
                lost_errors.append(decision.error)
                if decision.poison:
                    given_up.append(given_up_note(lease.task_name, row["id"], row["attempt"]))
                if decision.error:
                    invalid.append(invalid_policy_note(lease))
            if retry_ids:
                await execute(conn, "retry_tasks", {"task_ids": retry_ids, "delays": delays})
            lost = []
            if lost_ids:
                lost = await fetch_all(
                    conn, "lose_tasks", {"task_ids": lost_ids, "errors": lost_errors}
                )
        # committed: report it
        outcome.retried.extend(retried)
        outcome.lost.extend(row["workflow_name"] for row in lost)
        outcome.given_up.extend(given_up)
        outcome.invalid.extend(invalid)
        if len(rows) < EXPIRE_BATCH:
            return outcome


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
