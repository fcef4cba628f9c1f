"""Dead letters on SQLite: tasks that ended failed or lost (listed, requeued); failed runs.

Rows are written by the ``cereal_task_results_dead`` trigger (migration
0011) in the transaction that stores a task's non-``success`` result; each
function here runs on the driver's connection thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from cereal.drivers._inspect_pages import Page
from cereal.drivers.sqlite import _workflows
from cereal.drivers.sqlite._sql import Q, blob, instant, now
from cereal.models import DeadTask, FailedRun, RequeueOutcome, TaskStatus


def dead_tasks(
    conn: sqlite3.Connection, task_name: str | None, workflow_name: str | None, page: Page
) -> list[DeadTask]:
    """One page of dead tasks, newest first, with the given filters."""
    names = {"task_name": task_name, "workflow_name": workflow_name, **page.params()}
    return [
        DeadTask(
            task_id=str(row["task_id"]),
            task_name=str(row["task_name"]),
            workflow_name=str(row["workflow_name"]),
            instance_name=str(row["instance_name"]),
            status=TaskStatus(row["status"]),
            parameters=blob(row["parameters"]),
            error_text=str(row["error_text"]),
            error_type=row["error_type"],
            error_traceback=row["error_traceback"],
            attempts=int(row["attempts"]),
            enqueued_at=instant(row["enqueued_at"]),
            died_at=instant(row["died_at"]),
            run_live=bool(row["run_live"]),
        )
        for row in conn.execute(Q["dead_tasks_page"], names)
    ]


def failed_runs(conn: sqlite3.Connection, workflow_name: str | None, page: Page) -> list[FailedRun]:
    """One page of failed runs, newest first, optionally of one workflow name."""
    names = {"workflow_name": workflow_name, **page.params()}
    return [
        FailedRun(
            run_id=str(row["id"]),
            workflow_name=str(row["workflow_name"]),
            instance_name=str(row["instance_name"]),
            parameters=blob(row["parameters"]),
            error_text=str(row["error"]),
            error_type=row["error_type"],
            error_traceback=row["error_traceback"],
            started_at=instant(row["started_at"]),
            ended_at=instant(row["ended_at"]),
        )
        for row in conn.execute(Q["failed_runs_page"], names)
    ]


def requeue(
    conn: sqlite3.Connection, task_ids: Sequence[str]
) -> tuple[dict[str, RequeueOutcome], set[str]]:
    """Queue each dead task again in its live run (one write transaction).

    Returns:
        Each id's outcome, and the task names that got a new queued task.
    """
    outcomes: dict[str, RequeueOutcome] = {}
    requeued: set[str] = set()
    at = now()
    for task_id in task_ids:
        row = conn.execute(Q["dead_task_to_requeue"], {"task_id": int(task_id)}).fetchone()
        if row is None:
            outcomes[task_id] = RequeueOutcome.NOT_FOUND
            continue
        if row["live_id"] is None:
            outcomes[task_id] = RequeueOutcome.RUN_FINISHED
            continue
        key = row["idempotency_key"]
        inserted = conn.execute(
            Q["insert_task"],
            {
                "instance_id": row["live_id"],
                "workflow_name": row["workflow_name"],
                "instance_name": row["instance_name"],
                "task_name": row["task_name"],
                "parameters": row["parameters"],
                "now": at,
                "start_after": at,
                "traceparent": None,
                "retry_policy": None,
                # under its concurrency key again, as before it died
                "concurrency_key": row["concurrency_key"],
                "concurrency_limit": requeued_limit(row),
                "rate_limit_starts": row["rate_limit_starts"],
                "rate_limit_seconds": row["rate_limit_seconds"],
                "priority": row["priority"],
                "idempotency_key": key,
            },
        )
        if key is not None:  # the new task takes over the dead one's key
            conn.execute(
                Q["rekey_task"],
                {
                    "task_id": inserted.lastrowid,
                    "instance_id": row["live_id"],
                    "idempotency_key": key,
                },
            )
        conn.execute(Q["count_requeued_task"], {"instance_id": row["live_id"]})
        conn.execute(Q["delete_dead_task"], {"task_id": row["task_id"]})
        outcomes[task_id] = RequeueOutcome.REQUEUED
        requeued.add(str(row["task_name"]))
    return outcomes, requeued


def requeue_runs(
    conn: sqlite3.Connection, run_ids: Sequence[str]
) -> tuple[dict[str, RequeueOutcome], set[str]]:
    """Start each failed run again under its names (one write transaction).

    Returns:
        Each id's outcome, and the workflow names that got a new run.
    """
    outcomes: dict[str, RequeueOutcome] = {}
    started: set[str] = set()
    for run_id in run_ids:
        row = conn.execute(Q["failed_run_to_requeue"], {"run_id": int(run_id)}).fetchone()
        if row is None:
            outcomes[run_id] = RequeueOutcome.NOT_FOUND
            continue
        workflow_name = str(row["workflow_name"])
        names = (workflow_name, str(row["instance_name"]), blob(row["parameters"]))
        key, limit = row["concurrency_key"], row["concurrency_limit"]
        if key is None or limit is None:
            created = _workflows.enqueue(conn, *names)
        else:  # under its workflow concurrency key again
            keyed = _workflows.enqueue_keyed(conn, *names, (str(key), int(limit)))
            created = keyed is not None
            started.update(keyed or [])
        if not created:
            outcomes[run_id] = RequeueOutcome.RUN_LIVE
            continue
        conn.execute(Q["mark_run_requeued"], {"run_id": row["id"], "now": now()})
        outcomes[run_id] = RequeueOutcome.REQUEUED
        started.add(workflow_name)
    return outcomes, started


def requeued_limit(dead: sqlite3.Row) -> int | None:
    """The concurrency limit a requeued dead task gets: its own, or 1 if it lost its limits.

    A keyed task finished by a process of an older release was stored without
    its rate limit; it goes back under its key at most one at a time, the
    strictest limit, rather than without one.
    """
    if (
        dead["concurrency_key"] is not None
        and dead["concurrency_limit"] is None
        and dead["rate_limit_starts"] is None
    ):
        return 1
    limit: int | None = dead["concurrency_limit"]
    return limit
