"""Read-only inspection of the PostgreSQL store (a part of :class:`PostgresDriver`).

The dashboard's reads: one live instance's tasks, one run's event history (through
the unique name index and the history's names index) and the task queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cereal.checks import validation
from cereal.drivers._inspect_pages import Page, check_page, is_paged, task_cursor
from cereal.drivers._retention_record import rule_from_row
from cereal.drivers._throughput import check_throughput, window
from cereal.drivers.postgres._base import PostgresBase
from cereal.drivers.postgres._db import Conn, Row, bytes_or_none, fetch_all, instant, utc
from cereal.models import (
    InstanceEvent,
    InstanceTask,
    RetentionRule,
    StartKey,
    TaskKey,
    TaskQueueStats,
    TaskStatus,
    ThroughputBucket,
    WorkflowEventType,
)


class PostgresInspection(PostgresBase):
    """Instance tasks, event history and queue statistics."""

    async def list_instance_tasks(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[InstanceTask]:
        """See :meth:`Driver.list_instance_tasks`."""
        cursor = task_cursor(before)
        check_page(limit, cursor)
        params: dict[str, object] = {"workflow_name": workflow_name, "instance_name": instance_name}
        async with self._connection("list_instance_tasks") as conn:
            if is_paged(limit, before):
                params.update(Page(limit, cursor).params())
                rows = await fetch_all(conn, "instance_tasks_page", params)
            else:
                rows = await fetch_all(conn, "instance_tasks", params)
        return [_task_from_row(row) for row in rows]

    async def list_tasks(
        self, task_name: str, *, limit: int | None = None, before: str | None = None
    ) -> list[InstanceTask]:
        """See :meth:`Driver.list_tasks`."""
        cursor = task_cursor(before)
        check_page(limit, cursor)
        params: dict[str, object] = {"task_name": task_name}
        async with self._connection("list_tasks") as conn:
            if is_paged(limit, before):
                params.update(Page(limit, cursor).params())
                rows = await fetch_all(conn, "tasks_by_name_page", params)
            else:
                rows = await fetch_all(conn, "tasks_by_name", params)
        return [_task_from_row(row) for row in rows]

    async def list_instance_events(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: int | None = None,
    ) -> list[InstanceEvent]:
        """See :meth:`Driver.list_instance_events`."""
        check_page(limit, before)
        params: dict[str, object] = {"workflow_name": workflow_name, "instance_name": instance_name}
        async with self._connection("list_instance_events") as conn:
            if is_paged(limit, before):
                params.update(Page(limit, before).params())
                rows = await fetch_all(conn, "instance_event_history_page", params)
            else:
                rows = await fetch_all(conn, "instance_event_history", params)
        return [_event_from_row(row) for row in rows]

    async def task_queue_stats(self) -> list[TaskQueueStats]:
        """One entry per task name with queued or running tasks, ordered by name."""
        async with self._connection("task_queue_stats") as conn:
            rows = await fetch_all(conn, "task_queue_stats", {})
        return [
            TaskQueueStats(
                task_name=row["task_name"],
                queued=int(row["queued"]),
                running=int(row["running"]),
                oldest_queued_at=utc(row["oldest_queued_at"]),
            )
            for row in rows
        ]

    async def run_throughput(
        self, bucket_seconds: int, buckets: int, *, until: float | None = None
    ) -> list[ThroughputBucket]:
        """See :meth:`Driver.run_throughput`."""
        check_throughput(bucket_seconds, buckets, until)
        span = window(bucket_seconds, buckets, until)
        params = {
            "bucket_seconds": bucket_seconds,
            "window_start": datetime.fromtimestamp(span.first, UTC),
            "window_end": datetime.fromtimestamp(span.end, UTC),
        }
        async with self._connection("run_throughput") as conn:
            every = await fetch_all(conn, "run_throughput_all", params)
            failed = await fetch_all(conn, "run_throughput_failed", params)
        return span.answer(_per_slot(every), _per_slot(failed))

    async def list_start_keys(self, workflow_name: str, instance_name: str) -> list[StartKey]:
        """See :meth:`Driver.list_start_keys`."""
        validation.check_pair(workflow_name, instance_name)
        names = {"workflow_name": workflow_name, "instance_name": instance_name}
        async with self._connection("list_start_keys") as conn:
            rows = await fetch_all(conn, "instance_start_keys", names)
        return [StartKey(str(row["idempotency_key"]), instant(row["created_at"])) for row in rows]

    async def applied_retention(self) -> list[RetentionRule]:
        """See :meth:`Driver.applied_retention`."""
        async with self._connection("applied_retention") as conn:
            return await recorded_retention(conn)

    async def list_task_keys(
        self, workflow_name: str, instance_name: str, keys: Sequence[str]
    ) -> list[TaskKey]:
        """See :meth:`Driver.list_task_keys`."""
        validation.check_pair(workflow_name, instance_name)
        names = {"workflow_name": workflow_name, "instance_name": instance_name}
        async with self._connection("list_task_keys") as conn:
            rows = await fetch_all(conn, "held_task_keys", {**names, "keys": list(keys)})
        return [TaskKey(str(row["idempotency_key"]), str(row["task_id"])) for row in rows]


async def recorded_retention(conn: Conn) -> list[RetentionRule]:
    """The history retention the sweeps last applied, as rules: the store-wide one first."""
    return [
        rule_from_row(row, instant(row["applied_at"]))
        for row in await fetch_all(conn, "retention_rules", {})
    ]


def _per_slot(rows: list[Row]) -> dict[int, int]:
    return {int(row["slot"]): int(row["runs"]) for row in rows}


def _task_from_row(row: Row) -> InstanceTask:
    return InstanceTask(
        task_id=str(row["id"]),
        task_name=row["task_name"],
        state=row["state"],
        parameters=bytes_or_none(row["parameters"]),
        enqueued_at=instant(row["enqueued_at"]),
        start_after=instant(row["start_after"]),
        attempt=int(row["attempt"]),
        workflow_name=row["workflow_name"],
        instance_name=row["instance_name"],
        concurrency_key=row["concurrency_key"],
        concurrency_limit=row["concurrency_limit"],
        rate_limit_starts=row["rate_limit_starts"],
        rate_limit_seconds=row["rate_limit_seconds"],
        priority=int(row["priority"]),
        idempotency_key=row["idempotency_key"],
    )


def _event_from_row(row: Row) -> InstanceEvent:
    status = row["status"]
    return InstanceEvent(
        seq=int(row["id"]),
        type=WorkflowEventType(row["event_type"]),
        enqueued_at=instant(row["enqueued_at"]),
        task_name=row["task_name"],
        task_status=None if status is None else TaskStatus(status),
        error_text=row["error_text"] or "",
        pending=bool(row["pending"]),
        task_enqueued_at=utc(row["task_enqueued_at"]),
        task_attempts=None if row["task_attempts"] is None else int(row["task_attempts"]),
    )
