"""``bench/run.py --quick`` runs end to end and its last line is the documented JSON object.

Runs the bench as a real subprocess with this interpreter (quick mode needs only
the project's own dependencies), against SQLite and a throwaway PostgreSQL
database. No timing is asserted: only that every documented key is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.plugins.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# the keys bench/README.md documents
TOP_KEYS = {
    "mode",
    "date",
    "seconds",
    "sizes",
    "postgres",
    "sqlite",
    "peers",
    "ratios",
    "targets",
    "errors",
}
SCENARIO_KEYS = {
    "drain": {"processes", "tasks", "seconds", "tasks_per_s", "worker_cpu_ms_per_task"},
    "drain_keyed": {"processes", "tasks", "seconds", "tasks_per_s", "worker_cpu_ms_per_task"},
    "single": {"workflows", "seconds", "workflows_per_s", "complete_p50_ms", "complete_p99_ms"},
    "single_keyed": {
        "workflows",
        "seconds",
        "workflows_per_s",
        "complete_p50_ms",
        "complete_p99_ms",
    },
    "pickup": {
        "samples",
        "on_start_p50_ms",
        "on_start_p95_ms",
        "on_start_p99_ms",
        "task_start_p50_ms",
        "task_start_p95_ms",
        "task_start_p99_ms",
    },
    "fanout_commit": {"tasks", "callback_s", "commit_s"},
    "backlog": {
        "small_queued",
        "small_tasks_per_s",
        "small_setup_s",
        "large_queued",
        "large_tasks_per_s",
        "large_setup_s",
        "large_vs_small",
    },
    "idle": {"seconds", "cpu_percent", "rss_mb"},
}
PEERS = {"pgqueuer", "procrastinate", "dbos", "pgbench", "pgqueuer_scale"}
PEER_RATIOS = {
    "drain_vs_pgqueuer",
    "drain_vs_procrastinate",
    "single_vs_dbos",
    "pickup_on_start_p50_vs_pgqueuer",
    "pickup_task_p50_vs_pgqueuer",
    "pickup_task_p95_vs_pgqueuer",
    "pickup_task_p99_vs_pgqueuer",
    "pickup_task_p50_vs_dbos",
}
RATIOS = {
    *PEER_RATIOS,
    *(f"sqlite_{name}" for name in PEER_RATIOS),
    "single_vs_drain",
    "sqlite_single_vs_drain",
    "backlog_large_vs_small",
    "sqlite_backlog_large_vs_small",
    "commits_vs_dbos",
    "sqlite_drain_vs_postgres",
    "keyed_drain_vs_drain",
    "sqlite_keyed_drain_vs_drain",
    "keyed_single_vs_single",
    "sqlite_keyed_single_vs_single",
}
TARGETS = {
    "drain_vs_pgqueuer",
    "single_vs_drain",
    "single_vs_dbos",
    "pickup_on_start_p50_vs_pgqueuer",
    "pickup_task_p50_vs_pgqueuer",
    "pickup_task_p99_ms",
    "fanout_commit_s",
    "backlog_large_vs_small",
    "idle_cpu_percent",
    "idle_rss_mb",
    "commits_per_workflow",
    "sqlite_drain_vs_postgres",
    "sqlite_pickup_task_p99_ms",
}


@pytest.fixture
def bench_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A database name for the bench to create; dropped afterwards."""
    name = f"cbq_{uuid.uuid4().hex[:12]}"
    yield postgres_server.database_dsn(name)
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_quick_bench_prints_the_documented_json_last(bench_dsn: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick"],
        cwd=REPO,
        env={**os.environ, "BENCH_DSN": bench_dsn},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.keys() >= TOP_KEYS
    assert result["mode"] == "quick"
    assert result["errors"] == []
    for store in ("postgres", "sqlite"):
        for scenario, keys in SCENARIO_KEYS.items():
            assert keys <= result[store][scenario].keys(), (store, scenario)
    assert "commits_per_workflow" in result["postgres"]["single"]
    assert {"db_cpu_ms_per_task", "commits_per_s"} <= result["postgres"]["drain"].keys()
    assert "scale_out" not in result  # full mode only
    assert set(result["peers"]) == PEERS
    assert all(value is None for value in result["peers"].values())  # quick: no peers
    assert set(result["ratios"]) == RATIOS
    assert result["ratios"]["drain_vs_pgqueuer"] is None
    assert set(result["targets"]) == TARGETS
    for target in result["targets"].values():
        assert {"value", "target", "met"} <= target.keys()
    assert result["sizes"]["pickup_samples"] > 0
