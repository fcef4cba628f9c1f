"""PostgreSQL: workflow concurrency keys under racing enqueues and endings (migration 0026).

Each race is forced, never hoped for: a session holds the key's advisory lock
while the racing statements start, each is seen waiting for it in
``pg_locks``, and only then is the lock let go.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._db import QUERIES
from tests._waiting import wait_until

WF = "wf"
KEY_LOCK = "SELECT pg_advisory_lock(1667592823, hashtext(%s))"


def waiting_for_the_key(observer: psycopg.Connection[Any], sessions: int) -> bool:
    row = observer.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()
    return row is not None and row[0] >= sessions


def started_and_waiting(dsn: str) -> tuple[list[str], list[str]]:
    """The instance names of the key's started and waiting runs."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT instance_name, waiting_for_key FROM cereal_workflow_instances"
            " WHERE concurrency_key = 'k' ORDER BY id"
        ).fetchall()
    return [n for n, w in rows if not w], [n for n, w in rows if w]


async def _enqueue(dsn: str, name: str, limit: int) -> None:
    """Enqueue one keyed run in a session of its own (its transaction commits at the end)."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute(
            QUERIES["enqueue_keyed_workflow"],
            {
                "workflow_name": WF,
                "instance_name": name,
                "parameters": None,
                "traceparent": None,
                "concurrency_key": "k",
                "concurrency_limit": limit,
                "note": None,
            },
        )
        await conn.commit()


async def test_racing_enqueues_start_no_more_than_the_limit(postgres_dsn: str) -> None:
    with (
        psycopg.connect(postgres_dsn, autocommit=True) as holder,
        psycopg.connect(postgres_dsn, autocommit=True) as observer,
    ):
        # Given five enqueues of one key (limit 2), each inserted and waiting for the key
        holder.execute(KEY_LOCK, ("k",))
        racing = [asyncio.create_task(_enqueue(postgres_dsn, f"r{n}", 2)) for n in range(5)]
        await wait_until(lambda: waiting_for_the_key(observer, 5), what="five enqueues waiting")

        # When the key is let go
        holder.execute("SELECT pg_advisory_unlock_all()")
        await asyncio.gather(*racing)

    # Then exactly two were started, the others wait
    started, waiting = started_and_waiting(postgres_dsn)
    assert (len(started), len(waiting)) == (2, 3)


async def test_an_ending_racing_an_enqueue_lets_exactly_the_new_run_start(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_keyed_workflow(WF, "first", None, "k", 1)
        with (
            psycopg.connect(postgres_dsn, autocommit=True) as holder,
            psycopg.connect(postgres_dsn, autocommit=True) as observer,
        ):
            # Given the started run's kill and a new run's enqueue, both waiting for the key
            holder.execute(KEY_LOCK, ("k",))
            killing = asyncio.create_task(driver.kill_workflow(WF, "first", "killed"))
            await wait_until(lambda: waiting_for_the_key(observer, 1), what="the kill waiting")
            enqueuing = asyncio.create_task(_enqueue(postgres_dsn, "second", 1))
            await wait_until(lambda: waiting_for_the_key(observer, 2), what="both waiting")

            # When the key is let go
            holder.execute("SELECT pg_advisory_unlock_all()")
            await asyncio.gather(killing, enqueuing)

    # Then the new run was started, whichever went first (never left waiting)
    assert started_and_waiting(postgres_dsn) == (["second"], [])


async def test_a_run_left_waiting_by_an_older_process_is_started_by_the_sweep(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_keyed_workflow(WF, "first", None, "k", 1)
        await driver.enqueue_keyed_workflow(WF, "second", None, "k", 1)
        # Given the started run deleted as a process of an earlier release finishes it
        with psycopg.connect(postgres_dsn, autocommit=True) as old:
            old.execute("DELETE FROM cereal_workflow_instances WHERE instance_name = 'first'")
        assert started_and_waiting(postgres_dsn) == ([], ["second"])

        # Then the next sweep step starts the waiting run
        await driver.release_stale_claims(60)
        assert started_and_waiting(postgres_dsn) == (["second"], [])
        [(events, completer)] = await driver.claim_workflows([WF])
        assert events[0].instance.instance_name == "second"
        await completer.close()


async def test_a_waiting_run_stays_unready_whatever_writes_to_it(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_keyed_workflow(WF, "first", None, "k", 1)
        await driver.enqueue_keyed_workflow(WF, "second", None, "k", 1)
    # an older release's cancel marks the instance ready as it appends its event
    with psycopg.connect(postgres_dsn, autocommit=True) as old:
        try:
            old.execute(
                "UPDATE cereal_workflow_instances SET ready_at = now()"
                " WHERE instance_name = 'second'"
            )
        except psycopg.errors.CheckViolation:
            pass
        else:
            raise AssertionError("a waiting run was made ready")
    assert started_and_waiting(postgres_dsn) == (["first"], ["second"])
