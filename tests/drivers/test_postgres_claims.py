"""PostgreSQL claims under contention: SKIP LOCKED claimers, leases, sweeps."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from cereal import errors
from cereal.drivers.postgres import PostgresDriver
from cereal.models import NewTask, TaskStatus, WorkflowEventType
from tests.conformance._driver_helpers import sweep

WF = "wf"


async def fan_out(driver: PostgresDriver, count: int, task_name: str = "t") -> None:
    """One instance whose start event enqueues ``count`` tasks in one continue_."""
    await driver.enqueue_workflow(WF, "fan", None)
    _, completer = await driver.dequeue_workflow([WF])
    async with completer:
        tasks = [NewTask(task_name, str(n).encode()) for n in range(count)]
        await completer.continue_(None, tasks)


async def test_eight_claimers_never_share_a_task(postgres_dsn: str) -> None:
    drivers = [PostgresDriver(postgres_dsn, max_size=2, notify=False) for _ in range(8)]
    for each in drivers:
        await each.init()
    try:
        await fan_out(drivers[0], 2000)
        claimed: list[str] = []

        async def claimer(driver: PostgresDriver) -> None:
            while True:
                batch = await driver.dequeue_tasks("t", 7)
                if not batch:
                    return
                claimed.extend(data.metadata.task_id for data, _ in batch)
                await asyncio.sleep(0)

        await asyncio.gather(*(claimer(each) for each in drivers))

        assert len(claimed) == 2000
        assert [tid for tid, n in Counter(claimed).items() if n > 1] == []
        with psycopg.connect(postgres_dsn) as conn:
            states = conn.execute("SELECT state, count(*) FROM cereal_tasks GROUP BY 1").fetchall()
        assert states == [("running", 2000)]
    finally:
        for each in drivers:
            await each.close()


async def test_a_zombie_cannot_complete_after_its_lease_expired(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await fan_out(driver, 1)
        [(_, zombie)] = await driver.dequeue_tasks("t", 1, task_expiry=0.01)

        expired = 0
        deadline = time.monotonic() + 15
        while expired == 0 and time.monotonic() < deadline:  # until its 10 ms lease lapses
            expired += (await sweep(driver, 3600)).expired_tasks
        assert expired == 1

        for late in (zombie.succeed(b'"late"'), zombie.fail("late"), zombie.heartbeat()):
            with pytest.raises(errors.TaskLostError):
                await late
        with pytest.raises(errors.TaskLostError):
            await zombie.abandon()

        event, completer = await driver.dequeue_workflow([WF])
        async with completer:
            assert event.type == WorkflowEventType.TASK_COMPLETE
            assert event.task_result is not None
            assert event.task_result.status == TaskStatus.LOST
            assert event.task_result.result is None
            await completer.continue_(None, [])
        with pytest.raises(errors.NoWorkflowInstancesError):
            await driver.dequeue_workflow([WF])  # the zombie added no second event


async def test_a_stale_lease_token_is_rejected(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await fan_out(driver, 1)
        [(data, real)] = await driver.dequeue_tasks("t", 1)
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            # the lease moves on (as if re-claimed): the old token must not work
            conn.execute("UPDATE cereal_tasks SET lease = gen_random_uuid()")
        with pytest.raises(errors.TaskLostError):
            await real.succeed(b'"x"')
        with psycopg.connect(postgres_dsn) as conn:
            row = conn.execute("SELECT state FROM cereal_tasks").fetchone()
            results = conn.execute("SELECT count(*) FROM cereal_task_results").fetchone()
        assert row == ("running",)
        assert results == (0,)
        assert data.metadata.attempt == 1


async def test_sweep_expires_only_stale_leases_once_across_sweepers(postgres_dsn: str) -> None:
    drivers = [PostgresDriver(postgres_dsn, notify=False) for _ in range(4)]
    for each in drivers:
        await each.init()
    try:
        await fan_out(drivers[0], 30)
        claimed = await drivers[0].dequeue_tasks("t", 30)
        fresh = {data.metadata.task_id for data, _ in claimed[:10]}
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE cereal_tasks SET heartbeat_at = now() - interval '1 hour'"
                " WHERE NOT (id = ANY(%s))",
                ([int(t) for t in fresh],),
            )

        reports = await asyncio.gather(*(sweep(each, 60) for each in drivers))

        assert sum(report.expired_tasks for report in reports) == 20
        for data, completer in claimed:
            if data.metadata.task_id in fresh:
                await completer.heartbeat()
            else:
                with pytest.raises(errors.TaskLostError):
                    await completer.heartbeat()
        with psycopg.connect(postgres_dsn) as conn:
            lost = conn.execute(
                "SELECT count(*) FROM cereal_workflow_events WHERE event_type = 'task_complete'"
            ).fetchone()
        assert lost == (20,)
    finally:
        for each in drivers:
            await each.close()


async def test_callbacks_of_one_instance_never_overlap_across_drivers(postgres_dsn: str) -> None:
    drivers = [PostgresDriver(postgres_dsn, notify=False) for _ in range(4)]
    for each in drivers:
        await each.init()
    try:
        for n in range(6):
            await drivers[0].enqueue_workflow(WF, f"i{n}", None)
            for _ in range(4):
                await drivers[0].cancel_workflow(WF, f"i{n}")
        busy: set[str] = set()
        handled: Counter[str] = Counter()

        async def consume(driver: PostgresDriver) -> None:
            idle = 0
            while idle < 3:
                try:
                    event, completer = await driver.dequeue_workflow([WF])
                except errors.NoWorkflowInstancesError:
                    idle += 1
                    await asyncio.sleep(0.01)
                    continue
                idle = 0
                async with completer:
                    name = event.instance.instance_name
                    assert name not in busy
                    busy.add(name)
                    await asyncio.sleep(0.002)
                    busy.discard(name)
                    handled[name] += 1
                    await completer.continue_(None, [])

        await asyncio.gather(*(consume(each) for each in drivers))
        assert handled == Counter({f"i{n}": 5 for n in range(6)})
    finally:
        for each in drivers:
            await each.close()


async def test_kill_does_not_wait_for_a_running_callback(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        _, completer = await driver.dequeue_workflow([WF])
        await asyncio.wait_for(driver.kill_workflow(WF, "i", "killed"), timeout=5)
        with pytest.raises(errors.WorkflowClaimLostError):
            await completer.continue_(None, [NewTask("t")])
        assert await driver.dequeue_tasks("t", 5) == []
        assert (await driver.get_workflow_instance(WF, "i")).err == "killed"


class ReleaseGatedDriver(PostgresDriver):
    """A PostgresDriver whose next connection release, once armed, waits at a gate."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn, notify=False)
        self.armed = False
        self.at_gate = asyncio.Event()
        self.gate = asyncio.Event()

    async def _release(self, pool: Any, conn: Any) -> None:
        if self.armed:
            self.armed = False
            self.at_gate.set()
            await self.gate.wait()
        await super()._release(pool, conn)


async def test_a_claim_cancelled_after_its_statement_gives_the_tasks_back(
    postgres_dsn: str,
) -> None:
    async with ReleaseGatedDriver(postgres_dsn) as driver:
        await fan_out(driver, 2)
        # Given a claim whose statement has run, held while its connection is released
        driver.armed = True
        claiming = asyncio.create_task(driver.dequeue_tasks("t", 2))
        await driver.at_gate.wait()

        # When the claimer is cancelled there (as a stopping runner is)
        claiming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claiming

        # Then both tasks are queued again, unleased, and the next claim gets them
        with psycopg.connect(postgres_dsn) as conn:
            rows = conn.execute(
                "SELECT state, lease IS NULL, attempt FROM cereal_tasks ORDER BY id"
            ).fetchall()
        assert rows == [("queued", True, 0), ("queued", True, 0)]
        again = await driver.dequeue_tasks("t", 2)
        assert sorted(data.get_parameters() for data, _ in again) == [0, 1]
        assert [data.metadata.attempt for data, _ in again] == [1, 1]


async def test_a_claim_blocked_by_another_transaction_and_cancelled_claims_nothing(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await fan_out(driver, 1)
        with psycopg.connect(postgres_dsn) as locker:
            # Given another transaction holding the tasks table, so the claim statement blocks
            locker.execute("LOCK TABLE cereal_tasks IN ACCESS EXCLUSIVE MODE")
            claiming = asyncio.create_task(driver.dequeue_tasks("t", 1))

            async def claim_waits() -> bool:
                with psycopg.connect(postgres_dsn) as probe:
                    row = probe.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND query LIKE '%%claim_tasks%%'"
                    ).fetchone()
                return row is not None and row[0] > 0

            deadline = asyncio.get_running_loop().time() + 15
            while not await claim_waits():
                assert asyncio.get_running_loop().time() < deadline, "the claim never blocked"
                await asyncio.sleep(0.02)

            # When the claimer is cancelled, and then the lock is released
            claiming.cancel()
            with pytest.raises(asyncio.CancelledError):
                await claiming
            locker.rollback()

        # Then the task is still queued and the next claim gets it
        [(data, _)] = await driver.dequeue_tasks("t", 1)
        assert data.metadata.attempt == 1
