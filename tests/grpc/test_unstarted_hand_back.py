"""Handing back a never-started task over gRPC: uncounted, or counted by an older server.

A server names ``unstarted_hand_back`` among its features when it takes the
report; a client of a server that does not sends a plain (counted) hand-back
instead, which that server understands.
"""

from __future__ import annotations

from typing import Any

from cereal.drivers.postgres._completers import PostgresTaskCompleter
from cereal.drivers.sqlite._tasks import SQLiteTaskCompleter
from cereal.models import NewTask, TaskStatus, WorkflowEventType
from cereal.retry import DEFAULT_MAX_HAND_BACKS
from cereal.server import service
from cereal.wire import features

WF = "wf"


async def _one_task(client: Any) -> None:
    await client.enqueue_workflow(WF, "i", None)
    [(_, completer)] = await client.claim_workflows([WF])
    await completer.continue_(None, [NewTask("t")])
    await completer.close()


async def _hand_back_unstarted(client: Any, times: int) -> list[bool]:
    queued = []
    for _ in range(times):
        [(_, lease)] = await client.dequeue_tasks("t", 1, task_expiry=3600)
        queued.append(await lease.hand_back_unstarted())
    return queued


async def test_a_current_server_hands_back_an_unstarted_task_uncounted(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())
    await _one_task(client)
    assert client._server_features >= {features.UNSTARTED_HAND_BACK}

    queued = await _hand_back_unstarted(client, DEFAULT_MAX_HAND_BACKS + 2)

    assert queued == [True] * (DEFAULT_MAX_HAND_BACKS + 2)
    assert len(await client.dequeue_tasks("t", 1, task_expiry=3600)) == 1


async def test_a_client_of_an_older_server_hands_back_counted(
    served_url: str, grpc_server_factory: Any, open_client: Any, monkeypatch: Any
) -> None:
    # Given a server that does not name the feature
    monkeypatch.setattr(service, "SERVER_FEATURES", (features.SESSIONS,))
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())
    await _one_task(client)

    # When an unstarted task is handed back once more than the limit
    queued = await _hand_back_unstarted(client, DEFAULT_MAX_HAND_BACKS + 1)

    # Then each went as a plain hand-back, counted: the last one reported it LOST
    assert queued == [True] * DEFAULT_MAX_HAND_BACKS + [False]
    events = await client.list_instance_events(WF, "i")
    statuses = [e.task_status for e in events if e.type == WorkflowEventType.TASK_COMPLETE]
    assert statuses == [TaskStatus.LOST]


async def test_a_refused_uncounted_hand_back_is_sent_again_counted(
    served_url: str, grpc_server_factory: Any, open_client: Any, monkeypatch: Any
) -> None:
    # Given a server that names the feature, but whose store refuses the report (as an
    # older server of a mixed fleet would, that took the lease up again)
    async def refuse(self: Any) -> bool:
        raise ValueError("a task report names no action")

    for completer in (SQLiteTaskCompleter, PostgresTaskCompleter):
        monkeypatch.setattr(completer, "hand_back_unstarted", refuse)
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())
    await _one_task(client)

    # When the client hands a task back uncounted, then it is handed back counted instead
    assert await _hand_back_unstarted(client, DEFAULT_MAX_HAND_BACKS + 1) == [True] * (
        DEFAULT_MAX_HAND_BACKS
    ) + [False]
