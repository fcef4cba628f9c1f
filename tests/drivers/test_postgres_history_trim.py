"""PostgreSQL history trimming of a long-lived schedule on tables without statistics.

A schedule reuses one (workflow, instance) name pair for every run. The store
is built with direct SQL at the schema before migration 0010 (runs stored
without their instance id), autovacuum off so that no statistics ever exist,
then migrated and trimmed. ``auto_explain`` logs the plan of every statement
the trim runs, nested ones (the history trigger's) included, with buffer
counts: the history deletes must read index entries of the trimmed runs only
(a plan that compares each trimmed run with the pair's whole history reads
hundreds of thousands of buffers), and the runs must go in several batches.
"""

from __future__ import annotations

from typing import Any

import psycopg

from cereal.drivers._sqlfiles import Migration
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._maintenance import trim_history
from cereal.drivers.postgres._migrate import migrations
from cereal.models import HistoryRetention
from tests.conformance._driver_helpers import sweep
from tests.drivers._postgres_schema import apply_migrations_by_hand, log_every_plan, plan_nodes

RUNS = 11_001
"""Finished runs of the schedule's pair: run k has instance id k (and result id k)."""
TRIMMED = 2_001


def before_store_costs(known: list[Migration]) -> list[Migration]:
    """The migrations of a store written before runs carried their instance id."""
    return [migration for migration in known if migration.version < 10]


def migrate_before_store_costs(conn: psycopg.Connection[Any]) -> None:
    """Bring an empty database to the schema just before migration 0010, recorded."""
    apply_migrations_by_hand(conn, before_store_costs(migrations()))


def build_store(dsn: str) -> None:
    """A store at the older schema: the pair's runs with two events each, a live run."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate_before_store_costs(conn)
        for table in ("cereal_workflow_results", "cereal_event_history"):
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        conn.execute(
            "INSERT INTO cereal_workflow_results"
            " (workflow_name, instance_name, started_at, ended_at)"
            " SELECT 'wf', 'daily', to_timestamp(run), to_timestamp(run + 0.5)"
            " FROM generate_series(1, %s) AS run ORDER BY run",
            (RUNS,),
        )
        conn.execute(
            "INSERT INTO cereal_event_history"
            " (event_id, instance_id, workflow_name, instance_name, event_type, enqueued_at)"
            " SELECT 2 * run - 1 + step, run, 'wf', 'daily', 'start', to_timestamp(run)"
            " FROM generate_series(1, %s) AS run, generate_series(0, 1) AS step",
            (RUNS,),
        )
        conn.execute(
            "INSERT INTO cereal_workflow_instances"
            " (id, workflow_name, instance_name, status) OVERRIDING SYSTEM VALUE"
            " VALUES (%s, 'wf', 'daily', 'running')",
            (RUNS + 1,),
        )
        conn.execute(
            "INSERT INTO cereal_event_history"
            " (event_id, instance_id, workflow_name, instance_name, event_type, enqueued_at)"
            " VALUES (%s, %s, 'wf', 'daily', 'start', now())",
            (3 * RUNS, RUNS + 1),
        )


async def test_trimming_without_statistics_reads_only_the_trimmed_runs(
    postgres_empty_dsn: str,
) -> None:
    build_store(postgres_empty_dsn)
    async with PostgresDriver(postgres_empty_dsn):
        pass  # migrates

    async with await psycopg.AsyncConnection.connect(postgres_empty_dsn, autocommit=True) as conn:
        plans = await log_every_plan(conn)
        retention = HistoryRetention(max_rows=RUNS - TRIMMED, margin_rows=0)
        trimmed = await trim_history(conn, retention)
        await conn.execute("RESET client_min_messages")
        stats = await conn.execute(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'cereal_event_history'"
        )
        assert await stats.fetchone() == (0,)  # no statistics were there to help

    # exactly the oldest runs and their history went; the rest and the live run's stayed
    assert trimmed == TRIMMED
    with psycopg.connect(postgres_empty_dsn) as check:
        kept = check.execute(
            "SELECT min(instance_id), max(instance_id), count(*) FROM cereal_event_history"
        ).fetchone()
        assert kept == (TRIMMED + 1, RUNS + 1, 2 * (RUNS - TRIMMED) + 1)
        runs = check.execute("SELECT min(id), count(*) FROM cereal_workflow_results").fetchone()
        assert runs == (TRIMMED + 1, RUNS - TRIMMED)

    history_deletes = [
        plan for plan in plans if "DELETE FROM cereal_event_history" in plan["Query Text"]
    ]
    run_deletes = [
        plan for plan in plans if "DELETE FROM cereal_workflow_results" in plan["Query Text"]
    ]
    # every history delete read the index by run, and all of them together read a few
    # buffers per trimmed run (comparing each with the pair's history reads far more)
    assert history_deletes
    buffers = sum(
        plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
        for plan in history_deletes
    )
    scans = [
        node["Node Type"]
        for plan in history_deletes
        for node in plan_nodes(plan["Plan"])
        if node["Node Type"] == "Seq Scan"
    ]
    assert buffers <= 10 * TRIMMED, (buffers, scans)
    assert scans == []
    # and the runs went in several bounded statements (one transaction each)
    assert len(run_deletes) >= 4, [plan["Query Text"][:80] for plan in plans]


async def test_migrating_links_each_finished_run_to_its_history(postgres_empty_dsn: str) -> None:
    # Given a store at the older schema: a pair whose oldest run predates the event
    # history (no history rows), then two runs with history, then a live run
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        migrate_before_store_costs(conn)
        for result_id in (1, 2, 3):
            conn.execute(
                "INSERT INTO cereal_workflow_results (id, workflow_name, instance_name,"
                " started_at, ended_at) OVERRIDING SYSTEM VALUE"
                " VALUES (%s, 'wf', 'a', now(), now())",
                (result_id,),
            )
        conn.execute(
            "INSERT INTO cereal_workflow_instances (id, workflow_name, instance_name, status)"
            " OVERRIDING SYSTEM VALUE VALUES (40, 'wf', 'a', 'running')"
        )
        for event_id, instance_id in ((1, 20), (2, 20), (3, 30), (4, 40)):
            conn.execute(
                "INSERT INTO cereal_event_history (event_id, instance_id, workflow_name,"
                " instance_name, event_type, enqueued_at)"
                " VALUES (%s, %s, 'wf', 'a', 'start', now())",
                (event_id, instance_id),
            )

    # When it is migrated, the newest runs match the newest finished history runs
    async with PostgresDriver(postgres_empty_dsn) as driver:
        with psycopg.connect(postgres_empty_dsn) as check:
            links = check.execute(
                "SELECT id, instance_id FROM cereal_workflow_results ORDER BY id"
            ).fetchall()
        assert links == [(1, None), (2, 20), (3, 30)]

        # and trimming the two oldest drops run 20's history only
        driver.retention = HistoryRetention(max_rows=1, margin_rows=0)
        assert (await sweep(driver, task_expiry=60.0)).trimmed_results == 2
    with psycopg.connect(postgres_empty_dsn) as check:
        remaining = check.execute(
            "SELECT DISTINCT instance_id FROM cereal_event_history ORDER BY instance_id"
        ).fetchall()
    assert remaining == [(30,), (40,)]
