"""PostgreSQL: kill racing an in-flight decision or task completion.

Each race is forced with a real concurrent transaction on a second
connection, held open until the other side is seen waiting for a lock in
``pg_stat_activity`` (polled with a deadline, never slept on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import psycopg
import pytest

from cereal import errors
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._db import QUERIES
from cereal.drivers.postgres._migrate import _CREATE_TABLE, migrations
from cereal.models import NewTask

WF = "wf"
TASKS = 200


async def _connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn)


async def _backend_pid(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _wait_until_blocked_by(
    watcher: psycopg.AsyncConnection[Any], blocker_pid: int, pending: Awaitable[Any]
) -> None:
    """Poll until some backend waits for a lock ``blocker_pid`` holds."""
    pending_task = asyncio.ensure_future(pending)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        cur = await watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (blocker_pid,),
        )
        row = await cur.fetchone()
        if row is not None and row[0] > 0:
            return
        # the other side must still be running: it is supposed to be blocked
        assert not pending_task.done(), pending_task.result()
        assert asyncio.get_running_loop().time() < deadline, "never blocked"
        await asyncio.sleep(0.005)


async def _orphans(watcher: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in ("cereal_tasks", "cereal_workflow_events", "cereal_task_results"):
        cur = await watcher.execute(
            psycopg.sql.SQL(
                "SELECT count(*) FROM {} AS c WHERE NOT EXISTS "
                "(SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = c.instance_id)"
            ).format(psycopg.sql.Identifier(table))
        )
        row = await cur.fetchone()
        assert row is not None
        counts[table] = int(row[0])
    return counts


async def _start_event(watcher: psycopg.AsyncConnection[Any], name: str) -> tuple[int, int]:
    cur = await watcher.execute(
        "SELECT e.id, e.instance_id FROM cereal_workflow_events AS e"
        " JOIN cereal_workflow_instances AS i ON i.id = e.instance_id"
        " WHERE i.instance_name = %s",
        (name,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_kill_during_a_continue_commit_leaves_no_tasks_behind(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        watcher = await _connect(postgres_dsn)
        await watcher.set_autocommit(True)
        decider = await _connect(postgres_dsn)
        try:
            await driver.enqueue_workflow(WF, "big", None)
            _, claimed_big = await driver.dequeue_workflow([WF])
            # the decision's statement itself, its transaction held open
            await decider.execute(
                QUERIES["apply_decisions"],
                {
                    "instance_ids": [claimed_big._instance_id],
                    "tokens": [claimed_big._token],
                    "finishes": [False],
                    "payloads": [None],
                    "completed": [0],
                    "results": [None],
                    "errors": [None],
                    "event_ids": claimed_big._event_ids,
                    "result_ids": [],
                    "task_owners": [1] * TASKS,
                    "task_names": ["t"] * TASKS,
                    "task_parameters": [None] * TASKS,
                    "task_start_after": [None] * TASKS,
                    "task_retry_policies": [None] * TASKS,
                    "note": None,
                    "task_traceparents": [None] * TASKS,
                    "task_concurrency_keys": [None] * TASKS,
                    "task_concurrency_limits": [None] * TASKS,
                    "task_rate_limit_starts": [None] * TASKS,
                    "task_rate_limit_seconds": [None] * TASKS,
                    "task_priorities": [0] * TASKS,
                    "task_idempotency_keys": None,
                    "error_types": [None],
                    "error_tracebacks": [None],
                },
            )
            kill = asyncio.ensure_future(driver.kill_workflow(WF, "big", "killed"))
            await _wait_until_blocked_by(watcher, await _backend_pid(decider), kill)
            await decider.commit()
            await kill

            assert await _orphans(watcher) == {
                "cereal_tasks": 0,
                "cereal_workflow_events": 0,
                "cereal_task_results": 0,
            }
            # nothing of the dead instance can be claimed and completed
            claimed = await driver.dequeue_tasks("t", 1)
            for _, task in claimed:
                with pytest.raises(errors.TaskLostError):
                    await task.succeed(None)
            assert claimed == []
            # and the workflow name does not stall behind the dead instance
            await driver.enqueue_workflow(WF, "fresh", None)
            event, completer = await driver.dequeue_workflow([WF])
            async with completer:
                assert event.instance.instance_name == "fresh"
                await completer.done(None)
        finally:
            await decider.close()
            await watcher.close()


async def test_a_completion_waiting_on_a_kill_is_refused(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        watcher = await _connect(postgres_dsn)
        await watcher.set_autocommit(True)
        killer = await _connect(postgres_dsn)
        try:
            await driver.enqueue_workflow(WF, "one", None)
            _, completer = await driver.dequeue_workflow([WF])
            async with completer:
                await completer.continue_(None, [NewTask("t", None)])
            [(_, task)] = await driver.dequeue_tasks("t", 1)
            # the kill's first step, its transaction held open
            await killer.execute(
                QUERIES["kill_instance"],
                {"workflow_name": WF, "instance_name": "one", "error": "killed"},
            )
            completion = asyncio.ensure_future(task.succeed(b"1"))
            await _wait_until_blocked_by(watcher, await _backend_pid(killer), completion)
            await killer.commit()
            with pytest.raises(errors.TaskLostError):
                await completion
            assert await _orphans(watcher) == {
                "cereal_tasks": 0,
                "cereal_workflow_events": 0,
                "cereal_task_results": 0,
            }
        finally:
            await killer.close()
            await watcher.close()


async def test_continue_waits_for_a_kill_instead_of_deadlocking(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        watcher = await _connect(postgres_dsn)
        await watcher.set_autocommit(True)
        killer = await _connect(postgres_dsn)
        try:
            await driver.enqueue_workflow(WF, "one", None)
            _, instance_id = await _start_event(watcher, "one")
            _, completer = await driver.dequeue_workflow([WF])
            async with completer:
                # the kill holds the instance row (its first lock) ...
                await killer.execute(
                    QUERIES["kill_instance"],
                    {"workflow_name": WF, "instance_name": "one", "error": "killed"},
                )
                decision = asyncio.ensure_future(completer.continue_(None, [NewTask("t", None)]))
                await _wait_until_blocked_by(watcher, await _backend_pid(killer), decision)
                # ... and then removes the instance's events, which continue_
                # must not have locked while it waits for the instance
                await killer.execute(
                    "DELETE FROM cereal_workflow_events WHERE instance_id = %s", (instance_id,)
                )
                await killer.commit()
                with pytest.raises(errors.WorkflowClaimLostError):
                    await decision
            assert await _orphans(watcher) == {
                "cereal_tasks": 0,
                "cereal_workflow_events": 0,
                "cereal_task_results": 0,
            }
        finally:
            await killer.close()
            await watcher.close()


async def test_kill_and_continue_run_together_many_times(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        watcher = await _connect(postgres_dsn)
        await watcher.set_autocommit(True)
        try:
            for round_ in range(30):
                name = f"i{round_}"
                await driver.enqueue_workflow(WF, name, None)
                _, completer = await driver.dequeue_workflow([WF])
                async with completer:
                    tasks = [NewTask("t", None)] * TASKS
                    decided, killed = await asyncio.gather(
                        completer.continue_(None, tasks),
                        driver.kill_workflow(WF, name, "killed"),
                        return_exceptions=True,
                    )
                assert killed is None, killed
                assert decided is None or isinstance(decided, errors.WorkflowClaimLostError)
                assert await _orphans(watcher) == {
                    "cereal_tasks": 0,
                    "cereal_workflow_events": 0,
                    "cereal_task_results": 0,
                }
        finally:
            await watcher.close()


async def test_the_foreign_key_migration_removes_existing_orphans(postgres_empty_dsn: str) -> None:
    first = migrations()[0]
    with psycopg.connect(postgres_empty_dsn) as conn:  # a database still at version 1
        conn.execute(first.sql)
        conn.execute(_CREATE_TABLE)
        conn.execute(
            "INSERT INTO cereal_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (first.version, first.name, first.checksum),
        )
        # rows left behind by the old kill, for an instance id that does not exist
        conn.execute(
            "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name)"
            " VALUES (999, 'wf', 'gone', 't')"
        )
        cur = conn.execute(
            "INSERT INTO cereal_task_results (instance_id, task_id, task_name, status,"
            " enqueued_at) VALUES (999, 1, 't', 'success', now()) RETURNING id"
        )
        row = cur.fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type,"
            " task_result_id) VALUES (999, 'wf', 'task_complete', %s)",
            (row[0],),
        )

    async with PostgresDriver(postgres_empty_dsn, notify=False) as driver:  # migrates
        watcher = await _connect(postgres_empty_dsn)
        try:
            assert await _orphans(watcher) == {
                "cereal_tasks": 0,
                "cereal_workflow_events": 0,
                "cereal_task_results": 0,
            }
        finally:
            await watcher.close()
        # the workflow name no longer stalls behind the dead instance's event
        await driver.enqueue_workflow(WF, "fresh", None)
        event, completer = await driver.dequeue_workflow([WF])
        async with completer:
            assert event.instance.instance_name == "fresh"
            await completer.done(None)


async def test_kill_and_task_completions_run_together_many_times(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False, max_size=12) as driver:
        watcher = await _connect(postgres_dsn)
        await watcher.set_autocommit(True)
        try:
            for round_ in range(20):
                name = f"i{round_}"
                await driver.enqueue_workflow(WF, name, None)
                _, completer = await driver.dequeue_workflow([WF])
                async with completer:
                    await completer.continue_(None, [NewTask("t", None)] * 10)
                claimed = await driver.dequeue_tasks("t", 10)
                outcomes = await asyncio.gather(
                    driver.kill_workflow(WF, name, "killed"),
                    *(task.succeed(b"1") for _, task in claimed),
                    return_exceptions=True,
                )
                assert outcomes[0] is None, outcomes[0]
                for outcome in outcomes[1:]:
                    assert outcome is None or isinstance(outcome, errors.TaskLostError), outcome
                assert await _orphans(watcher) == {
                    "cereal_tasks": 0,
                    "cereal_workflow_events": 0,
                    "cereal_task_results": 0,
                }
        finally:
            await watcher.close()
