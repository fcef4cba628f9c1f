"""Shared plumbing of the PostgreSQL driver: queries, error translation, rows.

Every call into psycopg runs inside :func:`translate`, so callers only ever
see :mod:`cereal.errors`: a unique violation the caller did not expect and
every connection or server failure become :class:`~cereal.errors.DriverError`
with the psycopg exception chained.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cereal import errors
from cereal.drivers._sqlfiles import load_queries
from cereal.models import Schedule, WorkflowInstanceData, WorkflowInstanceStatus, check_overlap

QUERIES = load_queries("cereal.drivers.postgres")
"""The named runtime queries of ``queries.sql``."""

PREPARE_HINT = (
    " (behind a transaction-pooling proxy such as PgBouncer before 1.21, add"
    " prepare_threshold=none to the URL)"
)
"""Appended to errors that show server-side prepared statements crossing sessions."""

Conn = psycopg.AsyncConnection[Any]
Row = dict[str, Any]


@contextlib.contextmanager
def translate(what: str) -> Iterator[None]:
    """Turn psycopg and socket failures inside the block into DriverError."""
    try:
        yield
    except errors.CerealError:
        raise
    except (
        psycopg.errors.DuplicatePreparedStatement,
        psycopg.errors.InvalidSqlStatementName,
    ) as exc:
        # the prepared statements of one session met another: a transaction pooler
        raise errors.DriverError(f"PostgreSQL: {what} failed: {exc}{PREPARE_HINT}") from exc
    except (psycopg.Error, OSError) as exc:
        raise errors.DriverError(f"PostgreSQL: {what} failed: {exc}") from exc


async def fetch_one(conn: Conn, name: str, params: Mapping[str, Any]) -> Row | None:
    """Run the named query and return its first row, if any."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES[name], params)
        return await cur.fetchone()


async def fetch_all(conn: Conn, name: str, params: Mapping[str, Any]) -> list[Row]:
    """Run the named query and return all its rows."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES[name], params)
        return await cur.fetchall()


async def execute(conn: Conn, name: str, params: Mapping[str, Any]) -> int:
    """Run the named query for its effect; returns the affected row count."""
    async with conn.cursor() as cur:
        await cur.execute(QUERIES[name], params)
        return cur.rowcount


def looks_alive(conn: Conn) -> bool:
    """Cheap local check of an idle pooled connection (no round trip).

    An idle connection has nothing to read; pending input means the server
    sent an error (e.g. it terminated the backend) or closed the socket.
    """
    if conn.closed or conn.broken:
        return False
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not readable


def utc(value: datetime | None) -> datetime | None:
    """An aware datetime from the database, normalised to UTC."""
    return None if value is None else value.astimezone(UTC)


def instant(value: datetime | None) -> datetime:
    """A NOT NULL timestamp column as an aware UTC datetime."""
    found = utc(value)
    if found is None:
        raise TypeError("a NOT NULL timestamp column read as NULL")
    return found


def bytes_or_none(value: Any) -> bytes | None:
    """Stored bytes as ``bytes`` (psycopg may hand back memoryview)."""
    return None if value is None else bytes(value)


def instance_from_row(row: Row) -> WorkflowInstanceData:
    """A live or finished instance from a row of the instance queries."""
    return WorkflowInstanceData(
        workflow_name=row["workflow_name"],
        instance_name=row["instance_name"],
        status=WorkflowInstanceStatus(row["status"]),
        parameters=bytes_or_none(row["parameters"]),
        payload=bytes_or_none(row.get("payload")),
        result=bytes_or_none(row.get("result")),
        err=row.get("error"),
        started_at=utc(row.get("started_at")),
        ended_at=utc(row.get("ended_at")),
        error_type=row.get("error_type"),
        error_traceback=row.get("error_traceback"),
        traceparent=row.get("traceparent"),
        concurrency_key=row.get("concurrency_key"),
        concurrency_limit=row.get("concurrency_limit"),
        waiting_for_key=bool(row.get("waiting_for_key")),
    )


def schedule_from_row(row: Row) -> Schedule:
    """A schedule from a row of the schedule queries."""
    next_due_at = utc(row["next_due_at"])
    assert next_due_at is not None
    return Schedule(
        id=row["id"],
        enabled=row["enabled"],
        workflow_name=row["workflow_name"],
        instance_name=row["instance_name"],
        parameters=bytes_or_none(row["parameters"]),
        recurrence=row["recurrence"],
        next_due_at=next_due_at,
        last_enqueued_at=utc(row["last_enqueued_at"]),
        last_start=utc(row["last_start"]),
        last_end=utc(row["last_end"]),
        overlap=check_overlap(row["overlap"]),
        catch_up_window=float(row["catch_up_window"]),
        run_pending=bool(row["run_pending"]),
    )
