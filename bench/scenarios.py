"""Scenarios a-g of issue 8, run by the coordinator against one store (PostgreSQL or SQLite).

Each scenario gets a fresh database, starts real worker processes
(``bench.worker``) and reads the times the workflows stamped into their
payloads and results back from the store.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cereal
from bench import apps, procs, seed, stores
from bench.stores import PostgresStore, SqliteStore

log = logging.getLogger("cereal.bench")

Figures = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is (full and quick runs differ only here)."""

    drain_workflows: int
    drain_tasks: int
    single_workflows: int
    pickup_samples: int
    pickup_gap_s: float
    fanout_tasks: int
    backlog_small: int
    backlog_large: int
    backlog_window: int
    idle_seconds: float
    deadline_s: float


# (e) gives up when no task completes for this long
STALL_S = 60.0

FULL = Sizes(20, 1000, 5000, 200, 0.02, 10_000, 10_000, 1_000_000, 4000, 30.0, 900.0)
QUICK = Sizes(2, 100, 100, 20, 0.02, 1000, 500, 2000, 200, 2.0, 60.0)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (the peers' harness uses the same rule)."""
    ordered = sorted(values)
    rank = max(1, round(q / 100.0 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(values: list[float], prefix: str, qs: tuple[int, ...] = (50, 95, 99)) -> Figures:
    out: Figures = {f"{prefix}_p{q}_ms": round(percentile(values, q) * 1000, 2) for q in qs}
    out[f"{prefix}_mean_ms"] = round(statistics.fmean(values) * 1000, 2)
    return out


async def _wait_finished(client: cereal.Manager, workflow: str, deadline_s: float) -> None:
    """Poll (with a deadline) until no instance of ``workflow`` is running."""
    deadline = time.monotonic() + deadline_s
    while await client.list_workflow_instances(workflow_name=workflow, is_running=True):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workflow} instances still running after {deadline_s} s")
        await asyncio.sleep(0.2)


async def _results(client: cereal.Manager, workflow: str) -> list[Any]:
    rows = await client.list_workflow_instances(workflow_name=workflow)
    return [row.get_result() for row in rows]


async def _client(url: str) -> cereal.Manager:
    """An unstarted Manager for enqueuing and reading; creates the schema first."""
    client = cereal.Manager(cereal.open_driver(url))
    await client.list_workflow_instances(workflow_name=apps.SINGLE)
    return client


async def _commits(postgres_dsn: str | None) -> int:
    """The scenario database's commit counter (0 off PostgreSQL)."""
    return await asyncio.to_thread(stores.xact_commit, postgres_dsn) if postgres_dsn else 0


async def drain(
    url: str,
    sizes: Sizes,
    postgres_dsn: str | None = None,
    wrap: Callable[[int], list[str]] | None = None,
    processes: int = 2,
    keyed: tuple[int, int] | None = None,
) -> Figures:
    """(a) fan-out workflows x no-op tasks, ``processes`` worker processes x 8 task workers.

    Also the CPU the worker processes (and, on a local PostgreSQL, the server
    backends of the scenario's database) used per task from READY to the end,
    and on PostgreSQL the database's commits per second over the drain.
    ``wrap`` starts the workers under a profiler (``--profile``). ``keyed``
    as ``(keys, limit)`` gives every task a concurrency key (task i: key
    ``i % keys``) with that limit: the keyed drain, against the plain one.
    """
    parameters: dict[str, int] = {"count": sizes.drain_tasks}
    if keyed is not None:
        parameters.update(keys=keyed[0], limit=keyed[1])
    client = await _client(url)
    try:
        async with procs.workers(url, processes, task_workers=8, wrap=wrap) as workers:
            pids = [procs.python_pid(worker) for worker in workers]
            cpu0 = sum(procs.cpu_seconds(pid) for pid in pids)
            db0 = await asyncio.to_thread(stores.backend_cpu, postgres_dsn) if postgres_dsn else {}
            commits0 = (
                await asyncio.to_thread(stores.xact_commit, postgres_dsn) if postgres_dsn else 0
            )
            t0 = time.time()
            for i in range(sizes.drain_workflows):
                await client.enqueue_workflow(apps.FANOUT, f"d{i}", parameters)
            await _wait_finished(client, apps.FANOUT, sizes.deadline_s)
            cpu1 = sum(procs.cpu_seconds(pid) for pid in pids)
            db1 = await asyncio.to_thread(stores.backend_cpu, postgres_dsn) if postgres_dsn else {}
            commits1 = (
                await asyncio.to_thread(stores.xact_commit, postgres_dsn) if postgres_dsn else 0
            )
            t1 = time.time()
        end = max(r["t_done"] for r in await _results(client, apps.FANOUT))
    finally:
        await client.stop()
    tasks = sizes.drain_workflows * sizes.drain_tasks
    out: Figures = {
        "processes": processes,
        "tasks": tasks,
        "seconds": round(end - t0, 3),
        "tasks_per_s": round(tasks / (end - t0), 1),
        "worker_cpu_ms_per_task": round(1000.0 * (cpu1 - cpu0) / tasks, 3),
    }
    if postgres_dsn:
        # every commit of the scenario's database, idle polls included, over enqueue -> last seen
        out["commits_per_s"] = round((commits1 - commits0) / (t1 - t0), 1)
    if db1:
        # a backend that started mid-run counts from zero; one that ended is missed
        used = sum(cpu - db0.get(pid, 0.0) for pid, cpu in db1.items())
        out["db_cpu_ms_per_task"] = round(1000.0 * used / tasks, 3)
    return out


async def single(
    url: str, sizes: Sizes, postgres_dsn: str | None, keyed: tuple[int, int] | None = None
) -> Figures:
    """(b) single-task workflows: rate and start->complete latency; (g) commits per workflow.

    ``keyed`` (keys, limit): each run is enqueued under workflow concurrency key
    ``k{i % keys}`` with that limit: the keyed single-task rate, against the plain one.
    """
    client = await _client(url)
    n = sizes.single_workflows
    try:
        async with procs.workers(url, 2, task_workers=8):
            before = await stores.settled_xact_commit(postgres_dsn) if postgres_dsn else 0
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(n):
                queue.put_nowait(i)

            async def producer() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    options: dict[str, Any] = {}
                    if keyed is not None:
                        keys, limit = keyed
                        options = {"concurrency_key": f"k{i % keys}", "concurrency_limit": limit}
                    await client.enqueue_workflow(
                        apps.SINGLE, f"s{i}", {"t0": time.time()}, **options
                    )

            await asyncio.gather(*(producer() for _ in range(8)))
            await _wait_finished(client, apps.SINGLE, sizes.deadline_s)
        results = await _results(client, apps.SINGLE)
    finally:
        await client.stop()
    first = min(r["t0"] for r in results)
    last = max(r["t_done"] for r in results)
    out: Figures = {
        "workflows": n,
        "seconds": round(last - first, 3),
        "workflows_per_s": round(n / (last - first), 1),
        **_ms([r["t_done"] - r["t0"] for r in results], "complete", (50, 99)),
    }
    if postgres_dsn:
        # workers and client have exited, so every session has reported its commits
        after = await stores.settled_xact_commit(postgres_dsn)
        out["commits_per_workflow"] = round((after - before) / n, 2)
    return out


async def pickup(url: str, sizes: Sizes) -> Figures:
    """(c) an idle worker: enqueue_workflow -> on_start, and -> the task starts."""
    client = await _client(url)
    try:
        async with procs.workers(url, 1, task_workers=8):
            await client.enqueue_workflow(apps.PICKUP, "warm-up", {"t0": time.time()})
            await _wait_finished(client, apps.PICKUP, sizes.deadline_s)
            for i in range(sizes.pickup_samples):
                # paced like the peers' harness: one start call every gap
                await client.enqueue_workflow(apps.PICKUP, f"p{i}", {"t0": time.time()})
                await asyncio.sleep(sizes.pickup_gap_s)
            await _wait_finished(client, apps.PICKUP, sizes.deadline_s)
        rows = await client.list_workflow_instances(workflow_name=apps.PICKUP)
        results = [row.get_result() for row in rows if row.instance_name != "warm-up"]
    finally:
        await client.stop()
    return {
        "samples": len(results),
        **_ms([r["t_on_start"] - r["t0"] for r in results], "on_start"),
        **_ms([r["t_task"] - r["t0"] for r in results], "task_start"),
    }


async def fanout_commit(url: str, sizes: Sizes) -> Figures:
    """(d) one callback enqueuing many tasks: callback start -> decision visible (committed)."""
    client = await _client(url)
    try:
        async with procs.workers(url, 1, tasks=False):
            await client.enqueue_workflow(apps.FANOUT, "big", {"count": sizes.fanout_tasks})
            deadline = time.monotonic() + sizes.deadline_s
            while (await client.get_workflow_instance(apps.FANOUT, "big")).get_payload() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("the fan-out decision never committed")
                await asyncio.sleep(0.005)
            seen = time.time()
        payload = (await client.get_workflow_instance(apps.FANOUT, "big")).get_payload()
    finally:
        await client.stop()
    return {
        "tasks": sizes.fanout_tasks,
        "callback_s": round(payload["cb_end"] - payload["cb_start"], 3),
        "commit_s": round(seen - payload["cb_start"], 3),
    }


async def _done_count(client: cereal.Manager) -> int:
    rows = await client.list_workflow_instances(workflow_name=apps.FANOUT)
    return sum(int((row.get_payload() or {}).get("done", 0)) for row in rows)


async def _backlog_rate(
    store: PostgresStore | SqliteStore, scenario: str, queued: int, sizes: Sizes
) -> Figures:
    """Queue ``queued`` tasks on one instance, then time 2 workers over the first window.

    The two workers start their Managers together once both are READY: before,
    the first could drain the window (a quick run's whole small backlog) while
    the second still booted, and the drain then never reached the window.

    The engine makes the instance and its first ``backlog_window // 4`` tasks
    (a worker with no task executor runs ``on_start``); :mod:`bench.seed`
    copies one of them up to ``queued`` in one statement. The window is larger
    than the engine-made part, so the drain must claim copied rows too. The
    database is dropped straight after: a million rows need not wait for the end.
    """
    url = store.fresh(scenario)
    client = await _client(url)
    real = max(1, min(queued, sizes.backlog_window // 4))
    try:
        t_setup = time.time()
        async with procs.workers(url, 1, tasks=False):
            await client.enqueue_workflow(apps.FANOUT, "backlog", {"count": real})
            deadline = time.monotonic() + sizes.deadline_s
            while (
                await client.get_workflow_instance(apps.FANOUT, "backlog")
            ).get_payload() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("the backlog instance's on_start never committed")
                await asyncio.sleep(0.05)
        await asyncio.to_thread(seed.multiply_tasks, url, apps.FANOUT, "backlog", queued)
        setup_s = time.time() - t_setup
        # held until both are READY: one must not drain the window while the other boots;
        # timed from both Managers started (their start-up is not the drain's)
        async with procs.workers(url, 2, task_workers=8, hold=True) as workers:
            await procs.release(workers)
            start, t0 = await _done_count(client), time.monotonic()
            deadline = t0 + sizes.deadline_s
            last, moved = start, t0
            while (done := await _done_count(client)) < start + sizes.backlog_window:
                now = time.monotonic()
                if done != last:
                    last, moved = done, now
                if now > deadline or now - moved > STALL_S:
                    # e.g. a schema change left the seeded rows unclaimable
                    raise TimeoutError(
                        f"the backlog drain stalled at {done - start} of"
                        f" {sizes.backlog_window} completions ({done} of the {queued}"
                        " queued done in all)"
                    )
                await asyncio.sleep(0.1)
            seconds = time.monotonic() - t0
    finally:
        await client.stop()
        await asyncio.to_thread(store.drop, url)
    return {
        "queued": queued,
        "setup_s": round(setup_s, 1),
        "tasks_per_s": round((done - start) / seconds, 1),
    }


async def backlog(store: PostgresStore | SqliteStore, sizes: Sizes) -> Figures:
    """(e) drain rate with a large backlog queued vs a small one."""
    small = await _backlog_rate(store, "backlog_s", sizes.backlog_small, sizes)
    large = await _backlog_rate(store, "backlog_l", sizes.backlog_large, sizes)
    return {
        "small_queued": small["queued"],
        "small_tasks_per_s": small["tasks_per_s"],
        "small_setup_s": small["setup_s"],
        "large_queued": large["queued"],
        "large_tasks_per_s": large["tasks_per_s"],
        "large_setup_s": large["setup_s"],
        "large_vs_small": round(large["tasks_per_s"] / small["tasks_per_s"], 3),
    }


async def idle(url: str, sizes: Sizes) -> Figures:
    """(f) an idle Manager's CPU share of one core and its RSS."""
    await (await _client(url)).stop()
    async with procs.workers(url, 1, task_workers=8) as (worker,):
        cpu0, t0 = procs.cpu_seconds(worker.pid), time.monotonic()
        await asyncio.sleep(sizes.idle_seconds)  # the measuring window itself
        cpu1, t1 = procs.cpu_seconds(worker.pid), time.monotonic()
        rss = procs.rss_mb(worker.pid)
    return {
        "seconds": sizes.idle_seconds,
        "cpu_percent": round(100.0 * (cpu1 - cpu0) / (t1 - t0), 3),
        "rss_mb": round(rss, 1),
    }


async def run_all(store: PostgresStore | SqliteStore, sizes: Sizes) -> Figures:
    """Every scenario on one store; a failed scenario is reported, the rest still run."""
    steps: dict[str, Any] = {
        "drain": lambda: _drain(store, sizes),
        "drain_keyed": lambda: _drain(store, sizes, keyed=KEYED_DRAIN),
        "single": lambda: _single(store, sizes),
        "single_keyed": lambda: _single(store, sizes, keyed=KEYED_SINGLE),
        "pickup": lambda: pickup(store.fresh("pickup"), sizes),
        "fanout_commit": lambda: fanout_commit(store.fresh("fanout"), sizes),
        "backlog": lambda: backlog(store, sizes),
        "idle": lambda: idle(store.fresh("idle"), sizes),
    }
    out: Figures = {}
    for name, step in steps.items():
        log.info("%s: %s ...", store.kind, name)
        began = time.monotonic()
        try:
            out[name] = await step()
        except Exception as exc:  # one broken scenario must not hide the others' figures
            log.exception("%s: %s failed", store.kind, name)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        log.info("%s: %s took %.1f s: %s", store.kind, name, time.monotonic() - began, out[name])
    return out


# the keyed drain: 100 keys at most 4 running each, 400 slots for 16 task workers, so
# the limit never binds and the figure is the keyed claim's own cost
KEYED_DRAIN = (100, 4)


async def _drain(
    store: PostgresStore | SqliteStore, sizes: Sizes, keyed: tuple[int, int] | None = None
) -> Figures:
    url = store.fresh("drain_keyed" if keyed else "drain")
    postgres_dsn = url if isinstance(store, PostgresStore) else None
    return await drain(url, sizes, postgres_dsn, keyed=keyed)


async def _single(
    store: PostgresStore | SqliteStore, sizes: Sizes, keyed: tuple[int, int] | None = None
) -> Figures:
    url = store.fresh("single_keyed" if keyed else "single")
    # (g) is read from PostgreSQL's statistics of the scenario's own database
    postgres_dsn = url if isinstance(store, PostgresStore) else None
    return await single(url, sizes, postgres_dsn, keyed=keyed)


# the keyed single-task workflows: 100 workflow concurrency keys at most 4 started each;
# the enqueues outrun the workers, so most runs wait and every finish starts the next
KEYED_SINGLE = (100, 4)
