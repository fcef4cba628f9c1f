"""The SQLite driver's named queries and the conversions between rows and models.

Instants are stored as REAL seconds since the epoch (UTC) and come back as
aware UTC datetimes; values are BLOBs, NULL meaning "no bytes".
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime

from cereal.checks import times
from cereal.drivers._sqlfiles import load_queries
from cereal.models import (
    FailureDetails,
    Schedule,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
    check_overlap,
)

Q = load_queries("cereal.drivers.sqlite")
"""Every runtime query, by the name of its ``-- name:`` block in ``queries.sql``."""


def now() -> float:
    """The host clock as epoch seconds: the SQLite driver's clock."""
    return time.time()


def epoch(value: datetime) -> float:
    """An aware datetime as stored (epoch seconds)."""
    return times.to_epoch(times.to_utc(value))


def instant(value: object) -> datetime:
    """A stored instant as an aware UTC datetime."""
    if not isinstance(value, int | float):
        raise TypeError(f"stored instant is {type(value).__name__}, not a number")
    return times.from_epoch(float(value))


def maybe_instant(value: object) -> datetime | None:
    """Like :func:`instant`, passing NULL through."""
    return None if value is None else instant(value)


def blob(value: object) -> bytes | None:
    """A stored value as bytes (NULL stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a TEXT value written by hand into the file
        return value.encode("utf-8")
    raise TypeError(f"stored value is {type(value).__name__}, not bytes")


def text(value: object) -> str | None:
    """A stored TEXT column (NULL stays ``None``)."""
    return None if value is None else str(value)


def instance_from_row(row: sqlite3.Row) -> WorkflowInstanceData:
    """A live or finished instance from a row of ``get_instance``/``list_*``.

    Only ``get_instance`` has the failure detail columns.
    """
    columns = row.keys()  # sqlite3.Row's `in` looks at values, not names
    return WorkflowInstanceData(
        workflow_name=str(row["workflow_name"]),
        instance_name=str(row["instance_name"]),
        status=WorkflowInstanceStatus(row["status"]),
        parameters=blob(row["parameters"]),
        payload=blob(row["payload"]),
        result=blob(row["result"]),
        err=text(row["error"]),
        started_at=maybe_instant(row["started_at"]),
        ended_at=maybe_instant(row["ended_at"]),
        error_type=row["error_type"] if "error_type" in columns else None,
        error_traceback=row["error_traceback"] if "error_traceback" in columns else None,
        concurrency_key=row["concurrency_key"] if "concurrency_key" in columns else None,
        concurrency_limit=row["concurrency_limit"] if "concurrency_limit" in columns else None,
        waiting_for_key=bool(row["waiting_for_key"]) if "waiting_for_key" in columns else False,
    )


def schedule_from_row(row: sqlite3.Row) -> Schedule:
    """A schedule from a row of the schedule queries."""
    return Schedule(
        id=int(row["id"]),
        enabled=bool(row["enabled"]),
        workflow_name=str(row["workflow_name"]),
        instance_name=str(row["instance_name"]),
        parameters=blob(row["parameters"]),
        recurrence=str(row["recurrence"]),
        next_due_at=instant(row["next_due_at"]),
        last_enqueued_at=maybe_instant(row["last_enqueued_at"]),
        last_start=maybe_instant(row["last_start"]),
        last_end=maybe_instant(row["last_end"]),
        overlap=check_overlap(row["overlap"]),
        catch_up_window=float(row["catch_up_window"]),
        run_pending=bool(row["run_pending"]),
    )


def finish_instance(
    conn: sqlite3.Connection,
    instance_id: int,
    result: bytes | None,
    error: str | None,
    at: float,
    failure: FailureDetails | None = None,
) -> list[str]:
    """Write the run to history and delete the live instance with everything attached.

    A run under a workflow concurrency key frees its place: the waiting runs
    of the key that now fit are started (:func:`start_waiting_runs`).

    Returns:
        The workflow names of the runs started from waiting.
    """
    ids = {"instance_id": instance_id}
    recorded = conn.execute(
        Q["record_history"],
        {
            **ids,
            "result": result,
            "error": error,
            "now": at,
            "error_type": None if failure is None else failure.error_type,
            "error_traceback": None if failure is None else failure.error_traceback,
        },
    ).fetchone()
    conn.execute(Q["delete_instance_events"], ids)
    conn.execute(Q["delete_instance_tasks"], ids)
    conn.execute(Q["delete_instance_task_results"], ids)
    conn.execute(Q["delete_instance_task_keys"], ids)
    conn.execute(Q["delete_instance"], ids)
    key = None if recorded is None else recorded["concurrency_key"]
    return [] if key is None else start_waiting_runs(conn, str(key))


def start_waiting_runs(conn: sqlite3.Connection, concurrency_key: str) -> list[str]:
    """Start the oldest waiting runs of ``concurrency_key`` while they fit; their workflow names."""
    started: list[str] = []
    while True:
        row = conn.execute(Q["start_waiting_run"], {"concurrency_key": concurrency_key}).fetchone()
        if row is None:
            return started
        started.append(str(row["workflow_name"]))
