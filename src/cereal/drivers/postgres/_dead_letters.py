"""Dead letters on PostgreSQL (a part of :class:`PostgresDriver`): dead tasks, failed runs.

Rows are written by the ``cereal_task_results_dead`` trigger (migration 0012)
in the statement that stores a task's non-``success`` result.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from cereal.drivers._dead_letter_store import check_dead_task_page, check_failed_run_page
from cereal.drivers._inspect_pages import Page, id_cursor, task_cursor
from cereal.drivers.postgres._base import PostgresBase
from cereal.drivers.postgres._db import bytes_or_none, fetch_all, fetch_one, instant
from cereal.drivers.postgres._workflow_keys import start_waiting_runs
from cereal.models import DeadTask, FailedRun, RequeueOutcome, TaskStatus


class PostgresDeadLetters(PostgresBase):
    """Dead tasks (listed newest first, requeued into their live run) and failed runs."""

    async def list_dead_tasks(
        self,
        *,
        task_name: str | None = None,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[DeadTask]:
        """See :meth:`Driver.list_dead_tasks`."""
        check_dead_task_page(task_name, workflow_name, limit, before)
        params = {
            "task_name": task_name,
            "workflow_name": workflow_name,
            **Page(limit, task_cursor(before)).params(),
        }
        async with self._connection("list_dead_tasks") as conn:
            rows = await fetch_all(conn, "dead_tasks_page", params)
        return [
            DeadTask(
                task_id=str(row["task_id"]),
                task_name=row["task_name"],
                workflow_name=row["workflow_name"],
                instance_name=row["instance_name"],
                status=TaskStatus(row["status"]),
                parameters=bytes_or_none(row["parameters"]),
                error_text=row["error"],
                error_type=row["error_type"],
                error_traceback=row["error_traceback"],
                attempts=int(row["attempts"]),
                enqueued_at=instant(row["enqueued_at"]),
                died_at=instant(row["died_at"]),
                run_live=bool(row["run_live"]),
            )
            for row in rows
        ]

    async def list_failed_runs(
        self,
        *,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[FailedRun]:
        """See :meth:`Driver.list_failed_runs`."""
        check_failed_run_page(workflow_name, limit, before)
        params = {
            "workflow_name": workflow_name,
            **Page(limit, id_cursor(before, "run id")).params(),
        }
        async with self._connection("list_failed_runs") as conn:
            rows = await fetch_all(conn, "failed_runs_page", params)
        return [
            FailedRun(
                run_id=str(row["id"]),
                workflow_name=row["workflow_name"],
                instance_name=row["instance_name"],
                parameters=bytes_or_none(row["parameters"]),
                error_text=row["error"],
                error_type=row["error_type"],
                error_traceback=row["error_traceback"],
                started_at=instant(row["started_at"]),
                ended_at=instant(row["ended_at"]),
            )
            for row in rows
        ]

    async def requeue_failed_runs(self, run_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """See :meth:`Driver.requeue_failed_runs`.

        One transaction per run: its stamp, new run and start event commit
        together, with the NOTIFY for the workflow name; a run whose names
        are live rolls its stamp back.
        """
        outcomes: dict[str, RequeueOutcome] = {}
        started: list[str] = []
        async with self._connection("requeue_failed_runs") as conn:
            for run_id in run_ids:
                outcomes[run_id] = RequeueOutcome.NOT_FOUND
                async with conn.transaction():
                    row = await fetch_one(conn, "requeue_failed_run", {"run_id": int(run_id)})
                    if row is None:
                        continue
                    if not row["started"]:
                        outcomes[run_id] = RequeueOutcome.RUN_LIVE
                        raise psycopg.Rollback()
                    key = row["concurrency_key"]
                    if key is not None:  # back under its key, waiting: started if it fits
                        await start_waiting_runs(conn, [key])
                    note = self._note([("workflow", row["workflow_name"])])
                    if note is not None:
                        await fetch_one(conn, "notify", {"note": note})
                    outcomes[run_id] = RequeueOutcome.REQUEUED
                    started.append(row["workflow_name"])
        for workflow_name in dict.fromkeys(started):
            self._wake("workflow", workflow_name)
        return outcomes

    async def requeue_dead_tasks(self, task_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """See :meth:`Driver.requeue_dead_tasks`.

        One transaction: the requeue statement, then (when a task was queued)
        the NOTIFY that tells other processes' runners, sent by the commit.
        """
        outcomes = dict.fromkeys(task_ids, RequeueOutcome.NOT_FOUND)
        params = {"task_ids": [int(task_id) for task_id in task_ids]}
        async with self._connection("requeue_dead_tasks") as conn, conn.transaction():
            rows = await fetch_all(conn, "requeue_dead_tasks", params)
            names = sorted({row["task_name"] for row in rows if row["requeued"]})
            note = self._note([("task", name) for name in names])
            if note is not None:
                await fetch_one(conn, "notify", {"note": note})
        for row in rows:
            requeued = row["requeued"]
            outcome = RequeueOutcome.REQUEUED if requeued else RequeueOutcome.RUN_FINISHED
            outcomes[str(row["task_id"])] = outcome
        for name in names:
            self._wake("task", name)
        return outcomes
