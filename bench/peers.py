"""The peers, run through the shared harnesses in ``<repo>/../shared/bench`` (full mode only)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import stores

log = logging.getLogger("cereal.bench.peers")

# CI clones the repository with a copy of shared/ beside it; BENCH_SHARED overrides (a worktree)
SHARED = Path(
    os.environ.get(
        "BENCH_SHARED", Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
    )
)
PGBENCH_DEFAULT = "/usr/lib/postgresql/15/bin/pgbench"


def _phases(command: list[str], dsn: str, timeout: float) -> dict[str, dict[str, Any]]:
    """Run a harness; its JSON phase lines by phase name."""
    log.info("$ %s", " ".join(command))
    done = subprocess.run(
        command,
        env={**os.environ, "BENCH_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[1]} exited {done.returncode}: {done.stderr[-2000:]}")
    out: dict[str, dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if isinstance(record, dict) and "phase" in record:
                out[record["phase"]] = record
    return out


def queue_peer(name: str, dsn: str, jobs: int, samples: int) -> dict[str, Any]:
    """pgqueuer or procrastinate: 2-process drain and idle-worker pickup latency."""
    harness = str(SHARED / "peers" / "harness.py")
    phases = _phases(
        [
            sys.executable,
            harness,
            name,
            "--phases",
            "drain,latency",
            "--n",
            str(jobs),
            "--procs",
            "2",
            "--samples",
            str(samples),
        ],
        dsn,
        timeout=900,
    )
    drain, latency = phases["drain"], phases["latency"]
    return {
        "drain_jobs_per_s": drain["jobs_per_s"],
        "pickup_p50_ms": latency["p50_ms"],
        "pickup_p95_ms": latency["p95_ms"],
        "pickup_p99_ms": latency["p99_ms"],
    }


def queue_drain(name: str, dsn: str, jobs: int, processes: int) -> float:
    """A queue peer's drain alone with ``processes`` worker processes: jobs/s."""
    harness = str(SHARED / "peers" / "harness.py")
    command = [sys.executable, harness, name, "--phases", "drain", "--n", str(jobs)]
    phases = _phases([*command, "--procs", str(processes)], dsn, timeout=900)
    return float(phases["drain"]["jobs_per_s"])


def dbos(dsn: str, workflows: int, samples: int) -> dict[str, Any]:
    """DBOS: single-step workflow throughput (with its commits per workflow) and latency."""
    harness = str(SHARED / "peers" / "workflow_harness.py")
    before = stores.xact_commit(dsn)
    thr = _phases(
        [sys.executable, harness, "dbos", "--phases", "wf_throughput", "--n", str(workflows)],
        dsn,
        timeout=900,
    )["wf_throughput"]
    # its processes have exited; the counter includes DBOS's setup and migration
    commits = stores.xact_commit(dsn) - before
    lat = _phases(
        [sys.executable, harness, "dbos", "--phases", "wf_latency", "--samples", str(samples)],
        dsn,
        timeout=900,
    )["wf_latency"]
    return {
        "workflows_per_s": thr["workflows_per_s"],
        "commits_per_workflow": round(commits / workflows, 2),
        "step_p50_ms": lat["step_p50_ms"],
        "step_p99_ms": lat["step_p99_ms"],
    }


def pgbench(dsn: str, seconds: int) -> dict[str, Any] | None:
    """pgbench's commit ceiling, or None when pgbench is not installed."""
    binary = shutil.which("pgbench") or PGBENCH_DEFAULT
    if not Path(binary).exists() or shutil.which("psql") is None:
        return None
    parts = urlsplit(dsn)
    env = {
        **os.environ,
        "PGBENCH": binary,
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": parts.username or "root",
        "PGDATABASE": stores.database_of(dsn),
    }
    script = str(SHARED / "pgbench" / "run_pgbench.sh")
    log.info("$ bash %s %d", script, seconds)
    done = subprocess.run(
        ["bash", script, str(seconds)], env=env, capture_output=True, text=True, check=True
    )
    tps: dict[str, float] = {}
    section = ""
    for line in done.stdout.splitlines():
        if line.startswith("== ("):
            section = line[4]
        elif line.startswith("tps = ") and section:
            tps[section] = round(float(line.split()[2]), 1)
    return {
        "tpcb_tps": tps.get("a"),
        "commits_per_s_8_clients": tps.get("b"),
        "commits_per_s_1_client": tps.get("d"),
        "commits_per_s_with_notify": tps.get("e"),
    }
