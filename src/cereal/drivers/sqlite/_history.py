"""Finished-run retention on SQLite: trim runs, their event history and dead tasks in batches.

Each batch is one short write transaction: it deletes at most
:data:`TRIM_BATCH` of the oldest finished runs, then the event history of
each by its instance id (the history index's ``(workflow_name,
instance_name, instance_id)`` prefix), so a batch's cost follows the rows it
removes, never the history a long-lived schedule's name pair has built up.
The write lock is released between batches, so another process's enqueue
waits for one batch at most, not for the whole trim.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from cereal import errors
from cereal.drivers._start_key_store import START_KEY_WINDOW_S
from cereal.drivers.sqlite import _inspect
from cereal.drivers.sqlite._connection import Connection
from cereal.drivers.sqlite._sql import Q, now
from cereal.models import HistoryRetention, WorkflowRetention

TRIM_BATCH = 200
"""Finished runs removed per transaction (each commits before the next begins)."""

MIN_TRIM_PAUSE = 0.003
MAX_TRIM_PAUSE = 0.05
"""Bounds of the pause between two batches (as long as the last one held the lock)."""

logger = logging.getLogger(__name__)


async def trim_history(db: Connection, retention: HistoryRetention, batch: int = TRIM_BATCH) -> int:
    """Apply ``retention``: drop runs past ``max_age``, then the oldest past ``max_rows``.

    Runs are ordered by ``(ended_at, id)``; counting walks at most ``max_rows``
    entries of the ``ended_at`` index (``OFFSET``), never the whole table.
    With nothing to remove, the write lock is never taken.

    Returns:
        The number of finished runs removed.
    """
    await _record_retention(db, retention)
    trimmed = 0
    if retention.max_age is not None:
        cutoff = {"cutoff": now() - retention.max_age}
        trimmed += await _in_batches(
            db,
            Q["trim_history_before"],
            cutoff,
            batch,
            ready=lambda conn: has_history_before(conn, cutoff),
        )
    # a name's own rule first: the room it frees counts for the store-wide bound
    for workflow_name, rule in retention.per_workflow.items():
        trimmed += await _trim_workflow(db, workflow_name, rule, batch)
    boundary = await db.call(lambda conn: trim_boundary(conn, retention), mode="read")
    if boundary is not None:
        trimmed += await _in_batches(db, Q["trim_history_through"], boundary, batch)
    await trim_start_keys(db, batch)
    await trim_key_windows(db, batch)
    return trimmed


async def _record_retention(db: Connection, retention: HistoryRetention) -> None:
    """Record the retention this trim applies, when it changed (the write lock only then).

    What is recorded is only shown (``applied_retention``): a store too busy
    to record it now does not fail the trim, and the next trim records it.
    """
    at = now()
    try:
        await db.call(
            lambda conn: _inspect.record_retention(conn, retention, at),
            ready=lambda conn: _inspect.retention_changed(conn, retention),
            empty=None,
        )
    except errors.DriverError:
        logger.warning("could not record the history retention applied; the next trim will")


async def _trim_workflow(
    db: Connection, workflow_name: str, rule: WorkflowRetention, batch: int
) -> int:
    """Apply one workflow name's rule: runs past its ``max_age``, then beyond its ``max_runs``."""
    trimmed = 0
    if rule.max_age is not None:
        cutoff = {"workflow_name": workflow_name, "cutoff": now() - rule.max_age}
        trimmed += await _in_batches(
            db,
            Q["trim_workflow_before"],
            cutoff,
            batch,
            # nothing due: the write lock is never taken (every sweep runs every rule)
            ready=lambda conn: (
                conn.execute(Q["has_workflow_history_before"], cutoff).fetchone() is not None
            ),
        )
    if rule.max_runs is not None:
        offset = {"workflow_name": workflow_name, "offset": rule.max_runs}
        boundary = await db.call(
            lambda conn: conn.execute(Q["workflow_row_at_offset"], offset).fetchone(), mode="read"
        )
        if boundary is not None:
            through = {
                "workflow_name": workflow_name,
                "ended_at": boundary["ended_at"],
                "last_id": boundary["id"],
            }
            trimmed += await _in_batches(db, Q["trim_workflow_through"], through, batch)
    return trimmed


async def trim_start_keys(db: Connection, batch: int = TRIM_BATCH) -> int:
    """Delete the start keys past their window, ``batch`` per transaction; how many."""
    bounded = {"cutoff": now() - START_KEY_WINDOW_S, "batch": batch}

    def expired(conn: sqlite3.Connection) -> bool:
        return conn.execute(Q["has_expired_start_key"], bounded).fetchone() is not None

    removed_in_all = 0
    while True:
        removed: int = await db.call(
            lambda conn: conn.execute(Q["trim_start_keys"], bounded).rowcount,
            ready=expired,
            empty=0,
        )
        removed_in_all += removed
        if removed < batch:
            return removed_in_all


async def trim_key_windows(db: Connection, batch: int = TRIM_BATCH) -> int:
    """Delete rate-limit starts that left their windows and expired full-window markers.

    ``batch`` rows per write transaction; the write lock is not taken while
    there is nothing to delete. Returns how many rows went.
    """
    at = {"now": now()}
    bounded = {**at, "batch": batch}

    def expired(conn: sqlite3.Connection) -> bool:
        return conn.execute(Q["has_expired_key_start"], at).fetchone() is not None

    def one_batch(conn: sqlite3.Connection) -> tuple[int, int]:
        starts = conn.execute(Q["trim_key_starts"], bounded).rowcount
        return starts, conn.execute(Q["trim_key_windows"], bounded).rowcount

    removed_in_all = 0
    while True:
        starts, markers = await db.call(one_batch, ready=expired, empty=(0, 0))
        removed_in_all += starts + markers
        if max(starts, markers) < batch:
            return removed_in_all


def has_history_before(conn: sqlite3.Connection, cutoff: dict[str, float]) -> bool:
    """Whether a finished run ended before the cutoff (autocommit read)."""
    return conn.execute(Q["has_history_before"], cutoff).fetchone() is not None


def trim_boundary(conn: sqlite3.Connection, retention: HistoryRetention) -> dict[str, Any] | None:
    """The newest run to remove under ``max_rows`` as ``(ended_at, last_id)``; None: none."""
    over = conn.execute(Q["history_row_at_offset"], {"offset": retention.max_rows}).fetchone()
    if over is None:
        return None
    keep = max(retention.max_rows - retention.margin_rows, 0)
    boundary = conn.execute(Q["history_row_at_offset"], {"offset": keep}).fetchone()
    if boundary is None:
        return None
    return {"ended_at": boundary["ended_at"], "last_id": boundary["id"]}


def trim_batch(conn: sqlite3.Connection, query: str, params: dict[str, Any]) -> int:
    """Delete one batch of runs with ``query`` (SQL), each one's event history and dead tasks."""
    runs = conn.execute(query, params).fetchall()
    # stored before the event history existed: no history, no dead tasks to delete
    identified = [run for run in runs if run["instance_id"] is not None]
    conn.executemany(
        Q["trim_run_events"],
        [
            {
                "workflow_name": run["workflow_name"],
                "instance_name": run["instance_name"],
                "instance_id": run["instance_id"],
            }
            for run in identified
        ],
    )
    conn.executemany(
        Q["trim_run_dead_tasks"], [{"instance_id": run["instance_id"]} for run in identified]
    )
    return len(runs)


async def _in_batches(
    db: Connection,
    query: str,
    params: dict[str, Any],
    batch: int,
    ready: Callable[[sqlite3.Connection], bool] | None = None,
) -> int:
    """Run :func:`trim_batch` until a batch comes back short; the runs removed."""
    bounded = {**params, "batch": batch}
    trimmed = 0
    while True:
        began = time.monotonic()
        removed: int = await db.call(
            lambda conn: trim_batch(conn, query, bounded), ready=ready, empty=0
        )
        trimmed += removed
        if removed < batch:
            return trimmed
        ready = None
        await _yield_the_lock(time.monotonic() - began)


async def _yield_the_lock(held: float) -> None:
    """Pause after a batch for as long as it held the write lock (bounded).

    Other processes' writers poll for the lock every few ms; without a pause
    this one would take it again at once, batch after batch, and their
    enqueues would wait for many batches instead of one.
    """
    await asyncio.sleep(min(max(held, MIN_TRIM_PAUSE), MAX_TRIM_PAUSE))
