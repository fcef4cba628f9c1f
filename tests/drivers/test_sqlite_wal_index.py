"""SQLite: the WAL-index header as the first look for commits between data_version reads.

The connection thread reads ``PRAGMA data_version`` only when the header of
the ``-shm`` file changed since its last look, or a second has passed; these
cases show the header changes with every commit (and only then), and that a
commit is never missed for looking at it: not one made before the map was
taken, nor one whose header change the look does not see.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cereal.drivers.sqlite import SQLiteDriver, _connection
from cereal.drivers.sqlite._wal_index import WalIndexWatch
from tests._waiting import wait_until
from tests.drivers.test_sqlite import FOREIGN, foreign_commit


@pytest.fixture
def reader(db_path: str) -> Iterator[sqlite3.Connection]:
    """A connection holding the database open in WAL mode (so its WAL-index exists)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS test_marker (n INTEGER)")
    yield conn
    conn.close()


def test_every_commit_changes_the_header_and_nothing_else_does(
    db_path: str, reader: sqlite3.Connection
) -> None:
    watch = WalIndexWatch.open(db_path)
    assert watch is not None
    try:
        assert not watch.changed()
        reader.execute("SELECT count(*) FROM test_marker").fetchone()  # a read is no commit
        assert not watch.changed()
        for _ in range(3):
            foreign_commit(db_path)
            assert watch.changed()
            assert not watch.changed()  # compared with the last look
    finally:
        watch.close()


def test_there_is_nothing_to_read_without_a_wal_index(tmp_path: Path) -> None:
    assert WalIndexWatch.open(str(tmp_path / "missing.db")) is None
    rollback = tmp_path / "rollback.db"
    conn = sqlite3.connect(rollback, isolation_level=None)  # journal mode DELETE: no -shm
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.close()
    assert WalIndexWatch.open(str(rollback)) is None


def test_a_short_header_counts_as_a_change_and_a_replaced_file_is_followed(
    db_path: str, reader: sqlite3.Connection
) -> None:
    watch = WalIndexWatch.open(db_path)
    assert watch is not None
    try:
        # Given the -shm file replaced by another (as after every connection closed)
        shm = f"{db_path}-shm"
        os.replace(shm, f"{shm}.old")
        with open(shm, "wb") as fresh:
            fresh.write(b"\0" * 8)
        # Then the old file's look says nothing changed until the file is followed
        assert not watch.changed()
        watch.reopen_if_replaced()
        assert watch.changed()  # a new file, and short: a change
        assert watch.changed()  # still short: never taken for a steady header
    finally:
        watch.close()


def _listened(driver: SQLiteDriver) -> set[tuple[str, str | None]]:
    """The wakeups ``driver`` reports from now on, as a set that fills in."""
    calls: set[tuple[str, str | None]] = set()
    driver.add_wakeup_listener(lambda kind, name: calls.add((kind, name)))
    return calls


async def test_a_commit_made_before_the_header_is_first_read_is_not_lost(
    db_path: str, reader: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteDriver(db_path):
        pass  # migrated: the watcher below writes nothing as it opens
    # Given a foreign commit that lands after the first data_version read and before
    # the header is first read, no fallback read for an hour, and a listener from the start
    monkeypatch.setattr(_connection, "VERSION_READ_AT_LEAST", 3600.0)
    opened = WalIndexWatch.open

    def commit_then_open(path: str) -> WalIndexWatch | None:
        foreign_commit(path)
        return opened(path)

    monkeypatch.setattr(_connection.WalIndexWatch, "open", staticmethod(commit_then_open))
    driver = SQLiteDriver(db_path)
    calls = _listened(driver)

    # Then the watcher still reports it: its first poll reads data_version
    async with driver:
        assert driver._connection()._wal_index is not None
        await wait_until(lambda: calls >= FOREIGN, what="the watcher to report the commit")


class _BlindWatch:
    """A header look that never sees a change."""

    def changed(self) -> bool:
        return False

    def reopen_if_replaced(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_data_version_is_read_each_second_whatever_the_header_says(
    db_path: str, reader: sqlite3.Connection
) -> None:
    async with SQLiteDriver(db_path) as driver:
        connection = driver._connection()
        assert connection._wal_index is not None
        connection._wal_index.close()
        connection._wal_index = _BlindWatch()  # type: ignore[assignment]
        calls = _listened(driver)
        foreign_commit(db_path)

        await wait_until(lambda: calls >= FOREIGN, what="the watcher to report the commit")


def test_the_watch_slows_down_only_after_a_quiet_spell() -> None:
    base = 0.01
    assert _connection.watch_interval(base, quiet_for=0.0) == base
    assert _connection.watch_interval(base, quiet_for=_connection.QUIET_AFTER - 0.01) == base
    quiet = _connection.watch_interval(base, quiet_for=_connection.QUIET_AFTER)
    assert quiet == base * _connection.QUIET_FACTOR == pytest.approx(0.04)


async def test_a_quiet_watch_still_reports_another_processs_commit(
    db_path: str, reader: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a watch that is quiet from the start (checks QUIET_FACTOR times less often)
    monkeypatch.setattr(_connection, "QUIET_AFTER", 0.0)
    async with SQLiteDriver(db_path) as driver:
        calls = _listened(driver)
        # When another process commits, the watch still reports it
        foreign_commit(db_path)
        await wait_until(lambda: calls >= FOREIGN, what="the watcher to report the commit")
