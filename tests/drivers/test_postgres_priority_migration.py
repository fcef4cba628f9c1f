"""Priorities on PostgreSQL: tasks queued before migration 0021 keep their order, the
stored ready rank follows every change of a task's due time, and a claim returns
what it took in rank order, tasks committed while it waited for a key included.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg

from cereal.checks.times import utcnow
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._migrate import migrations
from cereal.models import NewTask
from tests._waiting import wait_until
from tests.conformance._driver_helpers import INST, WF, started
from tests.drivers._postgres_schema import (
    apply_migrations_by_hand,
    someone_waits_for_an_advisory_lock,
)


async def test_tasks_queued_before_priorities_are_claimed_in_due_order(
    postgres_empty_dsn: str,
) -> None:
    # Given a store at the schema before priorities with three queued tasks, the one
    # enqueued last due first
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        apply_migrations_by_hand(conn, [m for m in migrations() if m.version < 21])
        [(instance_id,)] = conn.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status) "
            "VALUES ('wf', 'i', 'running') RETURNING id"
        ).fetchall()
        for n, ago in ((0, 10), (1, 5), (2, 60)):
            conn.execute(
                "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, "
                "task_name, parameters, start_after) "
                "VALUES (%s, 'wf', 'i', 't', %s, now() - make_interval(secs => %s))",
                (instance_id, str(n).encode(), ago),
            )

    # When a driver migrates it and claims
    async with PostgresDriver(postgres_empty_dsn) as driver:
        claimed = await driver.dequeue_tasks("t", 10, task_expiry=3600)

        # Then they come in due order, each with priority 0 and its due time as rank
        assert [data.parameters for data, _ in claimed] == [b"2", b"0", b"1"]
        with psycopg.connect(postgres_empty_dsn) as conn:
            ranks = conn.execute(
                "SELECT count(*) FROM cereal_tasks WHERE priority = 0 AND ready_rank = start_after"
            ).fetchone()
        assert ranks == (3,)


async def test_the_ready_rank_follows_the_due_time(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        # Given a running task of priority 2
        await started(driver, WF, INST, tasks=[NewTask("t", None, priority=2)])
        [(_, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)

        # When it is retried an hour from now
        await completer.retry("boom", 3600)

        # Then its rank is that new due time less two minutes
        with psycopg.connect(postgres_dsn) as conn:
            row = conn.execute(
                "SELECT start_after - ready_rank, start_after > now() + interval '59 minutes' "
                "FROM cereal_tasks"
            ).fetchone()
        assert row is not None
        assert row[0].total_seconds() == 120 and row[1] is True


async def test_a_claim_returns_tasks_committed_while_it_waited_in_rank_order(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        # Given a keyed task of key K (priority 0) that became due ten minutes ago
        ten_minutes_ago = utcnow() - timedelta(minutes=10)
        keyed = NewTask(
            "t", b'"keyed-old"', ten_minutes_ago, concurrency_key="K", concurrency_limit=5
        )
        await started(driver, WF, INST, tasks=[keyed])
        with (
            psycopg.connect(postgres_dsn) as holder,
            psycopg.connect(postgres_dsn, autocommit=True) as other,
        ):
            # and another session holding K's lock, so a claim waits for it
            holder.execute("SELECT pg_advisory_xact_lock(1667592805, hashtext('K'))")
            claim = asyncio.create_task(driver.dequeue_tasks("t", 10, task_expiry=3600))

            await wait_until(
                lambda: someone_waits_for_an_advisory_lock(other),
                what="the claim waiting for K's lock",
            )
            # When an urgent unkeyed task (priority 100) is committed meanwhile
            other.execute(
                "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, "
                "task_name, parameters, start_after, priority) "
                "SELECT id, workflow_name, instance_name, 't', '\"unkeyed-urgent\"', "
                "now() - interval '1 minute', 100 "
                "FROM cereal_workflow_instances"
            )
            holder.commit()
            claimed = await asyncio.wait_for(claim, timeout=30)

        # Then the claim takes both, and returns them in rank order: the urgent one first
        assert [data.parameters for data, _ in claimed] == [b'"unkeyed-urgent"', b'"keyed-old"']
