"""Scenario ``delayed_claim``: a task claim's latency with and without 200 000 delayed tasks.

    python3 bench/run.py --scenario delayed_claim [--only postgres|sqlite]

For each store, two fresh databases: one holding only due tasks, one holding
the same due tasks queued after 200 000 tasks of the same name that are not
due for an hour (a delay or a retry backoff). One process, one driver, no
worker: ``dequeue_tasks(name, 1)`` is called once per due task, each call
timed (``perf_counter``), the first ``WARMUP`` left out. Rows are seeded with
one SQL statement (PostgreSQL then gets ``VACUUM ANALYZE``, what autovacuum
would do). Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import statistics
import time
from typing import Any

import psycopg

from bench import stores
from cereal.drivers import open_driver, sqlite_path_from_url

log = logging.getLogger("bench.delayed_claim")

DELAYED = 200_000
DUE = 300
WARMUP = 20
TASK = "bench_delayed"

_SQLITE_SEED = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name,
                          enqueued_at, start_after)
SELECT 1, 'wf', 'i', :task, :now, :start_after FROM n
"""
_POSTGRES_SEED = """
INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name, start_after)
SELECT %(instance_id)s, 'wf', 'i', %(task)s, now() + make_interval(secs => %(delay)s)
FROM generate_series(1, %(count)s)
"""


def _seed_sqlite(url: str, delayed: int) -> None:
    conn = sqlite3.connect(sqlite_path_from_url(url), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        at = time.time()
        if delayed:
            conn.execute(
                _SQLITE_SEED,
                {"count": delayed, "task": TASK, "now": at, "start_after": at + 3600},
            )
        conn.execute(_SQLITE_SEED, {"count": DUE, "task": TASK, "now": at, "start_after": at})
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _seed_postgres(url: str, delayed: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status)"
            " VALUES ('wf', 'i', 'running') RETURNING id"
        ).fetchone()
        assert row is not None
        params = {"instance_id": row[0], "task": TASK}
        if delayed:
            conn.execute(_POSTGRES_SEED, {**params, "delay": 3600.0, "count": delayed})
        conn.execute(_POSTGRES_SEED, {**params, "delay": 0.0, "count": DUE})
        conn.execute("VACUUM ANALYZE cereal_tasks")


async def _claims_ms(url: str, kind: str, delayed: int) -> list[float]:
    """Seed a fresh store, then time one claim per due task (milliseconds)."""
    driver = open_driver(url)
    await driver.init()  # migrates
    try:
        await asyncio.to_thread(_seed_sqlite if kind == "sqlite" else _seed_postgres, url, delayed)
        took: list[float] = []
        for _ in range(DUE):
            began = time.perf_counter()
            claimed = await driver.dequeue_tasks(TASK, 1, task_expiry=3600.0)
            took.append((time.perf_counter() - began) * 1000)
            if len(claimed) != 1:
                raise RuntimeError(f"claimed {len(claimed)} tasks, expected 1")
        return took[WARMUP:]
    finally:
        await driver.close()


async def _measure(store: stores.PostgresStore | stores.SqliteStore) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for label, delayed in (("no_backlog", 0), ("delayed_backlog", DELAYED)):
        url = store.fresh(f"delayed_claim_{label}")
        try:
            took = await _claims_ms(url, store.kind, delayed)
        finally:
            store.drop(url)
        figures[f"{label}_p50_ms"] = round(statistics.median(took), 3)
        figures[f"{label}_mean_ms"] = round(statistics.fmean(took), 3)
        log.info("%s %s: p50 %.3f ms", store.kind, label, figures[f"{label}_p50_ms"])
    figures["p50_ratio"] = round(
        figures["delayed_backlog_p50_ms"] / figures["no_backlog_p50_ms"], 2
    )
    return figures


def run(dsn: str, only: str | None) -> dict[str, Any]:
    """Measure on the chosen stores; print a table and, last, a JSON line."""
    result: dict[str, Any] = {"scenario": "delayed_claim", "delayed": DELAYED, "due": DUE}
    chosen: list[stores.PostgresStore | stores.SqliteStore] = []
    if only in (None, "postgres"):
        postgres = stores.PostgresStore(dsn)
        postgres.ensure_bench_database()
        chosen.append(postgres)
    if only in (None, "sqlite"):
        chosen.append(stores.SqliteStore())
    for store in chosen:
        try:
            result[store.kind] = asyncio.run(_measure(store))
        finally:
            store.cleanup()
    lines = [
        f"| claim of 1 due task, ms | no backlog p50 | behind {DELAYED:,} delayed p50 | ratio |",
        "|---|---|---|---|",
    ]
    for store in chosen:
        figures = result[store.kind]
        lines.append(
            f"| {store.kind} | {figures['no_backlog_p50_ms']} |"
            f" {figures['delayed_backlog_p50_ms']} | {figures['p50_ratio']} |"
        )
    print("\n".join(lines), flush=True)
    print(json.dumps(result), flush=True)
    return result
