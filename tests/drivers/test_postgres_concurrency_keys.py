"""Concurrency keys on PostgreSQL, raced for real: a claim held open in another session.

A raw session claims a keyed task and keeps its transaction open (the claim's
row change and its lock on the key both uncommitted); the driver's claims in
the meantime must neither exceed the key's limit nor wait for that session.
"""

from __future__ import annotations

import asyncio

import psycopg

from cereal.drivers.postgres import PostgresDriver
from cereal.models import NewTask
from tests.conformance._driver_helpers import started

RAW_CLAIM = "SELECT id, lease FROM cereal_claim_tasks('t', 10, gen_random_uuid(), 60.0, NULL)"


def keyed(key: str, limit: int, task_name: str = "t") -> NewTask:
    return NewTask(task_name, None, concurrency_key=key, concurrency_limit=limit)


async def test_a_claim_held_open_elsewhere_blocks_its_key_and_nothing_else(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        # Given one task "t" of key k (limit 1), two tasks "u" of the same key (a task
        # name the holder's claim never reads, so no row lock of its can stand in for
        # the key's lock), and one "u" of key other
        await started(
            driver,
            tasks=[keyed("k", 1), keyed("k", 1, "u"), keyed("k", 1, "u"), keyed("other", 1, "u")],
        )
        with psycopg.connect(postgres_dsn) as holder:
            # When another session claims the task of k and keeps its transaction open
            [(held_id, held_lease)] = holder.execute(RAW_CLAIM).fetchall()
            # Then the driver's claim of "u", meanwhile, takes the task of other and
            # nothing of k, and does not wait for the holder
            mine = await asyncio.wait_for(driver.dequeue_tasks("u", 10), timeout=10)
            assert [data.name for data, _ in mine] == ["u"]
            [(other_id,)] = holder.execute(
                "SELECT id FROM cereal_tasks WHERE concurrency_key = 'other'"
            ).fetchall()
            assert mine[0][0].metadata.task_id == str(other_id)
            holder.commit()
        # and once that claim committed, k is full: still nothing of k
        assert await driver.dequeue_tasks("u", 10) == []
        # and when the held task ends, the next task of k is claimable, and only one
        _, completer = await driver.resume_task_lease(str(held_id), str(held_lease))
        await completer.succeed(None)
        assert len(await driver.dequeue_tasks("u", 10)) == 1
        assert await driver.dequeue_tasks("u", 10) == []


async def test_concurrent_claims_never_run_more_than_the_limit(postgres_dsn: str) -> None:
    # Given 40 tasks of one key with limit 3, and 6 sessions claiming as fast as they can,
    # each holding what it claimed open while the others claim
    async with PostgresDriver(postgres_dsn) as driver:
        await started(driver, tasks=[keyed("k", 3)] * 40)
    sessions = [psycopg.connect(postgres_dsn) for _ in range(6)]
    try:
        claimed = 0
        for _round in range(3):
            for session in sessions:
                claimed += len(session.execute(RAW_CLAIM).fetchall())
            # Then, with every claim of the round open at once, at most 3 are running
            assert claimed <= 3
            for session in sessions:
                session.commit()
            with psycopg.connect(postgres_dsn) as reader:
                [(running,)] = reader.execute(
                    "SELECT count(*) FROM cereal_tasks WHERE state = 'running'"
                ).fetchall()
            assert running == claimed <= 3
        assert claimed == 3
    finally:
        for session in sessions:
            session.close()
