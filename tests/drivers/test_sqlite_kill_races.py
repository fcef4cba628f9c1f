"""SQLite: a kill landing while a continue_ commits leaves nothing behind.

SQLite has one writer: the kill's transaction starts only after the
continue_'s commit, so it sees (and deletes) every task that commit made.
A second connection holds the write lock with the continue_'s inserts in an
open ``BEGIN IMMEDIATE`` until the kill has been seen finding it busy.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from cereal.drivers.sqlite import SQLiteDriver, _connection

WF = "wf"
TASKS = 200


ORPHANS = {
    table: (
        f"SELECT count(*) FROM {table} AS c WHERE NOT EXISTS"
        " (SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = c.instance_id)"
    )
    for table in ("cereal_tasks", "cereal_workflow_events", "cereal_task_results")
}
"""Per child table: its rows whose instance is gone (fixed table names only)."""


def orphans(conn: sqlite3.Connection) -> dict[str, int]:
    return {table: int(conn.execute(sql).fetchone()[0]) for table, sql in ORPHANS.items()}


async def test_kill_during_a_continue_commit_leaves_no_tasks_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the real busy check, observed: set once the kill has found the lock held
    blocked = threading.Event()
    real_is_busy = _connection.is_busy

    def observed_is_busy(exc: sqlite3.Error) -> bool:
        busy = real_is_busy(exc)
        if busy:
            blocked.set()
        return busy

    monkeypatch.setattr(_connection, "is_busy", observed_is_busy)
    path = str(tmp_path / "cereal.db")
    async with SQLiteDriver(path) as driver:
        await driver.enqueue_workflow(WF, "big", None)
        blocker = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            [instance_id] = blocker.execute(
                "SELECT id FROM cereal_workflow_instances WHERE instance_name = 'big'"
            ).fetchone()
            blocker.execute("BEGIN IMMEDIATE")  # the continue_'s write transaction
            blocker.executemany(
                "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name,"
                " task_name, enqueued_at, start_after) VALUES (?, 'wf', 'big', 't', 0, 0)",
                [(instance_id,)] * TASKS,
            )
            kill = asyncio.ensure_future(driver.kill_workflow(WF, "big", "killed"))
            assert await asyncio.to_thread(blocked.wait, 30), "the kill never hit the lock"
            assert not kill.done()
            blocker.execute("COMMIT")
            await kill

            assert orphans(blocker) == {
                "cereal_tasks": 0,
                "cereal_workflow_events": 0,
                "cereal_task_results": 0,
            }
            assert await driver.dequeue_tasks("t", 1) == []
        finally:
            blocker.close()
