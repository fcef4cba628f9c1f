#!/usr/bin/env python3
"""Time each dashboard page over a million finished runs: ``python3 bench/dashboard_pages.py``.

For each store (PostgreSQL beside ``BENCH_DSN``, default
``postgresql://root@127.0.0.1:5432/bench``; SQLite in a temp dir):

1. **Fill**: ``--runs`` finished runs (default 1 000 000) over ten workflow
   names, ending evenly over the last ``--days`` days (default 30), one in
   twenty failed, each with two rows of event history, written straight into
   the tables (as :mod:`bench.retention_bench` fills them); then
   ``VACUUM ANALYZE`` on PostgreSQL (autovacuum's work, done at once).
2. **Pages**: the dashboard in real uvicorn over the store; each page is
   fetched once to warm up, then ``--requests`` times (default 10), one at a
   time; prints the p50 and max in ms per page.

Prints one JSON object per store. ``--days 1`` puts every run inside the
24-hour chart's window: the throughput query's worst case at this size.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import project_venv  # standard library only: runs before the project imports

DAY = 86400.0
PAGES = [
    "/instances",
    "/instances?window=day",
    "/instances?window=week",
    "/instances?status=finished",
    "/instances?workflow=wf3&offset=100",
    "/tasks",
    "/dead-letters",
    "/schedules",
    "/workers",
]


def fill(kind: str, url: str, path: Path | None, runs: int, days: float) -> tuple[float, str]:
    """Fill the store with finished runs, one in twenty failed.

    Returns the seconds taken and the instance page of a failed run in the middle.
    """
    import psycopg

    from bench.retention_bench import fill_postgres, fill_sqlite

    began = time.perf_counter()
    span = days * DAY - 60
    start = time.time() - days * DAY
    fail = "UPDATE cereal_workflow_results SET error = 'boom', error_type = 'RuntimeError'"
    middle = (
        "SELECT workflow_name, instance_name FROM cereal_workflow_results"
        f" WHERE id = {runs // 40 * 20}"
    )
    if kind == "postgres":
        fill_postgres(url, 0, runs, start, span)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(fail + " WHERE id % 20 = 0")
            conn.execute("VACUUM ANALYZE cereal_workflow_results, cereal_event_history")
            row = conn.execute(middle).fetchone()
    else:
        import sqlite3

        assert path is not None
        fill_sqlite(path, 0, runs, start, span)
        with sqlite3.connect(path) as conn:
            conn.execute(fail + " WHERE id % 20 = 0")
            row = conn.execute(middle).fetchone()
    assert row is not None, "no run in the middle"
    workflow, instance = row
    return round(time.perf_counter() - began, 1), f"/instances/{workflow}/{instance}"


def serve(url: str) -> tuple[str, Any, threading.Thread]:
    """The dashboard over the store in real uvicorn on a free port: (base URL, server, thread)."""
    import uvicorn

    from cereal import Manager, open_driver
    from cereal.dashboard import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(Manager(open_driver(url)))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def time_pages(base: str, pages: list[str], requests: int) -> dict[str, dict[str, float]]:
    """Per page: p50 and max milliseconds over ``requests`` sequential GETs after one warm-up."""
    figures = {}
    for page in pages:
        samples = []
        for attempt in range(requests + 1):
            began = time.perf_counter()
            with urllib.request.urlopen(base + page, timeout=120) as response:
                response.read()
                assert response.status == 200, (page, response.status)
            if attempt:
                samples.append(time.perf_counter() - began)
        figures[page] = {
            "p50_ms": round(statistics.median(samples) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1),
        }
    return figures


def run_store(kind: str, runs: int, days: float, requests: int, scratch: Path) -> dict[str, Any]:
    """Fill one store and time its pages."""
    import asyncio

    from bench.retention_bench import migrate
    from bench.stores import DEFAULT_DSN, PostgresStore

    pg = None
    path = None
    if kind == "postgres":
        import os

        pg = PostgresStore(os.environ.get("BENCH_DSN", DEFAULT_DSN))
        pg.ensure_bench_database()
        url = pg.fresh("dashboard")
    else:
        path = scratch / "dashboard.db"
        url = f"sqlite:///{path}"
    try:
        asyncio.run(migrate(url))
        report: dict[str, Any] = {"store": kind, "runs": runs, "days": days}
        report["fill_s"], run_page = fill(kind, url, path, runs, days)
        base, server, thread = serve(url)
        try:
            report["pages"] = time_pages(base, [*PAGES, run_page], requests)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
        return report
    finally:
        if pg is not None:
            pg.cleanup()


def main() -> None:
    """``[--runs N] [--days D] [--requests R] [--only STORE]``."""
    project_venv.ensure(__file__, ("cereal", "psycopg", "uvicorn"))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--only", choices=("postgres", "sqlite"), default=None)
    args = parser.parse_args()
    if args.runs < 100 or args.requests < 1 or not 0 < args.days <= 365:
        parser.error("--runs must be at least 100, --requests at least 1, --days from 0 to 365")
    stores = [args.only] if args.only else ["postgres", "sqlite"]
    with tempfile.TemporaryDirectory(prefix="cereal-dashboard-") as scratch:
        for kind in stores:
            report = run_store(kind, args.runs, args.days, args.requests, Path(scratch))
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
