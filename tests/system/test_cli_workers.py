"""``cereal workers list`` and the enqueue warning, run as real subprocesses.

The live worker is a Manager started in this test process on the same SQLite
file; the CLI runs in a thread, so the Manager keeps heartbeating meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cereal import Decision, Manager, WorkflowInstance
from cereal.drivers.sqlite import SQLiteDriver

COMMAND_TIMEOUT = 90
WARNING = "warning: no live worker handles workflow"


class Completes:
    def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.complete("done")

    def on_task_complete(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("no tasks here")

    def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


async def cereal(db_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("CEREAL_DATABASE_URL", None)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cereal", "--db", f"sqlite:///{db_path}", *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env,
    )


@pytest.fixture
async def worker(db_path: Path) -> AsyncIterator[Manager]:
    """A started Manager running workflow ``handled`` and task ``chop``."""
    manager = Manager(SQLiteDriver(str(db_path)), stop_grace_period=1.0)
    manager.register_workflow_executor("handled", Completes())
    manager.register_task_executor("chop", lambda task: None)
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


async def test_workers_list_shows_a_live_worker_and_forgets_it_after_stop(
    db_path: Path, worker: Manager
) -> None:
    [info] = await worker.list_workers()

    listed = await cereal(db_path, "workers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)
    assert shown["id"] == info.id
    assert shown["pid"] == os.getpid()
    assert (shown["workflow_names"], shown["task_names"]) == (["handled"], ["chop"])
    assert shown["version"] == info.version
    assert shown["started_at"] == info.started_at.isoformat()

    table = await cereal(db_path, "workers", "list")
    assert table.returncode == 0, table.stderr
    assert "1 live worker(s)" in table.stdout
    assert info.id in table.stdout and "handled" in table.stdout

    await worker.stop()
    after = await cereal(db_path, "workers", "list")
    assert after.returncode == 0, after.stderr
    assert "no live workers" in after.stdout
    assert json.loads((await cereal(db_path, "workers", "list", "--json")).stdout) == []


async def test_enqueue_warns_when_no_live_worker_handles_the_workflow(db_path: Path) -> None:
    done = await cereal(db_path, "workflows", "enqueue", "nobody-runs-this", "i1")

    assert done.returncode == 0, done.stderr
    assert f"{WARNING} 'nobody-runs-this'" in done.stderr
    assert "enqueued nobody-runs-this/i1" in done.stdout
    shown = await cereal(db_path, "workflows", "show", "nobody-runs-this", "i1", "--json")
    assert json.loads(shown.stdout)["is_running"] is True  # stored all the same


async def test_enqueue_is_quiet_when_a_live_worker_handles_the_workflow(
    db_path: Path, worker: Manager
) -> None:
    handled = await cereal(db_path, "workflows", "enqueue", "handled", "i1")
    assert handled.returncode == 0, handled.stderr
    assert WARNING not in handled.stderr

    # a worker running other workflows does not count
    other = await cereal(db_path, "workflows", "enqueue", "other", "i1")
    assert other.returncode == 0, other.stderr
    assert f"{WARNING} 'other'" in other.stderr
