"""PostgreSQL: requeueing a dead task while other transactions hold its rows.

Each race is forced with a real concurrent transaction on another connection,
held open until the requeues are seen waiting for its lock in
``pg_stat_activity`` (polled with a deadline, never slept on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg

from cereal import RequeueOutcome
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._db import QUERIES
from cereal.models import FailureDetails, NewTask

WF = "wf"


async def _connect(dsn: str, *, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit)


async def _one(conn: psycopg.AsyncConnection[Any], query: str, *args: object) -> Any:
    cur = await conn.execute(query, args)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def _row(conn: psycopg.AsyncConnection[Any], query: str, *args: object) -> Any:
    cur = await conn.execute(query, args)
    row = await cur.fetchone()
    assert row is not None
    return row


async def _wait_until_blocked(
    watcher: psycopg.AsyncConnection[Any], blocker_pid: int, waiting: Sequence[asyncio.Future[Any]]
) -> None:
    """Poll until as many backends as ``waiting`` calls wait for a lock, behind ``blocker_pid``.

    A second waiter for a row lock may wait behind the first waiter rather than
    the holder, so every backend of this database waiting for any lock counts,
    once the holder blocks at least one.
    """
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        behind_holder, blocked = await _row(
            watcher,
            "SELECT count(*) FILTER (WHERE %s = ANY(pg_blocking_pids(pid))),"
            " count(*) FILTER (WHERE cardinality(pg_blocking_pids(pid)) > 0)"
            " FROM pg_stat_activity WHERE datname = current_database()",
            blocker_pid,
        )
        if behind_holder > 0 and blocked >= len(waiting):
            return
        for call in waiting:  # each must still be running: it is supposed to be blocked
            assert not call.done(), call.result()
        assert asyncio.get_running_loop().time() < deadline, "never blocked"
        await asyncio.sleep(0.005)


async def _dead_task(driver: PostgresDriver, instance_name: str) -> str:
    """A live run of ``WF`` whose one task has failed for good; that task's id."""
    await driver.enqueue_workflow(WF, instance_name, None)
    _, completer = await driver.dequeue_workflow([WF])
    async with completer:
        await completer.continue_(None, [NewTask("t", b'{"n": 1}')])
    [(task, lease)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    await lease.fail_with_details(FailureDetails("boom", "RuntimeError", "Traceback..."))
    return task.metadata.task_id


async def test_racing_requeues_of_one_dead_task_queue_it_once(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        task_id = await _dead_task(driver, "one")
        watcher = await _connect(postgres_dsn, autocommit=True)
        holder = await _connect(postgres_dsn)
        try:
            # another transaction holds the dead row, so both requeues queue behind it
            await holder.execute(
                "SELECT 1 FROM cereal_dead_tasks WHERE task_id = %s FOR UPDATE", (int(task_id),)
            )
            calls = [asyncio.ensure_future(driver.requeue_dead_tasks([task_id])) for _ in range(2)]
            await _wait_until_blocked(watcher, await _one(holder, "SELECT pg_backend_pid()"), calls)
            await holder.commit()
            outcomes = sorted(str(found[task_id]) for found in await asyncio.gather(*calls))

            assert outcomes == [RequeueOutcome.NOT_FOUND, RequeueOutcome.REQUEUED]
            assert (
                await _one(watcher, "SELECT count(*) FROM cereal_tasks WHERE task_name = 't'") == 1
            )
            assert await _one(watcher, "SELECT count(*) FROM cereal_dead_tasks") == 0
            assert await _one(watcher, "SELECT enqueued_tasks FROM cereal_workflow_instances") == 2
        finally:
            await holder.close()
            await watcher.close()


async def test_a_requeue_waiting_on_a_kill_finds_the_run_finished(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        task_id = await _dead_task(driver, "one")
        watcher = await _connect(postgres_dsn, autocommit=True)
        killer = await _connect(postgres_dsn)
        try:
            # the kill's statement, its transaction held open with the instance row
            await killer.execute(
                QUERIES["kill_instance"],
                {"workflow_name": WF, "instance_name": "one", "error": "killed"},
            )
            requeue = asyncio.ensure_future(driver.requeue_dead_tasks([task_id]))
            await _wait_until_blocked(
                watcher, await _one(killer, "SELECT pg_backend_pid()"), [requeue]
            )
            await killer.commit()

            assert await requeue == {task_id: RequeueOutcome.RUN_FINISHED}
            # no task was queued for the run that is gone; the dead letter stays listed
            assert await _one(watcher, "SELECT count(*) FROM cereal_tasks") == 0
            [dead] = await driver.list_dead_tasks()
            assert (dead.task_id, dead.run_live) == (task_id, False)
        finally:
            await killer.close()
            await watcher.close()


async def test_a_success_writes_no_dead_letter_and_a_failure_one_in_its_statement(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_workflow(WF, "one", None)
        _, completer = await driver.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t", None), NewTask("t", None)])
        claimed = await driver.dequeue_tasks("t", 2, task_expiry=3600)
        await claimed[0][1].succeed(b"1")
        watcher = await _connect(postgres_dsn, autocommit=True)
        try:
            assert await _one(watcher, "SELECT count(*) FROM cereal_dead_tasks") == 0
            await claimed[1][1].fail("no")
            assert await _one(watcher, "SELECT count(*) FROM cereal_dead_tasks") == 1
            # the dead letter and the result it copies were written together
            assert (
                await _one(
                    watcher,
                    "SELECT count(*) FROM cereal_dead_tasks AS d JOIN cereal_task_results AS r"
                    " ON r.task_id = d.task_id AND r.status = d.status",
                )
                == 1
            )
        finally:
            await watcher.close()


async def test_racing_requeues_of_one_failed_run_start_it_once(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_workflow(WF, "one", b'{"n": 1}')
        _, completer = await driver.dequeue_workflow([WF])
        async with completer:
            await completer.fail("boom")
        [run] = await driver.list_failed_runs()
        watcher = await _connect(postgres_dsn, autocommit=True)
        holder = await _connect(postgres_dsn)
        try:
            await holder.execute(
                "SELECT 1 FROM cereal_workflow_results WHERE id = %s FOR UPDATE",
                (int(run.run_id),),
            )
            calls = [
                asyncio.ensure_future(driver.requeue_failed_runs([run.run_id])) for _ in range(2)
            ]
            await _wait_until_blocked(watcher, await _one(holder, "SELECT pg_backend_pid()"), calls)
            await holder.commit()
            outcomes = sorted(str(found[run.run_id]) for found in await asyncio.gather(*calls))

            assert outcomes == [RequeueOutcome.NOT_FOUND, RequeueOutcome.REQUEUED]
            assert await _one(watcher, "SELECT count(*) FROM cereal_workflow_instances") == 1
            assert await driver.list_failed_runs() == []
        finally:
            await holder.close()
            await watcher.close()
