"""Read-only inspection of the SQLite store: the dashboard's reads.

Each function runs on the driver's connection thread, inside one read snapshot.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from cereal.drivers import _retention_record
from cereal.drivers._inspect_pages import Page
from cereal.drivers._throughput import Window
from cereal.drivers.sqlite._sql import Q, blob, instant, maybe_instant
from cereal.models import (
    HistoryRetention,
    InstanceEvent,
    InstanceTask,
    RetentionRule,
    StartKey,
    TaskKey,
    TaskQueueStats,
    TaskStatus,
    ThroughputBucket,
    WorkflowEventType,
    rules_of,
)


def instance_tasks(
    conn: sqlite3.Connection, workflow_name: str, instance_name: str, page: Page | None = None
) -> list[InstanceTask]:
    """The live instance's queued and running tasks, in enqueue order (a page: newest first)."""
    names: dict[str, object] = {"workflow_name": workflow_name, "instance_name": instance_name}
    query = Q["instance_tasks"]
    if page is not None:
        names.update(page.params())
        query = Q["instance_tasks_page"]
    return _tasks(conn.execute(query, names))


def named_tasks(conn: sqlite3.Connection, task_name: str, page: Page | None) -> list[InstanceTask]:
    """Every live instance's queued and running tasks of one name (a page: newest first)."""
    names: dict[str, object] = {"task_name": task_name}
    query = Q["tasks_by_name"]
    if page is not None:
        names.update(page.params())
        query = Q["tasks_by_name_page"]
    return _tasks(conn.execute(query, names))


def _tasks(rows: Iterable[sqlite3.Row]) -> list[InstanceTask]:
    return [
        InstanceTask(
            task_id=str(row["id"]),
            task_name=str(row["task_name"]),
            state=str(row["state"]),
            parameters=blob(row["parameters"]),
            enqueued_at=instant(row["enqueued_at"]),
            start_after=instant(row["start_after"]),
            attempt=int(row["attempt"]),
            workflow_name=str(row["workflow_name"]),
            instance_name=str(row["instance_name"]),
            concurrency_key=row["concurrency_key"],
            concurrency_limit=row["concurrency_limit"],
            rate_limit_starts=row["rate_limit_starts"],
            rate_limit_seconds=row["rate_limit_seconds"],
            priority=int(row["priority"]),
            idempotency_key=row["idempotency_key"],
        )
        for row in rows
    ]


def instance_events(
    conn: sqlite3.Connection, workflow_name: str, instance_name: str, page: Page | None = None
) -> list[InstanceEvent]:
    """The event history of the live instance, else of the newest finished run, oldest first.

    Given a ``page``: that page, newest first.
    """
    names: dict[str, object] = {"workflow_name": workflow_name, "instance_name": instance_name}
    query = Q["instance_event_history"]
    if page is not None:
        names.update(page.params())
        query = Q["instance_event_history_page"]
    found = []
    for row in conn.execute(query, names):
        status = row["status"]
        found.append(
            InstanceEvent(
                seq=int(row["id"]),
                type=WorkflowEventType(row["event_type"]),
                enqueued_at=instant(row["enqueued_at"]),
                task_name=None if row["task_name"] is None else str(row["task_name"]),
                task_status=None if status is None else TaskStatus(status),
                error_text=str(row["error_text"] or ""),
                pending=bool(row["pending"]),
                task_enqueued_at=maybe_instant(row["task_enqueued_at"]),
                task_attempts=None if row["task_attempts"] is None else int(row["task_attempts"]),
            )
        )
    return found


def queue_stats(conn: sqlite3.Connection) -> list[TaskQueueStats]:
    """Per task name: queued and running counts and the oldest queued enqueue time."""
    return [
        TaskQueueStats(
            task_name=str(row["task_name"]),
            queued=int(row["queued"]),
            running=int(row["running"]),
            oldest_queued_at=maybe_instant(row["oldest_queued_at"]),
        )
        for row in conn.execute(Q["task_queue_stats"])
    ]


def throughput(conn: sqlite3.Connection, span: Window) -> list[ThroughputBucket]:
    """Finished and failed runs per bucket of ``span``, each from its end-time index alone."""
    params = {"bucket_seconds": span.seconds, "window_start": span.first, "window_end": span.end}
    every = {
        int(row["slot"]): int(row["runs"]) for row in conn.execute(Q["run_throughput_all"], params)
    }
    failed = {
        int(row["slot"]): int(row["runs"])
        for row in conn.execute(Q["run_throughput_failed"], params)
    }
    return span.answer(every, failed)


def start_keys(conn: sqlite3.Connection, workflow_name: str, instance_name: str) -> list[StartKey]:
    """The kept idempotency keys that started runs of these names, newest first."""
    names = {"workflow_name": workflow_name, "instance_name": instance_name}
    return [
        StartKey(str(row["idempotency_key"]), instant(row["created_at"]))
        for row in conn.execute(Q["instance_start_keys"], names)
    ]


def applied_retention(conn: sqlite3.Connection) -> list[RetentionRule]:
    """The history retention the sweeps last applied, as rules: the store-wide one first."""
    return [
        _retention_record.rule_from_row(row, instant(row["applied_at"]))
        for row in conn.execute(Q["retention_rules"])
    ]


def retention_changed(conn: sqlite3.Connection, retention: HistoryRetention) -> bool:
    """Whether ``retention`` differs from the one recorded as applied (a read)."""
    return _retention_record.retention_changed(applied_retention(conn), retention)


def record_retention(conn: sqlite3.Connection, retention: HistoryRetention, at: float) -> None:
    """Store ``retention`` as the one the sweeps apply, unless it is stored already."""
    if not retention_changed(conn, retention):
        return
    wanted = rules_of(retention, instant(at))
    conn.execute(Q["clear_retention_rules"])
    conn.executemany(
        Q["insert_retention_rule"],
        [
            {
                "workflow_name": rule.workflow_name or "",
                "max_rows": rule.max_rows,
                "margin_rows": rule.margin_rows,
                "max_runs": rule.max_runs,
                "max_age": rule.max_age,
                "applied_at": at,
            }
            for rule in wanted
        ],
    )


def task_keys(
    conn: sqlite3.Connection, workflow_name: str, instance_name: str, keys: Sequence[str]
) -> list[TaskKey]:
    """Of ``keys``, those the live run of these names holds, with their tasks."""
    names = {"workflow_name": workflow_name, "instance_name": instance_name}
    rows = conn.execute(Q["held_task_keys"], {**names, "keys": json.dumps(list(keys))})
    return [TaskKey(str(row["idempotency_key"]), str(row["task_id"])) for row in rows]
