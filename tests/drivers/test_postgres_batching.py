"""PostgreSQL: group commit, joined heartbeats, and the ready marker under races.

Races are forced with a real concurrent transaction held open on a second
connection until the other side is seen waiting for its lock in
``pg_stat_activity`` (polled with a deadline, never slept on).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from cereal import errors
from cereal.drivers.postgres import PostgresDriver, _group_commit, _heartbeats
from cereal.drivers.postgres._db import QUERIES
from cereal.models import NewTask, TaskStatus
from tests._waiting import wait_until

WF = "wf"


async def _fan_out(driver: PostgresDriver, count: int, instance: str = "fan") -> None:
    await driver.enqueue_workflow(WF, instance, None)
    [(_, completer)] = await driver.claim_workflows([WF])
    await completer.continue_(None, [NewTask("t", str(n).encode()) for n in range(count)])


async def test_concurrent_completions_share_commits_and_resume_after_theirs(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups: list[int] = []
    merged = _group_commit.run_completions_merged

    async def counting(conn: Any, group: Any, note: Any) -> Any:
        groups.append(len(group))
        return await merged(conn, group, note)

    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await _fan_out(driver, 40)
        claimed = await driver.dequeue_tasks("t", 40)
        completions = driver._committers[asyncio.get_running_loop()]["completion"]
        monkeypatch.setattr(completions._flush, "runner", counting)

        async def complete_and_check(task: Any) -> bool:
            await task.succeed(None)
            # resumed only after the commit that holds it: another session sees it
            with psycopg.connect(postgres_dsn) as other:
                row = other.execute(
                    "SELECT count(*) FROM cereal_tasks WHERE id = %s", (int(task._task_id),)
                ).fetchone()
            return row is not None and row[0] == 0

        seen = await asyncio.gather(*(complete_and_check(task) for _, task in claimed))

    assert all(seen)
    assert sum(groups) == 40
    assert len(groups) < 40  # completions arriving together shared transactions
    assert max(groups) > 1


async def test_heartbeats_of_one_process_go_out_in_one_statement(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[int] = []
    fetch_all = _heartbeats.fetch_all

    async def counting(conn: Any, name: str, params: Any) -> Any:
        statements.append(len(params["task_ids"]))
        return await fetch_all(conn, name, params)

    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await _fan_out(driver, 8)
        claimed = await driver.dequeue_tasks("t", 8)
        monkeypatch.setattr(_heartbeats, "fetch_all", counting)
        await asyncio.gather(*(task.heartbeat() for _, task in claimed))

    assert statements == [8]


async def _wait_until_blocked_by(watcher: psycopg.AsyncConnection[Any], pid: int) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        cur = await watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (pid,),
        )
        row = await cur.fetchone()
        if row is not None and row[0] > 0:
            return
        assert asyncio.get_running_loop().time() < deadline, "never blocked"
        await asyncio.sleep(0.005)


async def test_a_completion_racing_a_decision_that_empties_the_queue_stays_claimable(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await _fan_out(driver, 2)
        [(_, first), (_, second)] = await driver.dequeue_tasks("t", 2)
        await first.succeed(None)
        [(events, completer)] = await driver.claim_workflows([WF], max_events=10)
        assert len(events) == 1

        watcher = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
        decider = await psycopg.AsyncConnection.connect(postgres_dsn)
        try:
            # Given the decision that consumes the only event, its transaction held open
            await decider.execute(
                QUERIES["apply_decisions"],
                {
                    "instance_ids": [completer._instance_id],
                    "tokens": [completer._token],
                    "finishes": [False],
                    "payloads": [None],
                    "completed": [1],
                    "results": [None],
                    "errors": [None],
                    "event_ids": completer._event_ids,
                    "result_ids": completer._task_result_ids,
                    "task_owners": [],
                    "task_names": [],
                    "task_parameters": [],
                    "task_start_after": [],
                    "task_retry_policies": [],
                    "note": None,
                    "task_traceparents": [],
                    "task_concurrency_keys": [],
                    "task_concurrency_limits": [],
                    "task_rate_limit_starts": [],
                    "task_rate_limit_seconds": [],
                    "task_priorities": [],
                    "task_idempotency_keys": None,
                    "error_types": [None],
                    "error_tracebacks": [None],
                },
            )
            pid_row = await (await decider.execute("SELECT pg_backend_pid()")).fetchone()
            assert pid_row is not None
            # When the second task completes meanwhile (it waits for the decision)
            completing = asyncio.ensure_future(second.succeed(None))
            await _wait_until_blocked_by(watcher, int(pid_row[0]))
            await decider.commit()
            await completing
        finally:
            await decider.close()
            await watcher.close()

        # Then the new event is not stranded: the instance is claimable with it
        [(events, completer)] = await driver.claim_workflows([WF], max_events=10)
        assert [event.completed_task_count for event in events] == [2]
        await completer.done(None)


async def _results_and_events_of(postgres_dsn: str, task_id: int) -> tuple[int, int]:
    """How many task results, and task_complete events, the store holds for ``task_id``."""
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as other:
        cur = await other.execute(
            "SELECT count(DISTINCT r.id), count(e.id) FROM cereal_task_results AS r"
            " LEFT JOIN cereal_workflow_events AS e ON e.task_result_id = r.id"
            " WHERE r.task_id = %s",
            (task_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.parametrize("second", ["succeed", "abandon", "fail"])
async def test_two_reports_on_one_lease_merged_behind_a_busy_group_one_wins(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    groups: list[int] = []
    merged = _group_commit.run_completions_merged

    async def counting(conn: Any, group: Any, note: Any) -> Any:
        groups.append(len(group))
        return await merged(conn, group, note)

    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await _fan_out(driver, 2)
        [(busy_task, busy), (raced_task, raced)] = await driver.dequeue_tasks("t", 2)
        completions = driver._committers[asyncio.get_running_loop()]["completion"]
        monkeypatch.setattr(completions._flush, "runner", counting)
        reports = {
            "succeed": lambda: raced.succeed(b'"second"'),
            "abandon": lambda: raced.abandon(),
            "fail": lambda: raced.fail("second"),
        }

        watcher = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
        locker = await psycopg.AsyncConnection.connect(postgres_dsn)
        try:
            # Given a group held busy: the instance row its statement locks first is taken
            await locker.execute(
                "SELECT id FROM cereal_workflow_instances WHERE id = %s FOR UPDATE",
                (busy._instance_id,),
            )
            pid_row = await (await locker.execute("SELECT pg_backend_pid()")).fetchone()
            assert pid_row is not None
            first_group = asyncio.ensure_future(busy.succeed(None))
            await _wait_until_blocked_by(watcher, int(pid_row[0]))
            # When two reports on one lease queue behind it, into the same next group
            racing = asyncio.gather(
                raced.succeed(b'"first"'), reports[second](), return_exceptions=True
            )
            await wait_until(lambda: completions.pending == 2, what="both reports queued")
            await locker.rollback()
            await first_group
            outcomes = await racing
        finally:
            await locker.close()
            await watcher.close()

        # Then they were merged into one statement, and exactly one of them won
        assert groups == [1, 2]
        assert outcomes[0] is None, outcomes
        assert isinstance(outcomes[1], errors.TaskLostError), outcomes
        assert await _results_and_events_of(postgres_dsn, raced._task_id) == (1, 1)
        [(events, completer)] = await driver.claim_workflows([WF], max_events=10)
        results = {
            event.task_result.parameters: (event.task_result.status, event.task_result.result)
            for event in events
            if event.task_result is not None
        }
        assert results == {
            busy_task.parameters: (TaskStatus.SUCCESS, None),
            raced_task.parameters: (TaskStatus.SUCCESS, b'"first"'),
        }
        await completer.done(None)


async def test_two_reports_on_one_lease_retried_write_by_write_one_wins(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    merged = _group_commit.run_completions_merged
    failed_once: list[int] = []

    async def failing_first_group(conn: Any, group: Any, note: Any) -> Any:
        if not failed_once:  # the group fails as a whole (as on a dead connection)
            failed_once.append(len(group))
            raise errors.DriverError("the group's connection died")
        return await merged(conn, group, note)

    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await _fan_out(driver, 1)
        [(_, raced)] = await driver.dequeue_tasks("t", 1)
        completions = driver._committers[asyncio.get_running_loop()]["completion"]
        monkeypatch.setattr(completions._flush, "runner", failing_first_group)

        outcomes = await asyncio.gather(
            raced.succeed(b'"first"'), raced.abandon(), return_exceptions=True
        )

        assert failed_once == [2]
        assert outcomes[0] is None, outcomes
        assert isinstance(outcomes[1], errors.TaskLostError), outcomes
        assert await _results_and_events_of(postgres_dsn, raced._task_id) == (1, 1)
