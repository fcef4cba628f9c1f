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
        deadline = asyncio.get_running_loop().time() + 10
        while connection._jobs.qsize() < len(writes):  # every write queued behind it
            assert asyncio.get_running_loop().time() < deadline, "writes never queued"
            await asyncio.sleep(0.001)

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
