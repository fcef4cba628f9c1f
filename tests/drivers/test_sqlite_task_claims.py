"""SQLite's task claim: its cost does not grow with tasks that are not yet due.

Delayed tasks (``start_after`` in the future) and tasks waiting out a retry
backoff stay queued in the ready index. A claim reads the index from the
earliest due task (``(task_name, start_after, id)``, migration 0009), so those
are never visited. Counted in SQLite VM steps on the driver's connection
(deterministic, no timing).
"""

from __future__ import annotations

import sqlite3
import time

from cereal.drivers.sqlite import SQLiteDriver
from cereal.drivers.sqlite._migrate import apply_migrations, migrations
from tests.drivers.test_sqlite_claims import count_steps, query_plan

DELAYED = 200_000


def add_tasks(db_path: str, count: int, start_after: float) -> None:
    """Queue ``count`` tasks named ``t`` with direct SQL (fast), due at ``start_after``."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name,"
        " enqueued_at, start_after) VALUES (1, 'wf', ?, 't', ?, ?)",
        [(f"i{n}", time.time(), start_after) for n in range(count)],
    )
    conn.execute("COMMIT")
    conn.close()


async def claim_one(driver: SQLiteDriver, expected: str) -> None:
    [(data, _)] = await driver.dequeue_tasks("t", 4, task_expiry=60.0)
    assert data.metadata.instance_name == expected


async def test_a_claim_does_not_visit_tasks_not_yet_due(drv: SQLiteDriver, db_path: str) -> None:
    # Given the cost of a claim (its ready probe included) of one due task
    add_tasks(db_path, 1, start_after=0.0)
    small = await count_steps(drv, claim_one(drv, "i0"))

    # When 200 000 tasks not yet due are queued ahead of the next due one (lower ids)
    add_tasks(db_path, DELAYED, start_after=time.time() + 3600)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(
        "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name,"
        " enqueued_at, start_after) VALUES (1, 'wf', 'due', 't', ?, ?)",
        (time.time(), time.time()),
    )
    conn.close()

    # Then claiming it costs the same VM steps (stepping over the delayed tasks would
    # add several per task: over a million)
    large = await count_steps(drv, claim_one(drv, "due"))
    assert large <= small + 50, (small, large)


def test_the_claim_searches_the_ready_index_by_due_time(db_path: str) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn, migrations())
    named = {"task_name": "t", "now": 0.0}
    lease = {"expiry": 60.0, "retry_policy": None}
    unkeyed = query_plan(conn, "claim_unkeyed_tasks", {**named, **lease, "max_tasks": 4})
    due = query_plan(conn, "due_unkeyed_tasks", {**named, "max_tasks": 4})
    probe = query_plan(conn, "has_ready_task", named)
    any_keyed = query_plan(conn, "has_queued_keyed_task", named)
    walk = query_plan(conn, "keys_after", {"task_name": "t", "after": None, "count": 256})
    heads = query_plan(conn, "key_heads", {**named, "keys": '["k"]'})
    keyed = query_plan(conn, "keyed_candidates", {**named, "key": "k", "max_tasks": 4})
    window = query_plan(conn, "key_window_starts", {"key": "k", "now": 0.0})
    conn.close()
    # a key's rate window: counted from its own index, never the whole table
    assert any(
        "USING COVERING INDEX cereal_key_starts_by_key (concurrency_key=? AND leaves_at>?)" in s
        for s in window
    ), window
    # unkeyed tasks: the ready index (unkeyed queued tasks only) by ready rank (the due
    # time less a minute per priority level: an expression, migration 0020)
    for plan in (unkeyed, due, probe):
        assert any(
            "USING INDEX cereal_tasks_due (task_name=? AND <expr><?)" in step for step in plan
        ), plan
    # keyed tasks (migration 0018): their own index, walked one key at a time, and
    # each key's running count from the running-keys index
    for plan in (any_keyed, walk, probe):
        assert any("USING INDEX cereal_tasks_due_keyed (task_name=?" in s for s in plan), plan
    assert any("USING INDEX cereal_tasks_running_keys (concurrency_key=?)" in s for s in heads)
    for plan in (heads, keyed):
        assert any(
            "USING INDEX cereal_tasks_due_keyed (task_name=? AND concurrency_key=? AND "
            "<expr><?)" in step
            for step in plan
        ), plan
    # no table is ever scanned, and nothing is sorted
    for plan in (unkeyed, due, probe, any_keyed, walk, heads, keyed):
        scans = [step for step in plan if step.startswith("SCAN")]
        assert all(
            step.startswith(("SCAN walk", "SCAN keys", "SCAN CONSTANT")) for step in scans
        ), plan
        assert not any("TEMP B-TREE" in step for step in plan), plan


async def test_due_tasks_are_claimed_earliest_due_first(drv: SQLiteDriver, db_path: str) -> None:
    # a task whose delay (or retry backoff) ended is claimed in its due-time place
    at = time.time()
    conn = sqlite3.connect(db_path, isolation_level=None)
    for name, start_after in (("late", at - 1), ("early", at - 3), ("middle", at - 2)):
        conn.execute(
            "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name,"
            " enqueued_at, start_after) VALUES (1, 'wf', ?, 't', ?, ?)",
            (name, at - 4, start_after),
        )
    conn.close()
    claimed = await drv.dequeue_tasks("t", 3, task_expiry=60.0)
    assert [data.metadata.instance_name for data, _ in claimed] == ["early", "middle", "late"]
