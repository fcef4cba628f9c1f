"""PostgreSQL schedules under contention: an update racing another change of the row."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg

from cereal import Manager
from cereal.drivers.postgres import PostgresDriver
from tests.plugins.manager import eventually

WF, SCHED = "wf", "nightly"
RULE = "DTSTART:20990101T000000Z\nRRULE:FREQ=DAILY"


async def test_enabling_does_not_overwrite_a_rule_change_committed_meanwhile(
    postgres_dsn: str,
) -> None:
    manager = Manager(PostgresDriver(postgres_dsn, notify=False))
    try:
        # Given a disabled schedule, and another session changing its rule and
        # due time, holding the row lock until we let it commit
        await manager.create_workflow_schedule(WF, SCHED, None, RULE, enabled=False)
        theirs = datetime(2098, 6, 1, tzinfo=UTC)
        other = await psycopg.AsyncConnection.connect(postgres_dsn)
        try:
            await other.execute(
                "UPDATE cereal_workflow_schedules SET recurrence = %s, next_due_at = %s"
                " WHERE workflow_name = %s AND instance_name = %s",
                ("FREQ=HOURLY", theirs, WF, SCHED),
            )

            # When the schedule is enabled while that change is uncommitted
            enabling = asyncio.create_task(
                manager.update_workflow_schedule(WF, SCHED, enabled=True)
            )
            async with await psycopg.AsyncConnection.connect(postgres_dsn) as probe:

                async def blocked() -> bool:
                    cursor = await probe.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%cereal_workflow_schedules%'"
                    )
                    row = await cursor.fetchone()
                    return row is not None and row[0] > 0

                await eventually(blocked, what="the enabling update waits for the row lock")
            await other.commit()
            await enabling
        finally:
            await other.close()

        # Then the other change survives: its rule and its due time, now enabled
        got = await manager.get_workflow_schedule(WF, SCHED)
        assert (got.enabled, got.recurrence, got.next_due_at) == (True, "FREQ=HOURLY", theirs)
    finally:
        await manager.stop()
