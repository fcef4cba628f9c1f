"""SQLite history trimming of a long-lived schedule: bounded batches that let other writers in.

A schedule reuses one (workflow, instance) name pair for every run, so its
pair gathers thousands of finished runs and their event history. Trimming
must remove exactly the oldest runs and their history, in transactions of a
bounded size, releasing the write lock between them: the test watches the
driver's connection (its statement trace) and, each time a new transaction
begins after trimming started, writes from a second connection that does not
wait for the lock at all (``timeout=0``).

The store is built at the schema before migration 0009 (runs stored without
their instance id) with direct SQL, so migrating it is checked too.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from cereal.drivers._sqlfiles import Migration
from cereal.drivers.sqlite import SQLiteDriver
from cereal.drivers.sqlite._migrate import apply_migrations, migrations
from cereal.models import HistoryRetention, WorkflowRetention
from tests.conformance._driver_helpers import sweep

RUNS = 11_001
"""Finished runs of the schedule's pair: run k has instance id k and result id k."""
TRIMMED = 2_001
LIVE_ID = RUNS + 1
"""The schedule's live run (its history is kept whatever retention says)."""
OTHER_ID = RUNS + 2
"""The one finished run of another pair, newer than every run of the schedule."""


def before_store_costs(known: list[Migration]) -> list[Migration]:
    """The migrations of a store written before runs carried their instance id."""
    return [migration for migration in known if migration.version < 9]


def build_store(db_path: str) -> None:
    """A store at the older schema: a schedule's pair with RUNS finished runs, two events each."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn, before_store_costs(migrations()))
    history = (
        "INSERT INTO cereal_event_history (event_id, instance_id, workflow_name,"
        " instance_name, event_type, enqueued_at) VALUES (?, ?, ?, ?, ?, ?)"
    )
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO cereal_workflow_results (id, workflow_name, instance_name, started_at,"
        " ended_at) VALUES (?, 'wf', 'daily', ?, ?)",
        [(run, float(run), run + 0.5) for run in range(1, RUNS + 1)],
    )
    conn.executemany(
        history,
        [
            (2 * run - 1 + step, run, "wf", "daily", kind, run + step / 4)
            for run in range(1, RUNS + 1)
            for step, kind in enumerate(("start", "task_complete"))
        ],
    )
    conn.execute(
        "INSERT INTO cereal_workflow_instances (id, workflow_name, instance_name, status,"
        " started_at) VALUES (?, 'wf', 'daily', 'running', ?)",
        (LIVE_ID, float(LIVE_ID)),
    )
    conn.execute(history, (3 * RUNS, LIVE_ID, "wf", "daily", "start", float(LIVE_ID)))
    conn.execute(
        "INSERT INTO cereal_workflow_results (id, workflow_name, instance_name, started_at,"
        " ended_at) VALUES (?, 'wf', 'other', ?, ?)",
        (OTHER_ID, float(OTHER_ID), OTHER_ID + 0.5),
    )
    conn.execute(history, (3 * RUNS + 1, OTHER_ID, "wf", "other", "start", float(OTHER_ID)))
    conn.execute("CREATE TABLE probe_writes (n INTEGER)")
    conn.execute("COMMIT")
    conn.close()


async def test_trimming_a_long_lived_schedule_commits_in_batches_other_writers_get_between(
    db_path: str,
) -> None:
    build_store(db_path)
    probe = sqlite3.connect(db_path, isolation_level=None, timeout=0, check_same_thread=False)
    statements: list[str] = []
    probes: list[str] = []

    def watch(statement: str) -> None:
        # called on the driver's thread as each statement starts, before it runs
        trimming = any("DELETE FROM cereal_workflow_results" in s for s in statements)
        if trimming and statement.lstrip().upper().startswith("BEGIN"):
            try:
                probe.execute("INSERT INTO probe_writes VALUES (1)")
                probes.append("written")
            except sqlite3.Error as exc:  # the trim still holds the lock
                probes.append(str(exc))
        statements.append(statement)

    async with SQLiteDriver(db_path) as driver:
        db = driver._connection()
        await db.call(lambda conn: conn.set_trace_callback(watch), mode="auto")
        driver.retention = HistoryRetention(max_rows=RUNS + 1 - TRIMMED, margin_rows=0)
        report = await sweep(driver, task_expiry=60.0)
        await db.call(lambda conn: conn.set_trace_callback(None), mode="auto")
    probe.close()

    # exactly the oldest runs and their history went; the rest, the live run's and
    # the other pair's history stayed
    assert report.trimmed_results == TRIMMED
    conn = sqlite3.connect(db_path)
    kept_runs = conn.execute(
        "SELECT min(id), max(id), count(*) FROM cereal_workflow_results"
    ).fetchone()
    assert kept_runs == (TRIMMED + 1, OTHER_ID, RUNS - TRIMMED + 1)
    kept_history = conn.execute(
        "SELECT instance_name, min(instance_id), max(instance_id), count(*)"
        " FROM cereal_event_history GROUP BY instance_name ORDER BY instance_name"
    ).fetchall()
    assert kept_history == [
        ("daily", TRIMMED + 1, LIVE_ID, 2 * (RUNS - TRIMMED) + 1),
        ("other", OTHER_ID, OTHER_ID, 1),
    ]
    written = conn.execute("SELECT count(*) FROM probe_writes").fetchone()[0]
    conn.close()

    # in several transactions, and a writer that never waits got in between each
    assert len(probes) >= 4, probes
    assert probes == ["written"] * len(probes)
    assert written == len(probes)


async def test_migrating_links_each_finished_run_to_its_history(db_path: str) -> None:
    # Given a store at the older schema: a pair whose oldest run predates the event
    # history (no history rows), then two runs with history, then a live run
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn, before_store_costs(migrations()))
    for result_id in (1, 2, 3):
        conn.execute(
            "INSERT INTO cereal_workflow_results (id, workflow_name, instance_name,"
            " started_at, ended_at) VALUES (?, 'wf', 'a', 0, ?)",
            (result_id, float(result_id)),
        )
    conn.execute(
        "INSERT INTO cereal_workflow_instances (id, workflow_name, instance_name, status,"
        " started_at) VALUES (40, 'wf', 'a', 'running', 0)"
    )
    for event_id, instance_id in ((1, 20), (2, 20), (3, 30), (4, 40)):
        conn.execute(
            "INSERT INTO cereal_event_history (event_id, instance_id, workflow_name,"
            " instance_name, event_type, enqueued_at) VALUES (?, ?, 'wf', 'a', 'start', 0)",
            (event_id, instance_id),
        )
    conn.close()

    # When it is migrated, the newest runs match the newest finished history runs
    async with SQLiteDriver(db_path) as driver:
        conn = sqlite3.connect(db_path)
        links = conn.execute(
            "SELECT id, instance_id FROM cereal_workflow_results ORDER BY id"
        ).fetchall()
        conn.close()
        assert links == [(1, None), (2, 20), (3, 30)]

        # and trimming the two oldest drops run 20's history only
        driver.retention = HistoryRetention(max_rows=1, margin_rows=0)
        assert (await sweep(driver, task_expiry=60.0)).trimmed_results == 2
        events = await driver.list_instance_events("wf", "a")
        assert len(events) == 1
    conn = sqlite3.connect(db_path)
    remaining = conn.execute(
        "SELECT DISTINCT instance_id FROM cereal_event_history ORDER BY instance_id"
    ).fetchall()
    conn.close()
    assert remaining == [(30,), (40,)]


async def test_a_rule_with_nothing_due_never_takes_the_write_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a driver that would fail on a held write lock, whose first trim recorded
    # the retention (a write, once), and another connection holding the write lock
    path = tmp_path / "locked.db"
    driver = SQLiteDriver(str(path), busy_timeout=0.2, busy_retries=1)
    await driver.init()
    rules = HistoryRetention(
        per_workflow={
            "reports": WorkflowRetention(max_age=3600.0),
            "beats": WorkflowRetention(max_runs=5),
        }
    )
    await driver.trim_history(rules)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        # When it trims with rules that have nothing to remove, it reads and returns,
        # and never tried the write lock (not even to record the unchanged retention)
        with caplog.at_level(logging.WARNING, logger="cereal"):
            assert await driver.trim_history(rules) == 0
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await driver.close()
