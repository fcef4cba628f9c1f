"""What history trimming costs: a million finished runs, trimmed while workflows are enqueued.

For each store (PostgreSQL beside ``BENCH_DSN``, default
``postgresql://root@127.0.0.1:5432/bench``; SQLite in a temp dir):

1. **Fill**: ``--runs`` finished runs (default 1 000 000) over ten workflow
   names, ended over the last 30 days, each with two rows of event history,
   written straight into the store's tables (as a year of real runs would
   leave them).
2. **Trim under load**: a separate process runs one full trim with a rule
   per name (``wf0``-``wf4``: newest 20 000; ``wf5``-``wf9``: the last 7
   days); meanwhile this process enqueues workflows at about 200 a second,
   timing each call. The same enqueues are timed for 3 s before the trim, as
   the baseline.
3. **Soak**: ``--rounds`` rounds (default 5), each adding ``--runs / 10``
   newly finished runs and trimming under count rules for every name; the
   store's size after each trim shows whether it stays flat.

Prints one JSON object per store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.stores import DEFAULT_DSN, PostgresStore
from cereal import open_driver
from cereal.drivers import Driver
from cereal.models import HistoryRetention, WorkflowRetention

REPO = Path(__file__).resolve().parent.parent
NAMES = [f"wf{i}" for i in range(10)]
DAY = 86400.0
FILL_CHUNK = 100_000
ID_BASE = 2**40  # filled runs' instance and event ids: far above the ids live work takes
ENQUEUE_GAP_S = 0.005
BASELINE_S = 3.0

TRIM_RULES = HistoryRetention(
    max_rows=100_000_000,
    margin_rows=0,
    per_workflow={
        **{name: WorkflowRetention(max_runs=20_000) for name in NAMES[:5]},
        **{name: WorkflowRetention(max_age=7 * DAY) for name in NAMES[5:]},
    },
)


def soak_rules(runs: int) -> HistoryRetention:
    """Count rules for every name: a steady state whatever the arrival times."""
    keep = max(runs // 50, 1)
    return HistoryRetention(
        max_rows=100_000_000,
        margin_rows=0,
        per_workflow={name: WorkflowRetention(max_runs=keep) for name in NAMES},
    )


@dataclass
class Latency:
    """Enqueue latencies of one phase, in ms."""

    calls: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0

    @classmethod
    def of(cls, samples: list[float]) -> Latency:
        """Summarise samples given in seconds."""
        if not samples:
            return cls()
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return cls(
            len(ordered),
            round(statistics.median(ordered) * 1000, 2),
            round(p99 * 1000, 2),
            round(ordered[-1] * 1000, 2),
        )


@dataclass
class StoreReport:
    """The figures of one store."""

    store: str
    runs: int
    fill_s: float = 0.0
    size_mb_filled: float = 0.0
    trimmed: int = 0
    trim_s: float = 0.0
    enqueue_baseline: Latency = field(default_factory=Latency)
    enqueue_during_trim: Latency = field(default_factory=Latency)
    size_mb_after_trim: float = 0.0
    soak_sizes_mb: list[float] = field(default_factory=list)
    soak_trimmed: list[int] = field(default_factory=list)


# ---- filling the stores ------------------------------------------------------------------


PG_FILL = """
WITH runs AS (
    INSERT INTO cereal_workflow_results
        (workflow_name, instance_name, parameters, result, started_at, ended_at, instance_id)
    SELECT 'wf' || (i %% 10), 'run-' || (%(first)s + i), '{"n": 1}'::bytea, '"ok"'::bytea,
           %(start)s + make_interval(secs => i * %(step)s) - interval '1 second',
           %(start)s + make_interval(secs => i * %(step)s),
           %(first)s + i
    FROM generate_series(1, %(count)s) AS i
    RETURNING instance_id, workflow_name, instance_name, ended_at
)
INSERT INTO cereal_event_history
    (event_id, instance_id, workflow_name, instance_name, event_type, enqueued_at)
SELECT runs.instance_id * 2 + k, runs.instance_id, runs.workflow_name, runs.instance_name,
       CASE k WHEN 0 THEN 'start' ELSE 'task_complete' END, runs.ended_at
FROM runs, generate_series(0, 1) AS k
"""


def fill_postgres(dsn: str, first: int, count: int, start: float, span: float) -> None:
    """``count`` finished runs ending evenly over ``span`` s from epoch ``start``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for offset in range(0, count, FILL_CHUNK):
            chunk = min(FILL_CHUNK, count - offset)
            chunk_start = start + span * offset / count
            conn.execute(
                PG_FILL,
                {
                    "first": ID_BASE + first + offset,
                    "count": chunk,
                    "start": _timestamp(chunk_start),
                    "step": span / count,
                },
            )


def _timestamp(epoch: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


def fill_sqlite(path: Path, first: int, count: int, start: float, span: float) -> None:
    """As :func:`fill_postgres`, for a SQLite file."""
    step = span / count
    with sqlite3.connect(path) as conn:
        for offset in range(0, count, FILL_CHUNK):
            chunk = range(first + offset + 1, first + min(offset + FILL_CHUNK, count) + 1)
            runs = [(NAMES[i % 10], f"run-{i}", start + (i - first) * step, i) for i in chunk]
            conn.executemany(
                "INSERT INTO cereal_workflow_results (workflow_name, instance_name, parameters,"
                " result, started_at, ended_at, instance_id)"
                " VALUES (?1, ?2, X'7B226E223A20317D', X'226F6B22', ?3 - 1, ?3, ?4)",
                runs,
            )
            conn.executemany(
                "INSERT INTO cereal_event_history (event_id, instance_id, workflow_name,"
                " instance_name, event_type, enqueued_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    # negative: SQLite numbers new history rows after the largest id
                    (-(i * 2 + k), i, w, n, "start" if k == 0 else "task_complete", t)
                    for w, n, t, i in runs
                    for k in (0, 1)
                ],
            )
            conn.commit()


def size_postgres(dsn: str) -> float:
    """MB held by the finished runs and their event history (tables and indexes)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('cereal_workflow_results')"
            " + pg_total_relation_size('cereal_event_history')"
        ).fetchone()
    assert row is not None
    return round(int(row[0]) / 2**20, 1)


def size_sqlite(path: Path) -> float:
    """MB of the file's pages in use (free pages are reused before the file grows)."""
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return round((pages - free) * size / 2**20, 1)


# ---- the trim under load -----------------------------------------------------------------


async def enqueue_until(driver: Driver, done: Any, prefix: str) -> list[float]:
    """Enqueue runs every ~5 ms until ``done()``; each call's latency in seconds."""
    samples: list[float] = []
    index = 0
    while not done():
        began = time.perf_counter()
        await driver.enqueue_workflow("load", f"{prefix}-{index}", None)
        samples.append(time.perf_counter() - began)
        index += 1
        await asyncio.sleep(ENQUEUE_GAP_S)
    return samples


async def trim_under_load(url: str, report: StoreReport) -> None:
    """Time enqueues alone, then while another process trims; record both."""
    driver = open_driver(url)
    await driver.init()
    try:
        ends = time.monotonic() + BASELINE_S
        baseline = await enqueue_until(driver, lambda: time.monotonic() > ends, "base")
        report.enqueue_baseline = Latency.of(baseline)
        trimmer = subprocess.Popen(
            [sys.executable, "-m", "bench.retention_bench", "trim", url],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
        )
        during = await enqueue_until(driver, lambda: trimmer.poll() is not None, "load")
        assert trimmer.stdout is not None
        outcome = json.loads(trimmer.stdout.read())
        report.enqueue_during_trim = Latency.of(during)
        report.trimmed, report.trim_s = outcome["trimmed"], outcome["seconds"]
    finally:
        await driver.close()


async def trim_once(url: str, retention: HistoryRetention) -> tuple[int, float]:
    """One full trim of the store; (runs removed, seconds)."""
    driver = open_driver(url, retention=retention)
    await driver.init()
    try:
        began = time.perf_counter()
        removed = await driver.trim_history(retention)
        return removed or 0, round(time.perf_counter() - began, 2)
    finally:
        await driver.close()


# ---- one store end to end ------------------------------------------------------------------


async def migrate(url: str) -> None:
    """Create the store's schema."""
    driver = open_driver(url)
    await driver.init()
    await driver.close()


def run_store(kind: str, runs: int, rounds: int, scratch: Path) -> StoreReport:
    """Fill, trim under load and soak one store."""
    report = StoreReport(kind, runs)
    if kind == "postgres":
        pg = PostgresStore(os.environ.get("BENCH_DSN", DEFAULT_DSN))
        pg.ensure_bench_database()
        url = pg.fresh("retention")
        asyncio.run(migrate(url))

        def fill(first: int, count: int, start: float, span: float) -> None:
            fill_postgres(url, first, count, start, span)

        def size() -> float:
            return size_postgres(url)

        def settle() -> None:
            # autovacuum's work, done at once: the freed space becomes reusable
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM cereal_workflow_results, cereal_event_history")
    else:
        path = scratch / "retention.db"
        url = f"sqlite:///{path}"
        asyncio.run(migrate(url))
        pg = None

        def fill(first: int, count: int, start: float, span: float) -> None:
            fill_sqlite(path, first, count, start, span)

        def size() -> float:
            return size_sqlite(path)

        def settle() -> None:
            pass  # SQLite reuses freed pages without a vacuum

    try:
        began = time.perf_counter()
        fill(0, runs, time.time() - 30 * DAY, 30 * DAY - 60)
        report.fill_s = round(time.perf_counter() - began, 1)
        report.size_mb_filled = size()
        asyncio.run(trim_under_load(url, report))
        report.size_mb_after_trim = size()
        soak = soak_rules(runs)
        added = max(runs // 10, 1)
        for round_index in range(rounds):
            fill(runs * (round_index + 2), added, time.time() - 60, 59)
            removed, _ = asyncio.run(trim_once(url, soak))
            settle()
            report.soak_trimmed.append(removed)
            report.soak_sizes_mb.append(size())
    finally:
        if pg is not None:
            pg.cleanup()
    return report


def main(argv: list[str]) -> int:
    """``[--runs N] [--rounds R] [--only STORE]``, or ``trim URL`` (the trimming process)."""
    if argv[:1] == ["trim"]:
        removed, seconds = asyncio.run(trim_once(argv[1], TRIM_RULES))
        print(json.dumps({"trimmed": removed, "seconds": seconds}))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("postgres", "sqlite"), default=None)
    args = parser.parse_args(argv)
    if args.runs < 100:
        parser.error("--runs must be at least 100")
    stores = [args.only] if args.only else ["postgres", "sqlite"]
    with tempfile.TemporaryDirectory(prefix="cereal-retention-") as scratch:
        for kind in stores:
            report = run_store(kind, args.runs, args.rounds, Path(scratch))
            print(json.dumps(asdict(report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
