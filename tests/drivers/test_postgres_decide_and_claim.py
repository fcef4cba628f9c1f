"""Tasks an idle local runner promised to take are claimed in the decision's own commit.

PostgreSQL's decision group then claims them for the runner in the same
transaction (``cereal_apply_decisions_and_claim``) and hands them over after
the commit: no claim statement of the runner's own, and no wakeup, before
the task starts. The claim is a dequeue's (leases, limits, order), inside a
transaction whose decisions must still commit synchronously.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from cereal import Manager
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres import _base as pg_base
from cereal.drivers.postgres._db import QUERIES
from cereal.models import NewTask
from tests._waiting import wait_until
from tests.drivers.test_postgres_local_tasks import OPTIONS, Tasks
from tests.plugins.manager import wait_finished


class Claims:
    """A runner's own claims (``dequeue_tasks``), seen from outside."""

    def __init__(self) -> None:
        self.ids: list[str] = []


def counted_dequeues(driver: PostgresDriver) -> Claims:
    """Record every claim ``driver.dequeue_tasks`` makes from now on, and the ids it returns."""
    claims = Claims()
    base: type[Any] = type(driver)

    async def dequeue_tasks(self: Any, name: str, max_tasks: int, **options: Any) -> Any:
        claimed = await base.dequeue_tasks(self, name, max_tasks, **options)
        claims.ids.extend(data.metadata.task_id for data, _ in claimed)
        return claimed

    driver.__class__ = type(f"Counted{base.__name__}", (base,), {"dequeue_tasks": dequeue_tasks})
    return claims


def manager_with(
    driver: PostgresDriver, ran: list[str], gate: threading.Event | None = None
) -> Manager:
    def task(t: Any) -> None:
        ran.append(t.metadata.task_id)
        if gate is not None:
            gate.wait(30)

    manager = Manager(driver, **OPTIONS)
    manager.register_workflow_executor("wf", Tasks())
    manager.register_task_executor("t", task, workers=4)
    return manager


async def test_a_task_an_idle_local_runner_promised_starts_without_a_claim_of_its_own(
    postgres_dsn: str,
) -> None:
    driver = PostgresDriver(postgres_dsn)
    claims = counted_dequeues(driver)
    ran: list[str] = []
    async with manager_with(driver, ran) as manager:
        await manager.enqueue_workflow("wf", "i", 2)
        await wait_finished(manager, "wf", "i")
    # both tasks ran, and neither came from the runner's own claims
    assert len(ran) == 2
    assert not set(ran) & set(claims.ids), (ran, claims.ids)


async def test_a_busy_runner_still_claims_what_its_commit_claim_left(postgres_dsn: str) -> None:
    # Given a runner with one of its four slots busy
    gate = threading.Event()
    driver = PostgresDriver(postgres_dsn)
    ran: list[str] = []
    async with manager_with(driver, ran, gate) as manager:
        try:
            await manager.enqueue_workflow("wf", "busy", 1)
            await wait_until(lambda: len(ran) == 1, what="the first task to run")
            # When a decision adds two tasks: the commit claims at most the three free slots
            await manager.enqueue_workflow("wf", "more", 2)
            await wait_until(lambda: len(ran) == 3, what="both new tasks to start")
        finally:
            gate.set()
        await wait_finished(manager, "wf", "more")
        await wait_finished(manager, "wf", "busy")


async def _queued_task(driver: PostgresDriver, task: NewTask | None = None) -> None:
    await driver.enqueue_workflow("wf", "i", None)
    [(_, completer)] = await driver.claim_workflows(["wf"])
    await completer.continue_(None, [task or NewTask("t", None)])


def _claim_only(task_name: str) -> dict[str, Any]:
    """``apply_decisions_and_claim`` parameters with no decision and a claim of ``task_name``."""
    empty: dict[str, Any] = {
        name: []
        for name in (
            "instance_ids", "tokens", "finishes", "payloads", "completed", "results", "errors",
            "event_ids", "result_ids", "task_owners", "task_names", "task_parameters",
            "task_start_after", "task_traceparents", "error_types", "error_tracebacks",
            "task_retry_policies", "task_concurrency_keys", "task_concurrency_limits",
            "task_rate_limit_starts", "task_rate_limit_seconds", "task_priorities",
        )
    }  # fmt: skip
    return {
        **empty,
        "task_idempotency_keys": None,
        "note": None,
        "claim_task_name": task_name,
        "claim_max_tasks": 2,
        "claim_lease": "00000000-0000-4000-8000-000000000001",
        "claim_expiry": 60.0,
        "claim_retry_policy": None,
    }


@pytest.mark.parametrize("setting", ["on", "local", "remote_apply", "off"])
async def test_the_claim_leaves_the_decisions_commit_synchronous(
    postgres_dsn: str, setting: str
) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await _queued_task(driver)
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        async with conn.transaction(force_rollback=True):
            # a claim on its own commits asynchronously (a lost claim only requeues)
            await conn.execute(f"SET LOCAL synchronous_commit = {setting}")
            await conn.execute("SELECT * FROM cereal_claim_ranked_tasks('none', 1, NULL, 60, NULL)")
            assert await _synchronous_commit(conn) == "off"
        async with conn.transaction(force_rollback=True):
            await conn.execute(f"SET LOCAL synchronous_commit = {setting}")
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(QUERIES["apply_decisions_and_claim"], _claim_only("t"))
            rows = await cur.fetchall()
            assert [row["claimed_task_name"] for row in rows] == ["t"]
            assert await _synchronous_commit(conn) == setting


@pytest.mark.parametrize(("setting", "after"), [("local", "on"), ("remote_apply", "remote_apply")])
async def test_a_claim_that_records_a_rate_limited_start_never_leaves_the_commit_weaker(
    postgres_dsn: str, setting: str, after: str
) -> None:
    # a recorded start must outlive a crash: the claim sets the commit synchronous
    rated = NewTask("t", None, concurrency_key="k", rate_limit_starts=5, rate_limit_seconds=60.0)
    async with PostgresDriver(postgres_dsn) as driver:
        await _queued_task(driver, rated)
    async with (
        await psycopg.AsyncConnection.connect(postgres_dsn) as conn,
        conn.transaction(force_rollback=True),
    ):
        await conn.execute(f"SET LOCAL synchronous_commit = {setting}")
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["apply_decisions_and_claim"], _claim_only("t"))
        assert [row["claimed_task_name"] for row in await cur.fetchall()] == ["t"]
        started = await conn.execute("SELECT count(*) FROM cereal_key_starts")
        assert await started.fetchone() == (1,)  # the start was recorded
        assert await _synchronous_commit(conn) == after


async def _synchronous_commit(conn: psycopg.AsyncConnection[Any]) -> str:
    cur = await conn.execute("SHOW synchronous_commit")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("grace", [0.0, 30.0])
async def test_tasks_claimed_in_a_commit_that_ends_as_the_runner_stops_are_handed_back_uncounted(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, grace: float
) -> None:
    # Given a decision group held open after its statement committed a claim for the runner
    merged = pg_base.run_decisions_merged
    committed = asyncio.Event()
    release = asyncio.Event()

    async def held(conn: Any, group: Any, note: Any, claim: Any = None) -> Any:
        answer = await merged(conn, group, note, claim)
        if claim is not None:
            committed.set()
            await release.wait()
        return answer

    monkeypatch.setattr(pg_base, "run_decisions_merged", held)
    driver = PostgresDriver(postgres_dsn)
    ran: list[str] = []
    manager = manager_with(driver, ran)
    await manager.start()
    await manager.enqueue_workflow("wf", "i", 1)
    await asyncio.wait_for(committed.wait(), 30)

    # When the runner stops (within its grace, or after it) before the task is delivered
    stopping = asyncio.create_task(manager.stop(grace_period=grace))
    runner = manager._task_runners["t"]
    if grace:
        await wait_until(lambda: runner._stopping, what="the stop to begin")
    else:
        await wait_until(lambda: runner._abandoning, what="the grace period to end")
    release.set()
    await stopping

    # Then the task never ran and is queued again, its hand-backs not counted
    assert ran == []
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cur = await conn.execute("SELECT state, lease, hand_backs FROM cereal_tasks")
        assert await cur.fetchall() == [("queued", None, 0)]
