"""The bench itself: every scenario on PostgreSQL and SQLite, the peers, the report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import (
    delayed_claim,
    grpc_column,
    peers,
    profiling,
    report,
    scale_out,
    scenarios,
    stores,
)
from cereal import event_loop as cereal_event_loop

log = logging.getLogger("cereal.bench")

RESULTS = Path(__file__).resolve().parent / "results"
PGBENCH_SECONDS = 5  # per pgbench phase; the script runs about 5.5 times this


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _measure(store: stores.PostgresStore | stores.SqliteStore, sizes: scenarios.Sizes) -> Any:
    try:
        return await scenarios.run_all(store, sizes)
    finally:
        store.cleanup()


async def _measure_grpc(store: stores.PostgresStore, sizes: scenarios.Sizes) -> Any:
    try:
        return await grpc_column.run_all(store, sizes)
    finally:
        store.cleanup()


def _peer(result: dict[str, Any], name: str, call: Any) -> None:
    log.info("peer %s ...", name)
    try:
        result["peers"][name] = call()
    except Exception as exc:  # a broken peer must not hide our figures
        log.exception("peer %s failed", name)
        result["errors"].append(f"peer {name}: {type(exc).__name__}: {exc}")
    log.info("peer %s: %s", name, result["peers"][name])


def _scale_out(result: dict[str, Any], dsn: str, sizes: scenarios.Sizes) -> None:
    store = stores.PostgresStore(dsn)
    try:
        result["scale_out"] = asyncio.run(scale_out.run(store, sizes))
    finally:
        store.cleanup()
    for count, figures in result["scale_out"].items():
        if "error" in figures:
            result["errors"].append(f"scale_out {count}: {figures['error']}")
    jobs = sizes.drain_workflows * sizes.drain_tasks
    _peer(result, "pgqueuer_scale", lambda: scale_out.peer(dsn, jobs))


def run(args: argparse.Namespace) -> int:
    """Run everything; print the table and, last, the JSON line. Exit 1 if anything failed."""
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s", stream=sys.stderr)
    logging.getLogger("cereal.drivers").setLevel(logging.WARNING)
    if args.profile:
        return profiling.run(args, RESULTS)
    if args.scenario == "delayed_claim":
        delayed_claim.run(os.environ.get("BENCH_DSN", stores.DEFAULT_DSN), args.only)
        return 0
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    if args.large is not None:
        sizes = dataclasses.replace(sizes, backlog_large=args.large)
    dsn = os.environ.get("BENCH_DSN", stores.DEFAULT_DSN)
    result: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sizes": dataclasses.asdict(sizes),
        # the loop every worker process and `cereal serve` run on (same venv, same env)
        "event_loop": cereal_event_loop.chosen_loop(),
        "postgres": {},
        "sqlite": {},
        "peers": {
            "pgqueuer": None,
            "procrastinate": None,
            "dbos": None,
            "pgbench": None,
            "pgqueuer_scale": None,
        },
        "errors": [],
    }
    began = time.monotonic()
    if args.only in (None, "postgres"):
        try:
            pg = stores.PostgresStore(dsn)
            pg.ensure_bench_database()
            result["postgres"] = asyncio.run(_measure(pg, sizes))
        except Exception as exc:  # no server: still run SQLite and report why
            log.exception("PostgreSQL unavailable")
            result["errors"].append(f"postgres: {type(exc).__name__}: {exc}")
    with_grpc = (not args.quick or args.grpc) and args.only != "sqlite" and result["postgres"]
    if with_grpc:
        try:
            result["grpc"] = asyncio.run(_measure_grpc(stores.PostgresStore(dsn), sizes))
        except Exception as exc:  # no grpc extra: still report the rest
            log.exception("grpc column failed")
            result["errors"].append(f"grpc: {type(exc).__name__}: {exc}")
        result["grpc_ratios"] = grpc_column.ratios(result)
    if args.only in (None, "sqlite"):
        result["sqlite"] = asyncio.run(_measure(stores.SqliteStore(), sizes))
    for kind in ("postgres", "sqlite", "grpc"):
        for name, figures in result.get(kind, {}).items():
            if "error" in figures:
                result["errors"].append(f"{kind} {name}: {figures['error']}")
    if not args.quick and not args.no_peers and args.only != "sqlite":
        jobs = sizes.drain_workflows * sizes.drain_tasks
        samples = sizes.pickup_samples
        _peer(result, "pgqueuer", lambda: peers.queue_peer("pgqueuer", dsn, jobs, samples))
        _peer(
            result, "procrastinate", lambda: peers.queue_peer("procrastinate", dsn, jobs, samples)
        )
        _peer(result, "dbos", lambda: peers.dbos(dsn, sizes.single_workflows, samples))
        _peer(result, "pgbench", lambda: peers.pgbench(dsn, PGBENCH_SECONDS))
        if result["postgres"]:  # (h): more worker processes, ours and pgqueuer's
            _scale_out(result, dsn, sizes)
    if not args.quick:  # a claim behind 200 000 delayed tasks, on each store (issue 17)
        try:
            result["delayed_claim"] = delayed_claim.run(dsn, args.only)
        except Exception as exc:
            log.exception("delayed_claim failed")
            result["errors"].append(f"delayed_claim: {type(exc).__name__}: {exc}")
    result["seconds"] = round(time.monotonic() - began, 1)
    report.evaluate(result)
    md, png = report.write(result, RESULTS)
    _say(report.table(result))
    if "grpc" in result:
        _say("")
        _say(grpc_column.table(result))
    if "scale_out" in result:
        _say("")
        _say(scale_out.table(result))
    if sizes.backlog_large < 1_000_000:
        _say(f"note: (e) used a large backlog of {sizes.backlog_large} tasks, not 1 000 000")
    _say(f"written: {md}" + (f", {png}" if png else " (no chart: matplotlib is not installed)"))
    for error in result["errors"]:
        _say(f"ERROR: {error}")
    _say(report.json_line(result))
    return 1 if result["errors"] else 0
