"""Concurrency keys on PostgreSQL, raced for real: a claim held open in another session.

A raw session claims a keyed task and keeps its transaction open (the claim's
row change and its lock on the key both uncommitted); a claim of the same key
in the meantime waits for the key's lock, then counts the holder's claim, so
it never exceeds the key's limit.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from cereal.drivers.postgres import PostgresDriver
from cereal.models import NewTask
from tests._waiting import wait_until
from tests.conformance._driver_helpers import started
from tests.drivers._postgres_schema import someone_waits_for_an_advisory_lock

RAW_CLAIM = "SELECT id, lease FROM cereal_claim_tasks('t', 10, gen_random_uuid(), 60.0, NULL)"


def keyed(key: str, limit: int, task_name: str = "t") -> NewTask:
    return NewTask(task_name, None, concurrency_key=key, concurrency_limit=limit)


async def test_a_claim_held_open_elsewhere_holds_its_key_until_it_commits(
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
        with (
            psycopg.connect(postgres_dsn) as holder,
            psycopg.connect(postgres_dsn, autocommit=True) as observer,
        ):
            # When another session claims the task of k and keeps its transaction open
            [(held_id, held_lease)] = holder.execute(RAW_CLAIM).fetchall()
            # and the driver claims "u" meanwhile
            claim = asyncio.create_task(driver.dequeue_tasks("u", 10))

            # Then that claim waits for the key's lock (it neither passes k over nor
            # counts k's running tasks before the holder's claim is visible)
            await wait_until(
                lambda: someone_waits_for_an_advisory_lock(observer),
                what="the driver's claim waiting for key k",
            )
            assert not claim.done()
            holder.commit()
            # and once the holder committed, it takes the task of other and nothing of k
            mine = await asyncio.wait_for(claim, timeout=30)
        [(other_id,)] = observer_ids(postgres_dsn, "other")
        assert [data.metadata.task_id for data, _ in mine] == [str(other_id)]
        # and when the held task ends, the next task of k is claimable, and only one
        _, completer = await driver.resume_task_lease(str(held_id), str(held_lease))
        await completer.succeed(None)
        assert len(await driver.dequeue_tasks("u", 10)) == 1
        assert await driver.dequeue_tasks("u", 10) == []


def observer_ids(dsn: str, key: str) -> list[tuple[int]]:
    with psycopg.connect(dsn) as conn:
        return [
            (int(row[0]),)
            for row in conn.execute(
                "SELECT id FROM cereal_tasks WHERE concurrency_key = %s", (key,)
            ).fetchall()
        ]


async def test_racing_claimers_take_exactly_the_limit(postgres_dsn: str) -> None:
    # Given 40 tasks of one key with limit 3, spread over two task names
    async with PostgresDriver(postgres_dsn) as driver:
        await started(driver, tasks=[keyed("k", 3, "t" if n % 2 else "u") for n in range(40)])

    # When 6 sessions claim both names as fast as they can, 20 times each
    def claimer() -> int:
        with psycopg.connect(postgres_dsn, autocommit=True) as session:
            return sum(
                len(session.execute(RAW_CLAIM.replace("'t'", f"'{name}'")).fetchall())
                for _ in range(10)
                for name in ("t", "u")
            )

    claimed = await asyncio.gather(*(asyncio.to_thread(claimer) for _ in range(6)))

    # Then exactly the limit was taken, and that many run
    assert sum(claimed) == 3
    with psycopg.connect(postgres_dsn) as reader:
        [(running,)] = reader.execute(
            "SELECT count(*) FROM cereal_tasks WHERE state = 'running'"
        ).fetchall()
    assert running == 3


async def test_a_keyed_claim_outside_read_committed_is_refused(postgres_dsn: str) -> None:
    # Given a keyed task, and a session whose transactions are REPEATABLE READ (one
    # snapshot for the whole claim: the count could miss a claim committed meanwhile)
    async with PostgresDriver(postgres_dsn) as driver:
        await started(driver, tasks=[keyed("k", 1)])
    with psycopg.connect(postgres_dsn, autocommit=True) as session:
        session.execute("SET default_transaction_isolation = 'repeatable read'")
        # Then claiming it is refused with the reason, and nothing is claimed
        with pytest.raises(psycopg.errors.RaiseException, match="needs READ COMMITTED"):
            session.execute(RAW_CLAIM)
        [(running,)] = session.execute(
            "SELECT count(*) FROM cereal_tasks WHERE state = 'running'"
        ).fetchall()
        assert running == 0
