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
from tests._waiting import DEADLINE, wait_until

T = TypeVar("T")
WF = "wf"


CEREAL_BACKENDS = (
    "SELECT pid FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = 'cereal'"
)
TERMINATE_WAIT_MS = 30_000


def cereal_backend_pids(dsn: str) -> set[int]:
    """The server processes of this database's cereal sessions (pool and LISTEN)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {int(pid) for (pid,) in conn.execute(CEREAL_BACKENDS).fetchall()}


def terminate_cereal_backends(dsn: str) -> set[int]:
    """Terminate this database's cereal sessions from a second connection; returns their pids.

    Each termination waits until the backend has exited (PostgreSQL 14's
    ``pg_terminate_backend(pid, timeout)``): by then it has sent its FATAL
    error and closed its socket, so the client side sees a dead connection. A
    bare ``pg_terminate_backend(pid)`` only sends the signal; a connection used
    at once may still look alive and fail on its first statement instead.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, pg_terminate_backend(pid, %s) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'cereal'",
            (TERMINATE_WAIT_MS,),
        ).fetchall()
    assert all(exited for _, exited in rows), f"backends still alive after the wait: {rows}"
    return {int(pid) for pid, _ in rows}


async def retrying(operation: Callable[[], Awaitable[T]], timeout: float = DEADLINE) -> T:
    """What a runner does: back off and retry on DriverError (bounded by a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await operation()
        except errors.DriverError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_operations_survive_terminated_backends(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, min_size=3) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        event, completer = await driver.dequeue_workflow([WF])
        assert event.type == WorkflowEventType.START

        assert len(terminate_cereal_backends(postgres_dsn)) >= 2  # pool + LISTEN connections

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
        pool = driver._require_pool()
        # Given every pooled connection's backend terminated (and exited)
        terminated = terminate_cereal_backends(postgres_dsn)
        assert len(terminated) == 4
        assert pool.get_stats().get("returns_bad", 0) == 0

        # When the driver is used: the liveness check drops the dead connections before
        # use, so there is no error at all
        await driver.enqueue_workflow(WF, "fresh", None)
        assert (await driver.get_workflow_instance(WF, "fresh")).is_running()

        # Then the stale-connection path ran: dead connections were closed and given back
        # to the pool as bad, and the work ran on new backends
        assert pool.get_stats().get("returns_bad", 0) >= 1
        now = cereal_backend_pids(postgres_dsn)
        assert now and now.isdisjoint(terminated)


async def test_listener_reconnects_and_hears_again(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as listener, PostgresDriver(postgres_dsn) as sender:
        heard: list[tuple[str, str | None]] = []
        listener.add_wakeup_listener(lambda kind, name: heard.append((kind, name)))

        terminate_cereal_backends(postgres_dsn)
        # after reconnecting, the listener reports "anything may be ready"
        await wait_until(lambda: ("workflow", None) in heard, what="the catch-all wakeup")

        heard.clear()
        await retrying(lambda: sender.enqueue_workflow(WF, "after", None))
        await wait_until(lambda: ("workflow", WF) in heard, what="the wakeup for the new instance")
