"""PostgreSQL at scale and under outages, with real worker processes.

- four workers drain 200 workflows x 100 tasks: every task completed, every
  completion seen exactly once, every result right;
- every backend terminated (``pg_terminate_backend``) repeatedly mid-run:
  every workflow still finishes, nothing lost or doubled.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cereal import Manager
from cereal.drivers.postgres import PostgresDriver
from tests.plugins.manager import eventually

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


class Workers:
    """Worker processes of tests.system.worker_app, stopped with SIGTERM at the end."""

    def __init__(self, dsn: str, record: Path) -> None:
        self.dsn = dsn
        self.record = record
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, count: int, **env: str) -> None:
        for _ in range(count):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.system.worker_app", self.dsn, str(self.record)],
                    cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO), **env},
                )
            )

    async def ready(self) -> None:
        await eventually(
            lambda: all((self.record / f"{p.pid}.ready").exists() for p in self.processes),
            timeout=60,
            what="workers ready",
        )

    def executions(self) -> list[int]:
        return [
            int(line)
            for p in self.processes
            if (self.record / f"{p.pid}.ran").exists()
            for line in (self.record / f"{p.pid}.ran").read_text().split()
        ]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                assert process.wait(timeout=30) == 0, "a worker did not stop cleanly"
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise


@pytest.fixture
def workers(postgres_dsn: str, tmp_path: Path) -> Iterator[Workers]:
    record = tmp_path / "records"
    record.mkdir()
    pool = Workers(postgres_dsn, record)
    yield pool
    pool.stop()


async def _all_finished(client: Manager, workflows: int) -> bool:
    finished = await client.list_workflow_instances(workflow_name="fan-out", is_running=False)
    return len(finished) == workflows


def _expected(count: int) -> dict[str, int]:
    return {"sum": sum(i * i for i in range(count)), "completions": count, "distinct": count}


async def test_four_workers_drain_200_workflows_of_100_tasks(
    postgres_dsn: str, workers: Workers
) -> None:
    # Given four worker processes
    workers.spawn(4, CEREAL_TEST_WORKFLOW_WORKERS="4")
    await workers.ready()
    client = Manager(PostgresDriver(postgres_dsn))

    # When 200 workflows of 100 tasks each are enqueued
    for number in range(200):
        await client.enqueue_workflow("fan-out", f"batch-{number}", {"count": 100})
    await eventually(lambda: _all_finished(client, 200), timeout=600, what="200 workflows")

    # Then every workflow's result is right: each completion seen exactly once
    for data in await client.list_workflow_instances(workflow_name="fan-out"):
        assert data.get_result() == _expected(100), data.instance_name
    # and every task ran (at least once: a retried task would show in "retried")
    assert len(workers.executions()) >= 200 * 100
    await client.stop()


async def test_terminating_every_backend_mid_run_loses_and_doubles_nothing(
    postgres_dsn: str, workers: Workers
) -> None:
    # Given two workers draining 40 workflows of 50 tasks
    workers.spawn(2)
    await workers.ready()
    client = Manager(PostgresDriver(postgres_dsn))
    for number in range(40):
        await client.enqueue_workflow("fan-out", f"outage-{number}", {"count": 50})

    # When every other backend of this database is terminated, five times during the run:
    # each time once the workers have run more tasks since the last (progress, not a sleep),
    # while most of the 2000 tasks are still to run
    total = 40 * 50
    terminated = 0
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
        for round_number in range(1, 6):
            ran = round_number * 100

            def progressed(ran: int = ran) -> bool:
                return len(workers.executions()) >= ran

            await eventually(
                progressed,
                timeout=120,
                what=f"{ran} task executions before termination {round_number}",
            )
            assert len(workers.executions()) < total, "the run ended before the outage"
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            row = await cursor.fetchone()
            terminated += int(row[0]) if row else 0
    assert terminated > 0

    # Then every workflow still finishes with the right result (no completion lost or doubled)
    await eventually(lambda: _all_finished(client, 40), timeout=300, what="40 workflows")
    for data in await client.list_workflow_instances(workflow_name="fan-out"):
        assert data.get_result() == _expected(50), data.instance_name
    await client.stop()
