"""Start keys on the SQL stores: the 24 h window, trimming expired keys, racing starts.

The window is made to pass by back-dating the stored key (the stores read
their own clock); the race holds a real uncommitted key row open in another
PostgreSQL session and polls ``pg_stat_activity`` until the start waits on it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from cereal.drivers.memory import MemoryDriver
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.sqlite import SQLiteDriver
from cereal.models import HistoryRetention
from tests.drivers.test_postgres_dead_letters import _wait_until_blocked

WF = "wf"


async def test_postgres_a_key_past_its_window_starts_a_new_run_and_is_trimmed(
    postgres_dsn: str,
) -> None:
    driver = PostgresDriver(postgres_dsn)
    await driver.init()
    try:
        assert await driver.enqueue_workflow_once(WF, "first", None, "k") is None
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("UPDATE cereal_start_keys SET created_at = now() - interval '25 hours'")
        assert await driver.enqueue_workflow_once(WF, "second", None, "k") is None
        assert await driver.enqueue_workflow_once(WF, "third", None, "k") == "second"

        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("UPDATE cereal_start_keys SET created_at = now() - interval '25 hours'")
            conn.execute(
                "INSERT INTO cereal_start_keys (workflow_name, idempotency_key, instance_name)"
                " VALUES (%s, 'fresh', 'x')",
                (WF,),
            )
        await driver.trim_history(HistoryRetention())
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            kept = conn.execute("SELECT idempotency_key FROM cereal_start_keys").fetchall()
        assert kept == [("fresh",)]
    finally:
        await driver.close()


async def test_sqlite_a_key_past_its_window_starts_a_new_run_and_is_trimmed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.db"
    driver = SQLiteDriver(str(path))
    await driver.init()
    back_date = "UPDATE cereal_start_keys SET created_at = created_at - 25 * 3600"
    try:
        assert await driver.enqueue_workflow_once(WF, "first", None, "k") is None
        with sqlite3.connect(path) as conn:
            conn.execute(back_date)
        assert await driver.enqueue_workflow_once(WF, "second", None, "k") is None
        assert await driver.enqueue_workflow_once(WF, "third", None, "k") == "second"

        assert await driver.enqueue_workflow_once(WF, "fourth", None, "fresh") is None
        with sqlite3.connect(path) as conn:
            conn.execute(back_date + " WHERE idempotency_key = 'k'")
        await driver.trim_history(HistoryRetention())
        with sqlite3.connect(path) as conn:
            kept = conn.execute("SELECT idempotency_key FROM cereal_start_keys").fetchall()
        assert kept == [("fresh",)]
    finally:
        await driver.close()


async def test_memory_a_key_past_its_window_starts_a_new_run_and_is_trimmed() -> None:
    driver = MemoryDriver()
    state = driver._state
    then = datetime.now(UTC) - timedelta(hours=25)
    assert state.add_instance_once(WF, "first", None, "k", then) is None
    assert await driver.enqueue_workflow_once(WF, "second", None, "k") is None
    assert await driver.enqueue_workflow_once(WF, "third", None, "k") == "second"
    state.start_keys[(WF, "old")] = ("x", then)
    await driver.trim_history(HistoryRetention())
    assert sorted(key for _, key in state.start_keys) == ["k"]


async def _racing_start(postgres_dsn: str, *, holder_commits: bool) -> tuple[Any, list[str]]:
    driver = PostgresDriver(postgres_dsn)
    await driver.init()
    holder = await psycopg.AsyncConnection.connect(postgres_dsn)
    watcher = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    try:
        # Given another start holds the key, uncommitted, with its run
        await holder.execute(
            "INSERT INTO cereal_start_keys (workflow_name, idempotency_key, instance_name)"
            " VALUES (%s, 'k', 'theirs')",
            (WF,),
        )
        await holder.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, ready_at)"
            " VALUES (%s, 'theirs', now())",
            (WF,),
        )
        pid = holder.info.backend_pid
        # When a start with the same key comes meanwhile, it waits on the key row
        ours = asyncio.ensure_future(driver.enqueue_workflow_once(WF, "ours", None, "k"))
        await _wait_until_blocked(watcher, pid, [ours])
        if holder_commits:
            await holder.commit()
        else:
            await holder.rollback()
        outcome = await ours
        cur = await watcher.execute(
            "SELECT instance_name FROM cereal_workflow_instances ORDER BY instance_name"
        )
        live = [row[0] for row in await cur.fetchall()]
        return outcome, live
    finally:
        await holder.close()
        await watcher.close()
        await driver.close()


async def test_postgres_a_start_racing_a_committed_one_returns_its_run(postgres_dsn: str) -> None:
    outcome, live = await _racing_start(postgres_dsn, holder_commits=True)
    assert (outcome, live) == ("theirs", ["theirs"])


async def test_postgres_a_start_racing_a_rolled_back_one_starts_its_own(postgres_dsn: str) -> None:
    outcome, live = await _racing_start(postgres_dsn, holder_commits=False)
    assert (outcome, live) == (None, ["ours"])
