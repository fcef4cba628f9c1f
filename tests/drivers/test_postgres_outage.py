"""PostgreSQL connection loss: errors are DriverError, nothing is half-applied, all reconnects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from cereal import errors
from cereal.drivers.postgres import PostgresDriver
from cereal.models import NewTask, WorkflowEventType

T = TypeVar("T")
WF = "wf"


def terminate_cereal_backends(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'cereal'"
        ).fetchone()
    return int(row[0]) if row else 0


async def retrying(operation: Callable[[], Awaitable[T]], attempts: int = 20) -> T:
    """What a runner does: back off and retry on DriverError."""
    for _ in range(attempts - 1):
        try:
            return await operation()
        except errors.DriverError:
            await asyncio.sleep(0.05)
    return await operation()


async def test_operations_survive_terminated_backends(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, min_size=3) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        event, completer = await driver.dequeue_workflow([WF])
        assert event.type == WorkflowEventType.START

        assert terminate_cereal_backends(postgres_dsn) >= 2  # pool + LISTEN connections

        # the decision holds no connection across the callback (the claim is a token
        # in the instance row), so it commits on a fresh pooled connection
        await completer.continue_(b'"p"', [NewTask("t")] * 3)
        await completer.close()

        # next operations succeed after the pool replaced its connections
        got = await retrying(lambda: driver.get_workflow_instance(WF, "i"))
        assert got.payload == b'"p"'
        assert len(await retrying(lambda: driver.dequeue_tasks("t", 10))) == 3


async def test_every_pooled_connection_stale_at_once(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, min_size=4, max_size=4, notify=False) as driver:
        terminate_cereal_backends(postgres_dsn)
        await asyncio.sleep(0.1)  # the server has closed the sockets by now
        # the liveness check drops dead connections before use: no error at all
        await driver.enqueue_workflow(WF, "fresh", None)
        assert (await driver.get_workflow_instance(WF, "fresh")).is_running()


async def test_listener_reconnects_and_hears_again(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as listener, PostgresDriver(postgres_dsn) as sender:
        heard: list[tuple[str, str | None]] = []
        listener.add_wakeup_listener(lambda kind, name: heard.append((kind, name)))

        terminate_cereal_backends(postgres_dsn)
        # after reconnecting, the listener reports "anything may be ready"
        await wait_for(lambda: ("workflow", None) in heard)

        heard.clear()
        await retrying(lambda: sender.enqueue_workflow(WF, "after", None))
        await wait_for(lambda: ("workflow", WF) in heard)


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
