"""In-process micro-measurements used while optimising (one Python process, PostgreSQL).

    python3 bench/micro.py drain [--workflows 4] [--tasks 2000]
    python3 bench/micro.py single [--workflows 1000] [--managers 1] [--workflow-workers 1]
    python3 bench/micro.py threads [--jobs 20000]

``drain``: fan-out workflows of no-op tasks, every completion through
``on_task_complete``, one Manager with 8 task workers: tasks/s and the
process's CPU seconds per task. ``single``: single-task workflows enqueued
at once: workflows/s and commits per workflow (``pg_stat_database``
``xact_commit`` delta, settled). ``threads``: no storage at all, only how a
plain task executor is started on a thread and its outcome brought back to
the loop (8 at a time): jobs/s and CPU per job. Both use a throwaway database
``cereal_micro`` on ``CEREAL_BENCH_DSN`` (default the local server). Quicker
than ``bench/run.py`` for before/after comparisons of one change; run each
twice, the machine is shared. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import psycopg

import cereal
from cereal.drivers.postgres import PostgresDriver

SERVER = os.environ.get("CEREAL_BENCH_DSN", "postgresql://postgres@127.0.0.1/postgres")
DB = "cereal_micro"


def _fresh_database() -> str:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")  # fixed name, no input
        conn.execute(f"CREATE DATABASE {DB}")
    return psycopg.conninfo.make_conninfo(SERVER, dbname=DB)


def _commits(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


class FanOut:
    """Enqueues ``count`` no-op tasks; completes when all are done."""

    def __init__(self, finished: set[str]) -> None:
        self.finished = finished

    async def on_start(self, w: cereal.WorkflowInstance, ev: object) -> cereal.Decision:
        for _ in range(w.get_parameters()):
            w.enqueue_task("noop")
        return w.continue_()

    async def on_task_complete(self, w: cereal.WorkflowInstance, ev: object) -> cereal.Decision:
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            self.finished.add(w.instance_name)
            return w.complete()
        return w.continue_()

    async def on_cancel(self, w: cereal.WorkflowInstance, ev: object) -> cereal.Decision:
        return w.fail("cancelled")


class Single:
    """One task, then complete (plain callbacks, as most users write them)."""

    def __init__(self, finished: set[str]) -> None:
        self.finished = finished

    def on_start(self, w: cereal.WorkflowInstance, ev: object) -> cereal.Decision:
        w.enqueue_task("noop")
        return w.continue_()

    def on_task_complete(self, w: cereal.WorkflowInstance, ev: object) -> cereal.Decision:
        self.finished.add(w.instance_name)
        return w.complete()

    def on_cancel(self, w: cereal.WorkflowInstance, ev: object) -> cereal.Decision:
        return w.fail("cancelled")


async def noop(task: cereal.Task) -> None:
    """A task that does nothing."""


def _manager(dsn: str, executor: Any, workflow: str, workflow_workers: int = 1) -> cereal.Manager:
    manager = cereal.Manager(PostgresDriver(dsn), workflow_workers=workflow_workers)
    manager.register_workflow_executor(workflow, executor)
    manager.register_task_executor("noop", noop, workers=8)
    return manager


async def drain(workflows: int, tasks: int) -> None:
    dsn = _fresh_database()
    finished: set[str] = set()
    async with _manager(dsn, FanOut(finished), "fan") as manager:
        await asyncio.sleep(0.3)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for i in range(workflows):
            await manager.enqueue_workflow("fan", str(i), tasks)
        while len(finished) < workflows:
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    total = workflows * tasks
    print(
        f"drain {workflows}x{tasks}: {total / seconds:.0f} tasks/s, "
        f"{cpu / total * 1e3:.3f} ms CPU per task in this process"
    )


async def single(workflows: int, managers: int, workflow_workers: int) -> None:
    dsn = _fresh_database()
    finished: set[str] = set()
    workers = [_manager(dsn, Single(finished), "single", workflow_workers) for _ in range(managers)]
    client = cereal.Manager(PostgresDriver(dsn))
    for worker in workers:
        await worker.start()
    await asyncio.sleep(1.5)  # statistics settle
    before = _commits(dsn)
    t0 = time.perf_counter()
    await asyncio.gather(*(client.enqueue_workflow("single", str(i)) for i in range(workflows)))
    while len(finished) < workflows:
        await asyncio.sleep(0.002)
    seconds = time.perf_counter() - t0
    await asyncio.sleep(1.5)
    after = _commits(dsn)
    for worker in workers:
        await worker.stop()
    await client.stop()
    print(
        f"single x{workflows}, {managers} manager(s), workflow_workers={workflow_workers}: "
        f"{workflows / seconds:.0f} workflows/s, {(after - before) / workflows:.2f} commits each"
    )


async def threads(jobs: int) -> None:
    from cereal.executors import start_in_thread

    slots = asyncio.Semaphore(8)

    async def one() -> None:
        async with slots:
            await start_in_thread(lambda task: None, None, name="micro", on_exit=lambda: None)  # type: ignore[arg-type]

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"threads x{jobs}: {jobs / seconds:.0f} jobs/s, {cpu / jobs * 1e6:.1f} us CPU per job")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("drain")
    d.add_argument("--workflows", type=int, default=4)
    d.add_argument("--tasks", type=int, default=2000)
    s = sub.add_parser("single")
    s.add_argument("--workflows", type=int, default=1000)
    s.add_argument("--managers", type=int, default=1)
    s.add_argument("--workflow-workers", type=int, default=1)
    t = sub.add_parser("threads")
    t.add_argument("--jobs", type=int, default=20000)
    args = parser.parse_args()
    if args.what == "threads":
        asyncio.run(threads(args.jobs))
    elif args.what == "drain":
        asyncio.run(drain(args.workflows, args.tasks))
    else:
        asyncio.run(single(args.workflows, args.managers, args.workflow_workers))


if __name__ == "__main__":
    main()
