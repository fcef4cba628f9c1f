"""Rate-limit upkeep on the SQL stores: full-window marks, the sweep's trim, old dead letters.

A claim that finds or leaves a key's window full records until when it stays
full (its first start's leaving time), so later claims pass the key over
without counting; the sweep's trim deletes starts that left their windows and
expired marks; a dead letter an older release stored without its rate limit
is requeued under its key at most one at a time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg

from cereal.drivers import Driver
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.sqlite import SQLiteDriver
from cereal.models import HistoryRetention, NewTask
from tests.conformance._driver_helpers import started

Query = Callable[[str], list[tuple[Any, ...]]]


def rated(n: int, key: str, starts: int, seconds: float) -> NewTask:
    return NewTask(
        "t",
        str(n).encode(),
        concurrency_key=key,
        rate_limit_starts=starts,
        rate_limit_seconds=seconds,
    )


def sqlite_query(path: str) -> Query:
    def run(sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    return run


def postgres_query(dsn: str) -> Query:
    def run(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    return run


async def marks_and_trim(driver: Driver, query: Query) -> None:
    # Given key "full" allowing 2 starts per 0.2 s with three tasks, and key "slow"
    # allowing 1 an hour with one
    await started(
        driver, tasks=[rated(n, "full", 2, 0.2) for n in range(3)] + [rated(3, "slow", 1, 3600)]
    )

    # When a claim takes both starts of "full" and the one of "slow"
    assert len(await driver.dequeue_tasks("t", 10, task_expiry=3600)) == 3

    # Then both windows are marked full, "full" until its first start leaves
    marks = dict(query("SELECT concurrency_key, 1 FROM cereal_key_windows"))
    assert marks == {"full": 1, "slow": 1}
    # and when that window has passed, the third task goes and the mark moves on
    await asyncio.sleep(0.25)
    assert len(await driver.dequeue_tasks("t", 10, task_expiry=3600)) == 1

    # When the starts of "full" have left and a sweep trims
    await asyncio.sleep(0.25)
    await driver.trim_history(HistoryRetention(max_rows=1000, margin_rows=0))

    # Then only the start still inside its window is kept, and only its mark
    assert query("SELECT concurrency_key FROM cereal_key_starts") == [("slow",)]
    assert query("SELECT concurrency_key FROM cereal_key_windows") == [("slow",)]


async def old_dead_letter(driver: Driver, query: Query) -> None:
    # Given a dead task of a rate-limited key, stored without its rate limit (as a
    # worker of an older release stored it)
    await started(driver, tasks=[rated(0, "api", 5, 60)])
    [(_, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    await completer.fail("boom")
    query("UPDATE cereal_dead_tasks SET rate_limit_starts = NULL, rate_limit_seconds = NULL")
    [dead] = await driver.list_dead_tasks()

    # When it is requeued, it goes back under its key, at most one at a time
    assert list((await driver.requeue_dead_tasks([dead.task_id])).values()) == ["requeued"]
    [task] = await driver.list_tasks("t")
    assert (task.concurrency_key, task.concurrency_limit, task.rate_limit_starts) == (
        "api",
        1,
        None,
    )


async def test_sqlite_marks_full_windows_and_trims_them(db_path: str) -> None:
    async with SQLiteDriver(db_path) as driver:
        await marks_and_trim(driver, sqlite_query(db_path))


async def test_postgres_marks_full_windows_and_trims_them(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await marks_and_trim(driver, postgres_query(postgres_dsn))


async def test_sqlite_requeues_an_old_dead_letter_under_its_key(db_path: str) -> None:
    async with SQLiteDriver(db_path) as driver:
        await old_dead_letter(driver, sqlite_query(db_path))


async def test_postgres_requeues_an_old_dead_letter_under_its_key(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await old_dead_letter(driver, postgres_query(postgres_dsn))
