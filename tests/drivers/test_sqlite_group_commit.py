"""SQLite: writes queued together share one transaction (one fsync); each keeps its outcome."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from cereal import errors
from cereal.drivers.sqlite import SQLiteDriver, _connection
from tests._waiting import wait_until


async def test_queued_writes_share_a_commit_and_a_failing_one_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    in_transaction = _connection._in_transaction

    def counting(conn: sqlite3.Connection, fn: Any, begin: Any) -> Any:
        commits.append(1)
        return in_transaction(conn, fn, begin)

    async with SQLiteDriver(str(tmp_path / "g.db")) as driver:
        connection = driver._connection()
        await connection.call(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))
        monkeypatch.setattr(_connection, "_in_transaction", counting)

        # Given the connection thread held busy, so that the writes below queue up
        gate = threading.Event()
        holding = asyncio.ensure_future(connection.call(lambda conn: gate.wait(10), mode="auto"))

        def insert(n: int) -> Any:
            def job(conn: sqlite3.Connection) -> int:
                conn.execute("INSERT INTO t VALUES (?)", (n,))
                if n == 3:
                    raise errors.TaskLostError()  # after writing: must be rolled back alone
                return n

            return job

        writes = [asyncio.ensure_future(connection.call(insert(n))) for n in range(8)]
        # every write queued: the batcher handed them to the thread as one job behind it
        await wait_until(lambda: connection._jobs.qsize() == 1, what="the group queued")
        assert connection._batcher().pending == 0

        # When the thread is released
        gate.set()
        await holding
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        rows = await connection.call(
            lambda conn: [n for (n,) in conn.execute("SELECT n FROM t ORDER BY n")], mode="read"
        )

    # Then every write but the failing one committed, in one transaction
    assert [o for o in outcomes if not isinstance(o, BaseException)] == [0, 1, 2, 4, 5, 6, 7]
    assert isinstance(outcomes[3], errors.TaskLostError)
    assert rows == [0, 1, 2, 4, 5, 6, 7]
    assert len(commits) == 2  # the group, then the read


async def _held(connection: Any, gate: threading.Event) -> asyncio.Future[Any]:
    """Hold the connection thread on ``gate`` with a job that is not a plain write."""
    return asyncio.ensure_future(connection.call(lambda conn: gate.wait(10), mode="auto"))


def _insert(n: int) -> Any:
    return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (n,)).rowcount


def _rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as other:
        return [n for (n,) in other.execute("SELECT n FROM t ORDER BY n")]


async def test_a_write_cancelled_while_queued_never_runs_one_in_a_group_commits_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    async with SQLiteDriver(str(path)) as driver:
        connection = driver._connection()
        await connection.call(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))
        gate = threading.Event()
        holding = await _held(connection, gate)

        # Given a group handed to the busy thread, and a write queued behind it
        in_group = asyncio.ensure_future(connection.call(_insert(1)))
        await wait_until(lambda: connection._jobs.qsize() == 1, what="the group queued")
        queued = asyncio.ensure_future(connection.call(_insert(2)))
        await wait_until(lambda: connection._batcher().pending == 1, what="a write queued")

        # When both callers are cancelled, then the thread is released
        for task in (in_group, queued):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        gate.set()
        await holding
        await connection._batcher().drain()

        # Then the write already in a group committed once, the queued one never ran
        assert await connection.call(_insert(3)) == 1
    assert _rows(path) == [1, 3]


async def test_stop_commits_the_writes_still_queued_and_later_writes_fail(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    driver = SQLiteDriver(str(path))
    await driver.init()
    connection = driver._connection()
    await connection.call(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))
    gate = threading.Event()
    holding = await _held(connection, gate)
    writes = [asyncio.ensure_future(connection.call(_insert(n))) for n in range(3)]
    await wait_until(lambda: connection._jobs.qsize() == 1, what="the first group queued")
    writes += [asyncio.ensure_future(connection.call(_insert(n))) for n in range(3, 6)]
    await wait_until(lambda: connection._batcher().pending == 3, what="three writes queued")

    # When the connection stops while writes are queued
    stopping = asyncio.ensure_future(connection.stop())
    gate.set()
    await holding
    await stopping

    # Then every queued write committed, and a write after the stop fails at once
    assert await asyncio.gather(*writes) == [1] * 6
    assert _rows(path) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(errors.DriverError, match="closed"):
        await connection.call(_insert(6))
    await driver.close()
