"""A stopping server finishes the lease endings of streams that closed before it stopped.

When a client's stream closes without reporting its leases, the server ends
them (queued again or LOST) in a task of its own. A stop that came meanwhile
must wait for that write before it closes the stores: closing them under it
would leave the task leased until its expiry and a write pending on a loop
that is gone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import psycopg
import pytest

from cereal.drivers.postgres import PostgresDriver
from cereal.models import NewTask, TaskStatus
from tests._waiting import wait_until

WAITING = "waiting for 1 lease ending(s)"


async def test_stop_waits_for_an_ending_held_behind_a_row_lock(
    postgres_dsn: str,
    grpc_server_factory: Any,
    open_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = grpc_server_factory(postgres_dsn, maintenance=False)
    client = await open_client(server.url())
    await client.enqueue_workflow("wf", "inst", None)
    [(_, claim)] = await client.claim_workflows(["wf"])
    await claim.continue_(None, [NewTask("t", b"1")])
    await claim.close()
    [(task, lease)] = await client.dequeue_tasks("t", 1, task_expiry=3600.0)
    service = server._server._service

    # Given another session holds the task's row lock
    holder = psycopg.connect(postgres_dsn)
    holder.execute(
        "SELECT 1 FROM cereal_tasks WHERE id = %s FOR UPDATE", [int(task.metadata.task_id)]
    )
    try:
        # And the lease's stream closed unreported: its ending waits for the lock
        caplog.set_level(logging.INFO, logger="cereal")
        client._io.loop.call_soon_threadsafe(lease._stream._call.cancel)
        await wait_until(lambda: bool(service._abandoning), what="the server to end the lease")

        # When the server stops meanwhile, it says it waits for that ending
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        await wait_until(lambda: WAITING in caplog.text, what="the stop to wait for the ending")
    finally:
        holder.rollback()
        holder.close()
    await asyncio.to_thread(stopping.join)

    # Then the ending was written before the stores closed: the task (no retries
    # left) is reported LOST to its run at once, not left leased until its expiry
    store = PostgresDriver(postgres_dsn)
    await store.init()
    try:
        assert await store.list_tasks("t") == []
        [dead] = await store.list_dead_tasks()
    finally:
        await store.close()
    assert (dead.task_id, dead.status) == (task.metadata.task_id, TaskStatus.LOST)
