"""The crash suite: real crashes over thousands of workflows, then a count of what went wrong.

A private PostgreSQL cluster (``initdb``/``pg_ctl``), one ``cereal serve``
process over it, and worker processes: even-numbered ones on PostgreSQL
directly, odd-numbered ones through ``grpc://`` to the server. Each round
enqueues a wave of ``crash`` workflows (see :mod:`bench.crash_worker`) and
then does one of, in an order the seed shuffles:

- ``kill-task``: SIGKILL a worker while its gauge shows a task running;
- ``kill-decision``: SIGKILL a worker while its gauge shows a decision running;
- ``restart-postgres``: ``pg_ctl restart -m immediate`` (a server crash, WAL recovery);
- ``restart-serve``: SIGKILL ``cereal serve`` and start it again on its port.

A killed worker is replaced at once. After the last round the suite waits for
the store to settle (every run finished, or no progress for ``--settle`` s)
and reads it back: a workflow is **lost** when the store has no trace of it or
it failed, a task result is **applied twice** when a run's applied list holds
an index twice (or a name ran twice), and an instance is **stuck** when it is
still live. The exit status is 0 only when all three are 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from bench.crash_worker import GAUGE_FORMAT, GAUGE_SIZE, WORKFLOW
from bench.pg_cluster import ThrowawayCluster, find_binaries, free_port
from cereal import Manager, errors, open_driver
from cereal.models import MAX_RETENTION_ROWS

REPO = Path(__file__).resolve().parent.parent
ACTIONS = ("kill-task", "kill-decision", "restart-postgres", "restart-serve")
READY_TIMEOUT_S = 60.0
IN_FLIGHT_WAIT_S = 10.0  # how long a kill waits for its kind of work to be in flight


@dataclass
class Plan:
    """What one run of the suite does."""

    rounds: int
    workflows: int
    tasks: int
    workers: int
    seed: int
    settle: float


@dataclass
class Report:
    """What the suite saw; the three guarantees first."""

    workflows_lost: int = 0
    results_applied_twice: int = 0
    stuck_instances: int = 0
    rounds: int = 0
    seed: int = 0
    workflows: int = 0
    tasks_per_workflow: int = 0
    worker_processes: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    kills_in_flight: dict[str, int] = field(default_factory=dict)
    workflows_completed: int = 0
    workflows_failed: int = 0
    steps_reenqueued_by_workflows: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every guarantee held."""
        return self.workflows_lost == self.results_applied_twice == self.stuck_instances == 0


class Process:
    """A child process with its log file; the suite kills it with SIGKILL."""

    def __init__(self, command: list[str], log: Path, *, stdin: bool = False) -> None:
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                command,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdin else sink,
                stderr=sink,
            )
        self.log = log

    def kill(self) -> None:
        """SIGKILL, then reap."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        """Close stdin (a worker's stop signal) or SIGTERM; SIGKILL what does not stop."""
        if self.popen.poll() is not None:
            return
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        else:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


class Worker(Process):
    """A ``bench.crash_worker`` process and its in-flight gauge."""

    def __init__(self, url: str, gauge: Path, log: Path) -> None:
        super().__init__(
            [sys.executable, "-m", "bench.crash_worker", url, str(gauge)], log, stdin=True
        )
        self.gauge = gauge
        self._await_ready()

    def _await_ready(self) -> None:
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], READY_TIMEOUT_S)
        line = self.popen.stdout.readline().decode() if ready else ""
        if not line.startswith("READY"):
            self.kill()
            raise RuntimeError(f"a crash worker did not start; see {self.log}")

    def in_flight(self) -> tuple[int, int]:
        """(tasks, decisions) running in the process right now."""
        data = self.gauge.read_bytes()
        if len(data) < GAUGE_SIZE:
            return 0, 0
        tasks, decisions = struct.unpack(GAUGE_FORMAT, data[:GAUGE_SIZE])
        return tasks, decisions


class Serve(Process):
    """``cereal serve`` on a fixed port, waited for until it answers."""

    def __init__(self, dsn: str, port: int, log: Path) -> None:
        command = [sys.executable, "-m", "cereal", "--db", dsn, "serve", "--port", str(port)]
        # the server's own sweeps keep every finished run too (see crash_worker.KEEP_EVERY_RUN)
        keep = ["--max-rows", str(MAX_RETENTION_ROWS), "--margin-rows", "0"]
        super().__init__([*command, "--task-expiry", "2", *keep], log)
        self.port = port
        self._await_serving()

    def _await_serving(self) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        import grpc

        deadline = time.monotonic() + READY_TIMEOUT_S
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    break
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"cereal serve did not start; see {self.log}")


class Fleet:
    """The server, the workers and the cluster they share."""

    def __init__(self, cluster: ThrowawayCluster, dsn: str, workers: int, scratch: Path) -> None:
        self.cluster, self.dsn, self.scratch = cluster, dsn, scratch
        self.serve_port = free_port()
        self.serve = Serve(dsn, self.serve_port, scratch / "serve.log")
        self.workers = [self._start_worker(index) for index in range(workers)]

    def _start_worker(self, index: int) -> Worker:
        url = self.dsn if index % 2 == 0 else f"grpc://127.0.0.1:{self.serve_port}"
        return Worker(url, self.scratch / f"worker-{index}.gauge", self.scratch / "workers.log")

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` and start its replacement."""
        self.workers[index].kill()
        self.workers[index] = self._start_worker(index)

    def restart_serve(self) -> None:
        """SIGKILL the server and start it again on the same port."""
        self.serve.kill()
        self.serve = Serve(self.dsn, self.serve_port, self.scratch / "serve.log")

    def stop(self) -> None:
        """Stop every worker, then the server."""
        for worker in self.workers:
            worker.stop()
        self.serve.stop()


def kill_in_flight(fleet: Fleet, rng: random.Random, slot: int) -> bool:
    """Kill a worker running work of kind ``slot`` (0 task, 1 decision); False if none ran.

    Without such a worker within the wait, a random worker is killed anyway.
    """
    deadline = time.monotonic() + IN_FLIGHT_WAIT_S
    while time.monotonic() < deadline:
        busy = [i for i, w in enumerate(fleet.workers) if w.in_flight()[slot] > 0]
        if busy:
            fleet.kill_worker(rng.choice(busy))
            return True
        time.sleep(0.001)
    fleet.kill_worker(rng.randrange(len(fleet.workers)))
    return False


def action_order(rounds: int, rng: random.Random) -> list[str]:
    """Every action equally often, each block of four in a seeded order."""
    order: list[str] = []
    while len(order) < rounds:
        block = list(ACTIONS)
        rng.shuffle(block)
        order.extend(block)
    return order[:rounds]


async def enqueue_wave(manager: Manager, names: list[str], tasks: int) -> None:
    """Enqueue runs named ``names``; a call that failed is retried unless its run exists."""
    for name in names:
        while True:
            try:
                await manager.enqueue_workflow(WORKFLOW, name, {"tasks": tasks})
                break
            except errors.WorkflowInstanceExistsError:
                break
            except errors.DriverError:
                # PostgreSQL restarting: the write may have committed before the error
                await asyncio.sleep(0.2)
                if await _exists(manager, name):
                    break


async def _exists(manager: Manager, name: str) -> bool:
    try:
        await manager.get_workflow_instance(WORKFLOW, name)
    except errors.WorkflowInstanceNotFoundError:
        return False
    except errors.DriverError:
        await asyncio.sleep(0.2)
        return await _exists(manager, name)
    return True


def live_count(dsn: str) -> tuple[int, int]:
    """(live runs, finished runs) of the suite's workflow."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM cereal_workflow_instances WHERE workflow_name = %s),"
            " (SELECT count(*) FROM cereal_workflow_results WHERE workflow_name = %s)",
            (WORKFLOW, WORKFLOW),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def settle(dsn: str, quiet_for: float) -> None:
    """Wait until no run is live, or finished runs stop growing for ``quiet_for`` s."""
    last, since = -1, time.monotonic()
    while True:
        try:
            live, finished = live_count(dsn)
        except psycopg.OperationalError:
            live, finished = 1, last
        if live == 0:
            return
        if finished != last:
            last, since = finished, time.monotonic()
        elif time.monotonic() - since > quiet_for:
            return
        time.sleep(0.5)


async def read_back(manager: Manager, dsn: str, names: list[str], report: Report) -> None:
    """Count lost, doubled and stuck runs from what the store holds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        runs = Counter(
            name
            for (name,) in conn.execute(
                "SELECT instance_name FROM cereal_workflow_results WHERE workflow_name = %s",
                (WORKFLOW,),
            )
        )
    instances = {
        entry.instance_name: entry
        for entry in await manager.list_workflow_instances(workflow_name=WORKFLOW)
    }
    for name in names:
        entry = instances.get(name)
        report.results_applied_twice += max(0, runs[name] - 1)
        if entry is None:
            report.workflows_lost += 1
        elif entry.status.value in ("starting", "running"):
            report.stuck_instances += 1
        elif entry.err is not None:
            report.workflows_failed += 1
            report.workflows_lost += 1
        else:
            state = entry.get_result()
            applied: list[int] = state["applied"]
            report.results_applied_twice += len(applied) - len(set(applied))
            report.steps_reenqueued_by_workflows += state["reenqueued"]
            report.workflows_completed += 1


async def run_suite(plan: Plan, fleet: Fleet, report: Report) -> None:
    """Enqueue in waves, crash something each round, settle, read back."""
    rng = random.Random(plan.seed)
    manager = Manager(open_driver(fleet.dsn))
    names = [f"run-{plan.seed}-{i:06d}" for i in range(plan.workflows)]
    waves = [names[i :: plan.rounds] for i in range(plan.rounds)]
    try:
        for wave, action in zip(waves, action_order(plan.rounds, rng), strict=True):
            await enqueue_wave(manager, wave, plan.tasks)
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # let the wave get going
            report.actions[action] = report.actions.get(action, 0) + 1
            if action == "kill-task":
                hit = await asyncio.to_thread(kill_in_flight, fleet, rng, 0)
                report.kills_in_flight["task"] = report.kills_in_flight.get("task", 0) + hit
            elif action == "kill-decision":
                hit = await asyncio.to_thread(kill_in_flight, fleet, rng, 1)
                report.kills_in_flight["decision"] = report.kills_in_flight.get("decision", 0) + hit
            elif action == "restart-postgres":
                await asyncio.to_thread(fleet.cluster.crash_restart)
            else:
                await asyncio.to_thread(fleet.restart_serve)
            report.rounds += 1
        await asyncio.to_thread(settle, fleet.dsn, plan.settle)
        await read_back(manager, fleet.dsn, names, report)
    finally:
        await manager.driver.close()


async def _prepare_database(dsn: str) -> None:
    driver = open_driver(dsn)
    try:
        await driver.migrate()  # type: ignore[attr-defined]
    finally:
        await driver.close()


def run(plan: Plan) -> Report:
    """Run the suite once; returns its report (the cluster and processes are cleaned up)."""
    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError("the crash suite needs initdb and pg_ctl (PostgreSQL server binaries)")
    report = Report(
        seed=plan.seed,
        workflows=plan.workflows,
        tasks_per_workflow=plan.tasks,
        worker_processes=plan.workers,
    )
    started = time.monotonic()
    cluster = ThrowawayCluster(*binaries)
    try:
        with psycopg.connect(cluster.dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE cereal_crash")
        dsn = cluster.dsn.rsplit("/", 1)[0] + "/cereal_crash"
        asyncio.run(_prepare_database(dsn))
        with tempfile.TemporaryDirectory(prefix="cereal-crash-") as scratch:
            fleet = Fleet(cluster, dsn, plan.workers, Path(scratch))
            try:
                asyncio.run(run_suite(plan, fleet, report))
            finally:
                fleet.stop()
    finally:
        cluster.stop()
    report.elapsed_s = round(time.monotonic() - started, 1)
    return report


def render(report: Report) -> str:
    """The report as the lines the README quotes."""
    actions = ", ".join(f"{report.actions.get(a, 0)} {a}" for a in ACTIONS)
    hits = report.kills_in_flight
    return "\n".join(
        [
            f"crash suite: seed {report.seed}, {report.rounds} rounds ({actions})",
            f"  {report.workflows} workflows x {report.tasks_per_workflow} tasks,"
            f" {report.worker_processes} worker processes (half through cereal serve)",
            f"  kills with work in flight: {hits.get('task', 0)} mid-task,"
            f" {hits.get('decision', 0)} mid-decision",
            f"workflows lost: {report.workflows_lost}",
            f"task results applied twice: {report.results_applied_twice}",
            f"stuck instances: {report.stuck_instances}",
            f"  completed {report.workflows_completed}, failed {report.workflows_failed},"
            f" steps re-enqueued after a lost result {report.steps_reenqueued_by_workflows},"
            f" {report.elapsed_s} s",
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=12, help="crash rounds (default 12)")
    parser.add_argument("--workflows", type=int, default=3000, help="runs in all (default 3000)")
    parser.add_argument("--tasks", type=int, default=3, help="tasks per run (default 3)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock")
    parser.add_argument(
        "--settle", type=float, default=60.0, help="give up after this long without progress"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    for name in ("rounds", "workflows", "tasks", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.workflows < args.rounds:
        parser.error("--workflows must be at least --rounds (one wave per round)")
    if args.workers < 2:
        parser.error("--workers must be at least 2 (one direct, one through cereal serve)")
    return args


def main(argv: list[str]) -> int:
    """Run the suite from the command line; exit status 0 when nothing was lost or doubled."""
    args = parse_args(argv)
    # reconnects during the crashes are expected: only errors are worth a line
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    seed = args.seed if args.seed is not None else int(time.time())
    plan = Plan(args.rounds, args.workflows, args.tasks, args.workers, seed, args.settle)
    report = run(plan)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        print(render(report))
    return 0 if report.ok else 1
