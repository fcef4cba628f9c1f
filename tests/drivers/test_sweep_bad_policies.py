"""One bad stored retry policy (issue 17, point 4) must not stop a sweep.

A policy row written past the validation (straight SQL, the memory state, an
older version) sits next to an unrelated expired lease, a stale workflow claim
and history over its retention. One sweep must expire the unrelated task to
LOST (its workflow gets the event), release the claim, trim the history, and
report the poisoned task: LOST with the reason as its error text (the event
history the dashboard and ``cereal workflows events`` show) and a WARNING
naming its task id. A sweep step that fails is logged and the others run.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cereal import RetryPolicy, TaskStatus, errors
from cereal.checks.times import utcnow
from cereal.drivers import Driver
from cereal.drivers.memory import MemoryDriver
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._db import QUERIES
from cereal.drivers.sqlite import SQLiteDriver
from cereal.engine.sweep import sweep_store
from cereal.instance import TaskResult
from cereal.models import HistoryRetention, NewTask
from tests.conformance._driver_helpers import finished, started, sweep, take

GOOD_POLICY = RetryPolicy(max_attempts=3, initial_backoff=0.01).to_json()

# stored policies no validation lets through; each once stopped (or skewed) the sweep
BAD_POLICIES = {
    "fractional attempts": '{"max_attempts": 2.5, "initial_backoff": 1, "max_backoff": 10,'
    ' "multiplier": 2, "jitter": 0}',
    "backoff overflows a timestamp": '{"max_attempts": 3, "initial_backoff": 1e13,'
    ' "max_backoff": 1e13, "multiplier": 2, "jitter": 0}',
    "attempts as text": '{"max_attempts": "lots", "initial_backoff": 1, "max_backoff": 10,'
    ' "multiplier": 2, "jitter": 0}',
}
RETENTION = HistoryRetention(max_rows=1, margin_rows=0)


@dataclass
class Store:
    """A driver plus the raw writes that bypass it (``poison``, ``age``, ``age_claims``)."""

    driver: Driver
    poison: Callable[[str, str], Awaitable[None]]  # (task id, stored policy text)
    age: Callable[[], Awaitable[None]]  # every running lease's heartbeat two hours ago
    age_claims: Callable[[], Awaitable[None]] | None  # every workflow claim two hours old


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind = request.param
    if kind == "memory":
        yield await _memory_store()
    elif kind == "sqlite":
        async for each in _sqlite_store(tmp_path):
            yield each
    else:
        async for each in _postgres_store(request.getfixturevalue("postgres_dsn")):
            yield each


async def _memory_store() -> Store:
    driver = MemoryDriver(retention=RETENTION)
    await driver.init()
    state = driver._state

    async def poison(task_id: str, policy: str) -> None:
        state.running[int(task_id)].retry_policy = policy

    async def age() -> None:
        for task in state.running.values():
            task.lease_deadline = utcnow() - timedelta(hours=2)

    return Store(driver, poison, age, None)


async def _sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    path = str(tmp_path / "cereal.db")
    driver = SQLiteDriver(path, retention=RETENTION)
    await driver.init()

    def write(statement: str, params: tuple[Any, ...] = ()) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            conn.execute(statement, params)
        finally:
            conn.close()

    async def poison(task_id: str, policy: str) -> None:
        write("UPDATE cereal_tasks SET retry_policy = ? WHERE id = ?", (policy, int(task_id)))

    async def age() -> None:
        write(
            "UPDATE cereal_tasks SET lease_heartbeat_at = lease_heartbeat_at - 7200"
            " WHERE state = 'running'"
        )

    async def age_claims() -> None:
        write(
            "UPDATE cereal_workflow_instances SET claim_heartbeat_at = claim_heartbeat_at - 7200"
            " WHERE claim_token IS NOT NULL"
        )

    try:
        yield Store(driver, poison, age, age_claims)
    finally:
        await driver.close()


async def _postgres_store(dsn: str) -> AsyncIterator[Store]:
    driver = PostgresDriver(dsn, retention=RETENTION)
    await driver.init()

    def write(statement: str, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement, params)

    async def poison(task_id: str, policy: str) -> None:
        write(
            "UPDATE cereal_tasks SET retry_policy = %s::jsonb WHERE id = %s", (policy, int(task_id))
        )

    async def age() -> None:
        write(
            "UPDATE cereal_tasks SET heartbeat_at = now() - interval '2 hours'"
            " WHERE state = 'running'"
        )

    async def age_claims() -> None:
        write(
            "UPDATE cereal_workflow_instances SET claimed_at = now() - interval '2 hours'"
            " WHERE claim_token IS NOT NULL"
        )

    try:
        yield Store(driver, poison, age, age_claims)
    finally:
        await driver.close()


async def _seed(store: Store) -> str:
    """The scene of the test; returns the id of the task whose policy is poisoned next."""
    driver = store.driver
    # two finished runs: one more than the retention keeps
    await finished(driver, "done", "r1")
    await finished(driver, "done", "r2")
    # the task that gets the bad policy, and an unrelated one; both claimed, then silent
    await started(driver, "wf-bad", "b", tasks=[NewTask("bad", b"1", retry_policy=GOOD_POLICY)])
    await started(driver, "wf-good", "g", tasks=[NewTask("good", b"2")])
    [(bad, _)] = await driver.dequeue_tasks("bad", 1, task_expiry=3600)
    [(good, _)] = await driver.dequeue_tasks("good", 1, task_expiry=3600)
    assert good.metadata.task_id != bad.metadata.task_id
    # a workflow claim whose claimer died
    if store.age_claims is not None:
        await driver.enqueue_workflow("wf-claimed", "c", None)
        await take(driver, ["wf-claimed"])  # claimed, never decided
    return bad.metadata.task_id


@pytest.mark.parametrize("policy", list(BAD_POLICIES.values()), ids=list(BAD_POLICIES))
async def test_a_bad_stored_policy_is_reported_and_the_rest_of_the_sweep_runs(
    store: Store, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    driver = store.driver
    # Given a poisoned policy row next to an expired unrelated lease, a stale claim, history
    bad_id = await _seed(store)
    await store.poison(bad_id, policy)
    await store.age()
    if store.age_claims is not None:
        await store.age_claims()

    # When one sweep runs
    report = await sweep(driver, task_expiry=3600)

    # Then both expired tasks are LOST, the claim is released and the history trimmed
    assert report.notes in ((), ("history not trimmed: another process is on it",))
    assert (report.expired_tasks, report.retried_tasks) == (2, 0)
    assert report.trimmed_results == 1
    if store.age_claims is not None:
        assert report.released_claims == 1
        event, completer = await take(driver, ["wf-claimed"])  # claimable again
        async with completer:
            await completer.continue_(None, [])
    # the unrelated task's workflow gets its LOST event, with no error text
    event, completer = await take(driver, ["wf-good"])
    async with completer:
        assert event.task_result is not None
        assert (event.task_result.status, event.task_result.error_text) == (TaskStatus.LOST, "")
        await completer.continue_(None, [])
    # the poisoned task is LOST too, saying why, to its workflow ...
    event, completer = await take(driver, ["wf-bad"])
    async with completer:
        assert event.task_result is not None
        assert event.task_result.status == TaskStatus.LOST
        assert event.task_result.error_text.startswith("invalid retry policy: ")
        failure = TaskResult(event.task_result).err()
        assert isinstance(failure, errors.TaskLostError)
        assert str(failure).startswith("invalid retry policy: ")
        await completer.continue_(None, [])
    # ... in its event history (what the dashboard and `cereal workflows events` show) ...
    history = await driver.list_instance_events("wf-bad", "b")
    [lost] = [each for each in history if each.task_status == TaskStatus.LOST]
    assert lost.error_text.startswith("invalid retry policy: ")
    # ... in the report, and in a WARNING naming its task id
    assert report.invalid_policies == (f"bad (id {bad_id}) of wf-bad/b",)
    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "invalid retry policy" in record.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert f"(id {bad_id})" in warnings[0]
    assert "'wf-bad'" in warnings[0] and "'b'" in warnings[0]


async def test_a_policy_that_is_not_json_is_reported_on_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite stores the policy as text (PostgreSQL's jsonb refuses what is not JSON)
    caplog.set_level(logging.INFO, logger="cereal")
    async for store in _sqlite_store(tmp_path):
        bad_id = await _seed(store)
        await store.poison(bad_id, "{not json")
        await store.age()
        report = await sweep(store.driver, task_expiry=3600)
        assert report.expired_tasks == 2
        assert report.invalid_policies == (f"bad (id {bad_id}) of wf-bad/b",)
        assert any(f"(id {bad_id})" in record.getMessage() for record in caplog.records)


def _break(store: Store, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Make the store operation behind one sweep step of ``store``'s driver raise."""

    async def boom(*args: object, **kwargs: object) -> Any:
        raise RuntimeError(f"{step} exploded")

    target = {"expire": "expired_task_leases", "trim": "trim_history"}[step]
    monkeypatch.setattr(store.driver, target, boom)


async def test_a_failing_expiry_step_leaves_the_other_steps_running(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given expired work of every kind, and an expiry step that raises
    await _seed(store)
    await store.age()
    if store.age_claims is not None:
        await store.age_claims()
    _break(store, monkeypatch, "expire")

    # When a sweep runs
    report = await sweep(store.driver, task_expiry=3600)

    # Then claims are released and history trimmed; the failure is noted and logged
    assert report.expired_tasks == 0
    assert report.trimmed_results == 1
    if store.age_claims is not None:
        assert report.released_claims == 1
    assert "expire leases failed: expire exploded" in report.notes
    assert any(
        record.levelno == logging.ERROR and "'expire leases' failed" in record.getMessage()
        for record in caplog.records
    )


async def test_a_failing_trim_step_leaves_lease_expiry_running(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(store)
    await store.age()
    _break(store, monkeypatch, "trim")

    report = await sweep(store.driver, task_expiry=3600)

    # the task with attempts left is queued again, the other is LOST
    assert (report.expired_tasks, report.retried_tasks) == (1, 1)
    assert "trim history failed: trim exploded" in report.notes
    event, completer = await take(store.driver, ["wf-good"])
    async with completer:
        assert event.task_result is not None
        assert event.task_result.status == TaskStatus.LOST
        await completer.continue_(None, [])


async def test_a_postgres_sweep_skipping_a_held_instance_keeps_none_of_its_tasks_locked(
    postgres_dsn: str,
) -> None:
    # The settlement's locking statement locks the instance row before the task row: a
    # sweep that skips an instance another sweep holds must leave that instance's tasks free
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await started(driver, tasks=[NewTask("t", b"1"), NewTask("t", b"2")])
        assert len(await driver.dequeue_tasks("t", 2)) == 2
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE cereal_tasks SET heartbeat_at = now() - interval '1 hour'")
    with psycopg.connect(postgres_dsn) as conn:
        leases = conn.execute(QUERIES["expired_task_leases"], {"expiry": 60.0, "limit": 500})
        expired = leases.fetchall()
    assert len(expired) == 2
    with psycopg.connect(postgres_dsn) as holder, psycopg.connect(postgres_dsn) as sweeper:
        # Given a transaction holding the instance row
        holder.execute("SELECT id FROM cereal_workflow_instances FOR NO KEY UPDATE")
        # When a settlement's locking statement runs meanwhile, its transaction still open
        params = {
            "task_ids": [row[0] for row in expired],
            "leases": [row[1] for row in expired],
            "expiry": 60.0,
        }
        assert sweeper.execute(QUERIES["lock_settled_leases"], params).fetchall() == []
        # Then it holds none of the task rows
        free = holder.execute(
            "SELECT id FROM cereal_tasks WHERE state = 'running' FOR UPDATE SKIP LOCKED"
        ).fetchall()
        assert len(free) == 2


async def test_a_postgres_sweep_ends_when_another_holds_every_expired_lease(
    postgres_dsn: str,
) -> None:
    # Given expired leases whose instance another transaction holds
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await started(driver, tasks=[NewTask("t", b"1"), NewTask("t", b"2")])
        assert len(await driver.dequeue_tasks("t", 2)) == 2
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("UPDATE cereal_tasks SET heartbeat_at = now() - interval '1 hour'")
        with psycopg.connect(postgres_dsn) as holder:
            holder.execute("SELECT id FROM cereal_workflow_instances FOR NO KEY UPDATE")

            # When a sweep reading one lease at a time runs meanwhile
            report = await sweep_store(driver, 60.0, batch=1)

            # Then it ends without settling them (no loop over leases it cannot lock)
            assert (report.expired_tasks, report.retried_tasks, report.notes) == (0, 0, ())
        # and once the holder is gone, the next sweep settles both
        assert (await sweep_store(driver, 60.0, batch=1)).expired_tasks == 2
