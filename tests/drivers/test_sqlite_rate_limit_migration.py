"""SQLite migration 0019 rebuilds the task table: rows, ids and the id sequence survive.

Results and dead letters name tasks by id, so a task enqueued after the
rebuild must never take the id of one that finished before it.
"""

from __future__ import annotations

import sqlite3

import pytest

from cereal.drivers.sqlite import SQLiteDriver
from cereal.drivers.sqlite._migrate import apply_migrations, migrations

ADD_TASK = (
    "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name, "
    "enqueued_at, start_after, concurrency_key, concurrency_limit{extra}) "
    "VALUES (1, 'wf', 'i', 't', 0, 0, ?, ?{marks})"
)


async def test_the_rebuilt_task_table_keeps_rows_and_never_reuses_an_id(db_path: str) -> None:
    # Given a store at the schema before rate limits, with two queued tasks (one
    # keyed) and a third that has finished (its row gone, its id spent)
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn, [m for m in migrations() if m.version < 19])
    for key, limit in (("k", 2), (None, None), (None, None)):
        conn.execute(ADD_TASK.format(extra="", marks=""), (key, limit))
    conn.execute("DELETE FROM cereal_tasks WHERE id = 3")
    conn.close()

    # When a driver opens it (migrating it)
    async with SQLiteDriver(db_path):
        pass

    conn = sqlite3.connect(db_path, isolation_level=None)
    # Then the rows are there, as they were
    rows = conn.execute(
        "SELECT id, concurrency_key, concurrency_limit, rate_limit_starts FROM cereal_tasks "
        "ORDER BY id"
    ).fetchall()
    assert rows == [(1, "k", 2, None), (2, None, None, None)]
    # and the next task gets a new id, past the finished one's
    extra, marks = ", rate_limit_starts, rate_limit_seconds", ", ?, ?"
    added = conn.execute(ADD_TASK.format(extra=extra, marks=marks), ("api", None, 5, 1.0))
    assert added.lastrowid == 4
    # and the table's check holds: a key needs a limit, a rate needs its period
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(ADD_TASK.format(extra=extra, marks=marks), ("k", None, None, None))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(ADD_TASK.format(extra=extra, marks=marks), ("k", None, 5, None))
    # and every index of the table is back
    indexes = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cereal_tasks' "
            "AND sql IS NOT NULL"
        )
    }
    assert indexes == {
        "cereal_tasks_by_instance",
        "cereal_tasks_by_name",
        "cereal_tasks_leases",
        "cereal_tasks_due",
        "cereal_tasks_due_keyed",
        "cereal_tasks_running_keys",
    }
    conn.close()
