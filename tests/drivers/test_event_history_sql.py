"""The SQL drivers' stored event history: what the triggers write and what retention trims.

The conformance cases check what ``list_instance_events`` shows; these look at
the ``cereal_event_history`` rows themselves, so a run that is no longer shown
but still stored is caught.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import psycopg
import pytest

from cereal.drivers import Driver
from cereal.drivers._sqlfiles import Migration
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._migrate import migrations as postgres_migrations
from cereal.drivers.sqlite import SQLiteDriver
from cereal.drivers.sqlite._migrate import apply_migrations
from cereal.drivers.sqlite._migrate import migrations as sqlite_migrations
from cereal.models import HistoryRetention, NewTask, TaskStatus
from tests._waiting import sweep_until
from tests.conformance._driver_helpers import finished, started, sweep
from tests.drivers._postgres_schema import apply_migrations_by_hand

_RUNS = (
    "SELECT instance_name, count(DISTINCT instance_id) FROM cereal_event_history"
    " GROUP BY instance_name ORDER BY instance_name"
)


@dataclass
class Store:
    """An open SQL driver and a way to read its stored history runs per instance name."""

    driver: Driver
    runs_per_name: Callable[[], list[tuple[str, int]]]


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, db_path: str) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        driver: Driver = SQLiteDriver(db_path)

        def runs() -> list[tuple[str, int]]:
            with sqlite3.connect(db_path) as conn:
                return [(str(n), int(c)) for n, c in conn.execute(_RUNS)]

    else:
        dsn = request.getfixturevalue("postgres_dsn")
        driver = PostgresDriver(dsn)

        def runs() -> list[tuple[str, int]]:
            with psycopg.connect(dsn) as conn:
                return [(str(n), int(c)) for n, c in conn.execute(_RUNS)]

    await driver.init()
    try:
        yield Store(driver, runs)
    finally:
        await driver.close()


async def test_trimming_keeps_the_history_of_the_runs_still_kept(store: Store) -> None:
    driver = store.driver
    for _ in range(3):
        await finished(driver, "wf", "a")
    await finished(driver, "wf", "b")
    assert store.runs_per_name() == [("a", 3), ("b", 1)]

    driver.retention = HistoryRetention(max_rows=3, margin_rows=0)
    assert (await sweep(driver, task_expiry=60.0)).trimmed_results == 1
    assert store.runs_per_name() == [("a", 2), ("b", 1)]

    await started(driver, "wf", "a")  # a live run of a trimmed pair keeps its history
    driver.retention = HistoryRetention(max_rows=1, margin_rows=0)
    assert (await sweep(driver, task_expiry=60.0)).trimmed_results == 2
    assert store.runs_per_name() == [("a", 1), ("b", 1)]
    assert [e.pending for e in await driver.list_instance_events("wf", "a")] == [False]


async def test_a_killed_run_is_trimmed_with_its_history(store: Store) -> None:
    # a kill writes the finished run (with its instance id) by another statement
    # than a decision does; trimming it must take its history too
    driver = store.driver
    await started(driver, "wf", "a")
    await driver.kill_workflow("wf", "a", "killed")
    await finished(driver, "wf", "a")
    assert store.runs_per_name() == [("a", 2)]

    driver.retention = HistoryRetention(max_rows=1, margin_rows=0)
    assert (await sweep(driver, task_expiry=60.0)).trimmed_results == 1
    assert store.runs_per_name() == [("a", 1)]


async def test_a_lost_task_is_recorded_with_its_outcome(store: Store) -> None:
    # the sweep writes the result and its event in one statement (PostgreSQL: one
    # CTE), so the statement trigger must see the result the statement inserted
    driver = store.driver
    await started(driver, tasks=[NewTask("t1", None)])
    await driver.dequeue_tasks("t1", 1, task_expiry=0.01)
    await sweep_until(driver, "expired_tasks", 1, task_expiry=3600)

    found = await driver.list_instance_events("wf", "inst")
    assert [(e.task_name, e.task_status, e.pending) for e in found] == [
        (None, None, False),
        ("t1", TaskStatus.LOST, True),
    ]


# one live instance with a pending (failed) task completion, as older cereal stored it
_SQLITE_PENDING = [
    "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status, started_at)"
    " VALUES ('wf', 'waiting', 'running', 0)",
    "INSERT INTO cereal_task_results (instance_id, task_id, task_name, status, error_text,"
    " enqueued_at, completed_at) VALUES (1, 1, 't', 'failed', 'no', 0, 0)",
    "INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type,"
    " task_result_id, enqueued_at) VALUES (1, 'wf', 'task_complete', 1, 0)",
]
_POSTGRES_PENDING = [
    "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status)"
    " VALUES ('wf', 'waiting', 'running')",
    "INSERT INTO cereal_task_results (instance_id, task_id, task_name, status, error,"
    " enqueued_at) VALUES (1, 1, 't', 'failed', 'no', now())",
    "INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type,"
    " task_result_id) VALUES (1, 'wf', 'task_complete', 1)",
]


def _before(name: str, known: list[Migration]) -> list[Migration]:
    at = next(i for i, migration in enumerate(known) if migration.name == name)
    return known[:at]


def _before_event_history(known: list[Migration]) -> list[Migration]:
    return _before("event_history", known)


async def test_sqlite_events_pending_at_migration_start_the_history(db_path: str) -> None:
    # Given a file at the schema just before event_history with one pending task completion
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn, _before_event_history(sqlite_migrations()))
    for statement in _SQLITE_PENDING:
        conn.execute(statement)
    conn.close()
    # When it is migrated, then the pending event is in the instance's history
    async with SQLiteDriver(db_path) as driver:
        await _the_pending_completion_is_listed(driver)


async def test_postgres_events_pending_at_migration_start_the_history(
    postgres_empty_dsn: str,
) -> None:
    # Given a database at the schema just before event_history with one pending completion
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        apply_migrations_by_hand(conn, _before_event_history(postgres_migrations()))
        for statement in _POSTGRES_PENDING:
            conn.execute(statement)
    # When it is migrated, then the pending event is in the instance's history
    async with PostgresDriver(postgres_empty_dsn) as driver:
        await _the_pending_completion_is_listed(driver)


async def _the_pending_completion_is_listed(driver: Driver) -> None:
    found = await driver.list_instance_events("wf", "waiting")
    assert [(e.type.value, e.task_name, e.task_status, e.error_text, e.pending) for e in found] == [
        ("task_complete", "t", TaskStatus.FAILED, "no", True)
    ]


# ---- history_task_times: a completion's task enqueue time and attempts ---------------


async def test_sqlite_history_recorded_before_task_times_keeps_null(db_path: str) -> None:
    # Given a file at the schema just before history_task_times whose history has a
    # task completion (written by the older trigger)
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn, _before("history_task_times", sqlite_migrations()))
    for statement in _SQLITE_PENDING:
        conn.execute(statement)
    conn.close()
    # When it is migrated, then that entry has neither (the chart draws a mark)
    async with SQLiteDriver(db_path) as driver:
        await _the_old_completion_has_no_task_times(driver)


async def test_postgres_history_recorded_before_task_times_keeps_null(
    postgres_empty_dsn: str,
) -> None:
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        apply_migrations_by_hand(conn, _before("history_task_times", postgres_migrations()))
        for statement in _POSTGRES_PENDING:
            conn.execute(statement)
    async with PostgresDriver(postgres_empty_dsn) as driver:
        await _the_old_completion_has_no_task_times(driver)


async def _the_old_completion_has_no_task_times(driver: Driver) -> None:
    await _the_pending_completion_is_listed(driver)
    [found] = await driver.list_instance_events("wf", "waiting")
    assert (found.task_enqueued_at, found.task_attempts) == (None, None)
