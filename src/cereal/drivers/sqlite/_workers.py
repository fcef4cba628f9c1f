"""Live workers on SQLite: one row per started Manager (migration ``workers``).

Each function runs on the driver's connection thread inside the transaction
the caller chose; times come from the host clock, the SQLite driver's clock.
"""

from __future__ import annotations

import json
import sqlite3

from cereal.drivers._sqlfiles import load_queries
from cereal.drivers.sqlite._sql import instant, now
from cereal.models import NewWorker, WorkerInfo

WORKER_SQL = load_queries("cereal.drivers.sqlite", "workers.sql")
"""The worker queries, by the name of their ``-- name:`` block in ``workers.sql``."""


def register(conn: sqlite3.Connection, worker: NewWorker) -> None:
    """Insert or renew ``worker``'s row, seen now."""
    conn.execute(
        WORKER_SQL["register_worker"],
        {
            "id": worker.id,
            "host": worker.host,
            "pid": worker.pid,
            "version": worker.version,
            "workflow_names": json.dumps(list(worker.workflow_names)),
            "task_names": json.dumps(list(worker.task_names)),
            "expiry": worker.expiry,
            "now": now(),
        },
    )


def refresh(conn: sqlite3.Connection, worker_id: str) -> bool:
    """Mark the worker seen now and delete dead rows; False when its row is gone."""
    at = now()
    conn.execute(WORKER_SQL["drop_dead_workers"], {"now": at})
    return (
        conn.execute(WORKER_SQL["refresh_worker"], {"id": worker_id, "now": at}).fetchone()
        is not None
    )


def unregister(conn: sqlite3.Connection, worker_id: str) -> None:
    """Delete the worker's row (none is fine)."""
    conn.execute(WORKER_SQL["unregister_worker"], {"id": worker_id})


def list_live(conn: sqlite3.Connection) -> list[WorkerInfo]:
    """The live rows, oldest first (dead ones are left out; refreshes delete them)."""
    rows = conn.execute(WORKER_SQL["list_workers"], {"now": now()}).fetchall()
    return [
        WorkerInfo(
            id=str(row["id"]),
            host=str(row["host"]),
            pid=int(row["pid"]),
            started_at=instant(row["started_at"]),
            last_seen_at=instant(row["last_seen_at"]),
            workflow_names=tuple(json.loads(row["workflow_names"])),
            task_names=tuple(json.loads(row["task_names"])),
            version=str(row["version"]),
        )
        for row in rows
    ]
