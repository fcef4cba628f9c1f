"""PostgreSQL: task idempotency keys in the decision function (migration 0025).

The group commit merges the decisions of many instances into one call of
``cereal_apply_decisions``; keys are checked per instance inside it. A run's
keys go with its instance row (the foreign key cascades), whether it finishes
or is killed.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._db import QUERIES
from cereal.models import NewTask

WF = "wf"


def _merged(completers: list[Any], tasks: list[list[tuple[str, str | None]]]) -> dict[str, Any]:
    """One apply_decisions call: each completer continues with its (task name, key) list."""
    owners = [n for n, own in enumerate(tasks, start=1) for _ in own]
    flat = [task for own in tasks for task in own]
    every = len(flat)
    return {
        "instance_ids": [c._instance_id for c in completers],
        "tokens": [c._token for c in completers],
        "finishes": [False] * len(completers),
        "payloads": [None] * len(completers),
        "completed": [0] * len(completers),
        "results": [None] * len(completers),
        "errors": [None] * len(completers),
        "event_ids": [e for c in completers for e in c._event_ids],
        "result_ids": [],
        "task_owners": owners,
        "task_names": [name for name, _ in flat],
        "task_parameters": [None] * every,
        "task_start_after": [None] * every,
        "task_retry_policies": [None] * every,
        "note": None,
        "task_traceparents": [None] * every,
        "task_concurrency_keys": [None] * every,
        "task_concurrency_limits": [None] * every,
        "task_rate_limit_starts": [None] * every,
        "task_rate_limit_seconds": [None] * every,
        "task_priorities": [0] * every,
        "task_idempotency_keys": [key for _, key in flat],
        "error_types": [None] * len(completers),
        "error_tracebacks": [None] * len(completers),
    }


def _stored(postgres_dsn: str) -> list[tuple[str, str, int]]:
    """(instance name, task name, enqueued_tasks of its run) of every queued task, in id order."""
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT t.instance_name, t.task_name, i.enqueued_tasks FROM cereal_tasks AS t"
            " JOIN cereal_workflow_instances AS i ON i.id = t.instance_id ORDER BY t.id"
        ).fetchall()
    return [(str(a), str(b), int(c)) for a, b, c in rows]


def _key_rows(postgres_dsn: str) -> int:
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM cereal_task_keys").fetchone()
    assert row is not None
    return int(row[0])


async def test_one_merged_call_checks_each_instances_keys_apart(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        for name in ("a", "b"):
            await driver.enqueue_workflow(WF, name, None)
        claimed = await driver.claim_workflows([WF], max_instances=2)
        completers = sorted((c for _, c in claimed), key=lambda c: c._instance_id)

        # Given one call deciding both: "a" enqueues k, k, j and none; "b" enqueues k
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            await conn.execute(
                QUERIES["apply_decisions"],
                _merged(
                    completers,
                    [[("t1", "k"), ("t2", "k"), ("t3", "j"), ("t4", None)], [("t5", "k")]],
                ),
            )

    # Then "a" stores k once, j and the unkeyed task, and counts three; "b" stores its k
    assert _stored(postgres_dsn) == [("a", "t1", 3), ("a", "t3", 3), ("a", "t4", 3), ("b", "t5", 1)]
    assert _key_rows(postgres_dsn) == 3


async def test_a_runs_keys_go_with_it_when_it_finishes_or_is_killed(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        for name in ("done", "killed"):
            await driver.enqueue_workflow(WF, name, None)
            [(_, completer)] = await driver.claim_workflows([WF])
            await completer.continue_(None, [NewTask("t", None, idempotency_key="k")])
        assert _key_rows(postgres_dsn) == 2

        await driver.kill_workflow(WF, "killed", "killed")
        assert _key_rows(postgres_dsn) == 1
        [(_, task)] = await driver.dequeue_tasks("t", 1)
        await task.succeed(None)
        [(_, completer)] = await driver.claim_workflows([WF])
        await completer.done(None)

    assert _key_rows(postgres_dsn) == 0


async def _two_claims(driver: PostgresDriver, postgres_dsn: str) -> list[Any]:
    """Two completers of one instance: the first claim lapsed and was taken again."""
    await driver.enqueue_workflow(WF, "a", None)
    [(_, lapsed)] = await driver.claim_workflows([WF])
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE cereal_workflow_instances SET claimed_at = now() - interval '1 hour'")
    assert await driver.release_stale_claims(60) == 1
    [(_, live)] = await driver.claim_workflows([WF])
    return [lapsed, live]


@pytest.mark.parametrize("key", [None, "k"])
async def test_a_lapsed_claims_decision_in_the_group_stores_nothing(
    postgres_dsn: str, key: str | None
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        completers = await _two_claims(driver, postgres_dsn)
        # Given one call holding the lapsed claim's decision and the live claim's
        params = _merged(completers, [[("lapsed", key)], [("live", key)]])
        if key is None:
            params["task_idempotency_keys"] = None  # as the group commit sends it
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            rows = await (await conn.execute(QUERIES["apply_decisions"], params)).fetchall()

    # Then only the live claim's task is stored, counted once, and only it is answered
    assert _stored(postgres_dsn) == [("a", "live", 1)]
    assert [(position, started) for _, position, started in rows] == [(2, None)]
