"""Live workers on PostgreSQL (a part of :class:`PostgresDriver`; migration ``workers``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row

from cereal.drivers._sqlfiles import load_queries
from cereal.drivers.postgres._base import PostgresBase
from cereal.drivers.postgres._db import Conn, Row
from cereal.models import NewWorker, WorkerInfo

WORKER_SQL = load_queries("cereal.drivers.postgres", "workers.sql")
"""The worker queries, by the name of their ``-- name:`` block in ``workers.sql``."""


async def _rows(conn: Conn, name: str, params: dict[str, Any]) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(WORKER_SQL[name], params)
        return await cur.fetchall() if cur.description is not None else []


class PostgresWorkers(PostgresBase):
    """One row per started Manager, judged by the database's clock."""

    async def register_worker(self, worker: NewWorker) -> None:
        """Store ``worker``'s row as seen now (replacing a row with its id)."""
        params = {
            "id": worker.id,
            "host": worker.host,
            "pid": worker.pid,
            "version": worker.version,
            "workflow_names": list(worker.workflow_names),
            "task_names": list(worker.task_names),
            "expiry": worker.expiry,
        }
        async with self._connection("registering a worker") as conn:
            await _rows(conn, "register_worker", params)

    async def refresh_worker(self, worker_id: str) -> bool:
        """Mark the worker seen now and drop dead rows; False when its row is gone."""
        async with self._connection("refreshing a worker") as conn:
            await _rows(conn, "drop_dead_workers", {})
            return bool(await _rows(conn, "refresh_worker", {"id": worker_id}))

    async def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker's row; a missing row is fine."""
        async with self._connection("removing a worker") as conn:
            await _rows(conn, "unregister_worker", {"id": worker_id})

    async def list_workers(self) -> list[WorkerInfo]:
        """The live workers, oldest first (dead rows are left out; refreshes delete them)."""
        async with self._connection("listing workers") as conn:
            rows = await _rows(conn, "list_workers", {})
        return [
            WorkerInfo(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                started_at=_instant(row["started_at"]),
                last_seen_at=_instant(row["last_seen_at"]),
                workflow_names=tuple(row["workflow_names"]),
                task_names=tuple(row["task_names"]),
                version=row["version"],
            )
            for row in rows
        ]


def _instant(value: datetime) -> datetime:
    """A stored (NOT NULL) instant as an aware UTC datetime."""
    return value.astimezone(UTC)
