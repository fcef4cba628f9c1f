"""Fixtures shared by the driver test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from cereal.drivers.sqlite import SQLiteDriver
from tests.drivers._listening import Channel


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """A SQLite database file in the test's own directory."""
    return str(tmp_path / "cereal.db")


@pytest.fixture
async def drv(db_path: str) -> AsyncIterator[SQLiteDriver]:
    """An open SQLite driver on :func:`db_path`, closed however often it was opened."""
    driver = SQLiteDriver(db_path)
    await driver.init()
    try:
        yield driver
    finally:
        while driver.is_open:
            await driver.close()


@pytest.fixture
async def listening(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Channel]:
    """A connection of the test's own LISTENing on the wakeup channel.

    The drivers the test opens announce each commit's work in that commit (no
    announcement window): a case counts what each action announced.
    """
    monkeypatch.setattr("cereal.drivers.postgres._announce_window.ANNOUNCE_WINDOW", 0.0)
    conn = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    await conn.execute("LISTEN cereal_wakeup")
    try:
        yield Channel(conn, postgres_dsn)
    finally:
        await conn.close()
