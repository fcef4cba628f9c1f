"""The maintenance sweep: expire dead task leases and trim finished-run history.

Lease expiry is safe to run from every process at once (``SKIP LOCKED``);
history trimming runs in one process at a time under a transaction-level
advisory lock that others skip rather than wait for, in batches of bounded
size, each its own transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cereal.drivers._expired import expiry_retry_delay
from cereal.drivers.postgres._db import Conn, execute, fetch_all, fetch_one
from cereal.models import HistoryRetention
from cereal.retry import given_up_note

TRIM_LOCK_KEY = 0x63657265616C02
"""The advisory lock key of history trimming (per database)."""

EXPIRE_BATCH = 500
"""Leases expired per statement (keeps each transaction short)."""

TRIM_BATCH = 500
"""Finished runs trimmed per transaction (each commits before the next begins)."""


async def retry_expired_leases(conn: Conn, task_expiry: float) -> list[tuple[str, str]]:
    """Queue again, after their backoff, expired tasks whose retry policy leaves attempts.

    Runs before :func:`expire_leases`, so those tasks are not reported LOST.
    Returns the (workflow name, task name) of each task queued again.
    """
    retried: list[tuple[str, str]] = []
    while True:
        async with conn.transaction():
            rows = await fetch_all(
                conn,
                "expired_retryable_leases",
                {"expiry": float(task_expiry), "batch": EXPIRE_BATCH},
            )
            delays = [expiry_retry_delay(row["retry_policy"], row["attempt"]) for row in rows]
            chosen = [
                (row, delay) for row, delay in zip(rows, delays, strict=True) if delay is not None
            ]
            if chosen:
                await execute(
                    conn,
                    "retry_tasks",
                    {
                        "task_ids": [row["id"] for row, _ in chosen],
                        "delays": [delay for _, delay in chosen],
                    },
                )
        retried.extend((row["workflow_name"], row["task_name"]) for row, _ in chosen)
        if len(rows) < EXPIRE_BATCH:
            return retried


async def expire_leases(conn: Conn, task_expiry: float) -> tuple[list[str], list[str]]:
    """Turn leases past their deadline (last heartbeat + holder's expiry) into LOST results.

    ``task_expiry`` (the sweeper's) judges only leases stored without an
    expiry, which older code took.

    Returns:
        The workflow name of each expired task, and a note for each poison
        task (several attempts, each lost).
    """
    names: list[str] = []
    given_up: list[str] = []
    while True:
        rows = await fetch_all(
            conn, "expire_leases", {"expiry": float(task_expiry), "batch": EXPIRE_BATCH}
        )
        names.extend(row["workflow_name"] for row in rows)
        given_up.extend(
            given_up_note(row["task_name"], row["id"], row["attempt"])
            for row in rows
            if row["poison"]
        )
        if len(rows) < EXPIRE_BATCH:
            return names, given_up


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
