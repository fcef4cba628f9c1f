"""Two reports on one lease from a gRPC client, queued behind a busy group commit.

The server applies a stream's reports concurrently, so a client that sends
``succeed`` and ``abandon`` on one lease while the server's PostgreSQL group
commit is busy gets both merged into the next group. A second psycopg
connection holds the instance row the busy group needs (observed waiting in
``pg_stat_activity``) until both reports are queued on the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from cereal import errors
from cereal.models import NewTask, TaskStatus
from cereal.wire.domain_names import DEFAULT_DOMAIN
from tests._waiting import wait_until

WF, INST = "wf", "inst"


async def _blocked_by(watcher: psycopg.AsyncConnection[Any], pid: int) -> bool:
    cur = await watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
    )
    row = await cur.fetchone()
    return row is not None and row[0] > 0


async def test_succeed_and_abandon_on_one_lease_behind_a_busy_group_one_wins(
    postgres_dsn: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(postgres_dsn, maintenance=False)
    client = await open_client(server.url())
    await client.enqueue_workflow(WF, INST, None)
    [(_, decision)] = await client.claim_workflows([WF])
    await decision.continue_(None, [NewTask("t", b"0"), NewTask("t", b"1")])
    [(_, busy), (_, raced)] = await client.dequeue_tasks("t", 2)
    # the served store's completion group commit (internals: read only, to see its queue)
    hosted = server._server._domains._domains[DEFAULT_DOMAIN].driver
    completions = hosted._committers[server._loop]["completion"]

    watcher = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    locker = await psycopg.AsyncConnection.connect(postgres_dsn)
    try:
        # Given the server's group commit held busy on the instance row
        await locker.execute(
            "SELECT id FROM cereal_workflow_instances WHERE workflow_name = %s FOR UPDATE",
            (WF,),
        )
        pid_row = await (await locker.execute("SELECT pg_backend_pid()")).fetchone()
        assert pid_row is not None
        first_group = asyncio.ensure_future(busy.succeed(None))
        await wait_until(lambda: _blocked_by(watcher, int(pid_row[0])), what="a busy group")
        # When the client sends succeed and abandon on one lease meanwhile
        racing = asyncio.gather(raced.succeed(b'"won"'), raced.abandon(), return_exceptions=True)
        await wait_until(lambda: len(completions._queue) == 2, what="both reports queued")
        await locker.rollback()
        await first_group
        outcomes = await racing
    finally:
        await locker.close()
        await watcher.close()

    # Then exactly one won, the other got the stale-lease error, the workflow sees one result
    assert sum(outcome is None for outcome in outcomes) == 1, outcomes
    assert sum(isinstance(outcome, errors.TaskLostError) for outcome in outcomes) == 1, outcomes
    [(events, completer)] = await client.claim_workflows([WF], max_events=10)
    seen = sorted(
        (event.task_result.parameters or b"", event.task_result.status.value)
        for event in events
        if event.task_result is not None
    )
    winner = TaskStatus.SUCCESS if outcomes[0] is None else TaskStatus.LOST
    assert seen == [(b"0", TaskStatus.SUCCESS.value), (b"1", winner.value)]
    await completer.done(None)
