"""Rate limits on PostgreSQL, raced for real: a claim held open in another session.

A raw session claims a rate-limited task and keeps its transaction open (its
start recorded but uncommitted, its key's lock held); a claim of the same key
meanwhile waits for the key's lock, then counts the holder's start in a fresh
snapshot, so the window never holds more starts than the rate allows.
"""

from __future__ import annotations

import asyncio

import psycopg

from cereal.drivers.postgres import PostgresDriver
from cereal.models import NewTask
from tests._waiting import wait_until
from tests.conformance._driver_helpers import started
from tests.drivers._postgres_schema import someone_waits_for_an_advisory_lock

RAW_CLAIM = "SELECT id, lease FROM cereal_claim_tasks('{name}', 10, gen_random_uuid(), 60.0, NULL)"


def rated(key: str, starts: int, task_name: str = "t", seconds: float = 3600.0) -> NewTask:
    return NewTask(
        task_name, None, concurrency_key=key, rate_limit_starts=starts, rate_limit_seconds=seconds
    )


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


async def test_a_start_held_open_elsewhere_counts_once_it_commits(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        # Given a task "t" of key k (1 start an hour), two "u" of k (a name the holder's
        # claim never reads) and one "u" of key other
        await started(
            driver,
            tasks=[rated("k", 1), rated("k", 1, "u"), rated("k", 1, "u"), rated("other", 1, "u")],
        )
        with (
            psycopg.connect(postgres_dsn) as holder,
            psycopg.connect(postgres_dsn, autocommit=True) as observer,
        ):
            # When another session claims the task of k and keeps its transaction open
            [(held_id, _)] = holder.execute(RAW_CLAIM.format(name="t")).fetchall()
            # and the driver claims "u" meanwhile
            claim = asyncio.create_task(driver.dequeue_tasks("u", 10))

            # Then that claim waits for the key's lock: the holder's start is not yet
            # visible, so counting before the lock would find the window empty
            await wait_until(
                lambda: someone_waits_for_an_advisory_lock(observer),
                what="the driver's claim waiting for key k",
            )
            assert not claim.done()
            holder.commit()
            # and once the holder committed, it takes the task of other and nothing of k
            mine = await asyncio.wait_for(claim, timeout=30)
        other_id = count(
            postgres_dsn, "SELECT id FROM cereal_tasks WHERE concurrency_key = 'other'"
        )
        assert [data.metadata.task_id for data, _ in mine] == [str(other_id)]
        assert held_id != other_id
        # and the window holds the two starts, one per key
        assert count(postgres_dsn, "SELECT count(*) FROM cereal_key_starts") == 2


async def test_racing_claimers_start_exactly_the_rate(postgres_dsn: str) -> None:
    # Given 40 tasks of one key allowing 3 starts an hour, spread over two task names
    async with PostgresDriver(postgres_dsn) as driver:
        await started(driver, tasks=[rated("k", 3, "t" if n % 2 else "u") for n in range(40)])

    # When 6 sessions claim both names as fast as they can, 10 times each
    def claimer() -> int:
        with psycopg.connect(postgres_dsn, autocommit=True) as session:
            return sum(
                len(session.execute(RAW_CLAIM.format(name=name)).fetchall())
                for _ in range(10)
                for name in ("t", "u")
            )

    claimed = await asyncio.gather(*(asyncio.to_thread(claimer) for _ in range(6)))

    # Then exactly the rate's starts were taken, each recorded once
    assert sum(claimed) == 3
    assert count(postgres_dsn, "SELECT count(*) FROM cereal_tasks WHERE state = 'running'") == 3
    assert count(postgres_dsn, "SELECT count(*) FROM cereal_key_starts") == 3


async def test_claims_that_record_starts_delete_starts_that_left_their_window(
    postgres_dsn: str,
) -> None:
    # Given 100 recorded starts that left their window a minute ago, and 2 still inside
    async with PostgresDriver(postgres_dsn) as driver:
        await started(driver, tasks=[rated(f"k{n}", 1, "t") for n in range(3)])
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO cereal_key_starts (concurrency_key, leaves_at) "
            "SELECT 'gone', now() - interval '1 minute' FROM generate_series(1, 100)"
        )
        conn.execute(
            "INSERT INTO cereal_key_starts (concurrency_key, leaves_at) "
            "SELECT 'inside', now() + interval '1 hour' FROM generate_series(1, 2)"
        )
        # When a claim records starts (three keys, one start each)
        assert len(conn.execute(RAW_CLAIM.format(name="t")).fetchall()) == 3

    # Then it deleted 64 of the starts that had left (a bounded batch), none inside
    assert (
        count(postgres_dsn, "SELECT count(*) FROM cereal_key_starts WHERE concurrency_key = 'gone'")
        == 36
    )
    assert (
        count(
            postgres_dsn, "SELECT count(*) FROM cereal_key_starts WHERE concurrency_key = 'inside'"
        )
        == 2
    )
    assert (
        count(
            postgres_dsn, "SELECT count(*) FROM cereal_key_starts WHERE concurrency_key LIKE 'k%'"
        )
        == 3
    )
