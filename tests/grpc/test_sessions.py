"""Session streams: a client's claims share one long-lived stream per kind.

A busy worker used to open a stream per claim; now its workflow claims go on
one ``WorkflowSession`` and its task leases on one ``TaskSession``. These
tests hold the protocol (numbering across the session, refusals, a finished
lease), the client's use of it (one stream per kind, a retired session,
an older server without sessions) and a stopping server's handling of idle
sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import grpc
from cereal import errors, open_driver
from cereal.drivers.grpc import _client_streams
from cereal.models import NewTask, TaskStatus, WorkflowEventType, WorkflowInstanceStatus
from cereal.server import service
from cereal.server.service import CerealService
from cereal.wire.error_status import error_from_pb
from cereal.wire.proto import cereal_v1_pb2 as pb
from cereal.wire.proto import cereal_v1_pb2_grpc as pb_grpc
from tests._waiting import wait_until

WF = "wf"


async def _start_with_tasks(client: Any, instance: str, *parameters: bytes) -> None:
    """Enqueue ``instance`` and continue its start with one task ``t`` per parameter."""
    await client.enqueue_workflow(WF, instance, None)
    [(_, completer)] = await client.claim_workflows([WF])
    await completer.continue_(None, [NewTask("t", p) for p in parameters])
    await completer.close()


async def _task_results(driver: Any, instance: str) -> list[TaskStatus | None]:
    """The statuses of the instance's task completion events, oldest first."""
    events = await driver.list_instance_events(WF, instance)
    return [e.task_status for e in events if e.type == WorkflowEventType.TASK_COMPLETE]


async def test_claims_and_leases_share_one_session_each(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())

    # Given three instances claimed one by one, each continued with two tasks
    for i in range(3):
        await _start_with_tasks(client, f"i{i}", b"1", b"2")

    # When the six tasks are dequeued two at a time
    leased = []
    for _ in range(3):
        batch = await client.dequeue_tasks("t", 2)
        assert len(batch) == 2
        leased.extend(batch)

    # Then every claim and lease went on one stream per kind: two streams in all
    assert len(client._streams) == 2
    assert len({completer._stream for _, completer in leased}) == 1
    for _, completer in leased:
        await completer.succeed(b"1")
    for i in range(3):
        assert await _task_results(client, f"i{i}") == [TaskStatus.SUCCESS] * 2


@pytest.fixture
async def session(served_url: str, grpc_server_factory: Any) -> AsyncIterator[Any]:
    """A raw TaskSession call on a fresh served store holding two queued tasks."""
    server = grpc_server_factory(served_url, maintenance=False)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.CerealStub(channel)  # type: ignore[no-untyped-call]
        await stub.EnqueueWorkflow(pb.EnqueueWorkflowRequest(workflow_name=WF, instance_name="i"))
        claim = stub.ClaimWorkflows()
        ask = pb.ClaimWorkflowsRequest(
            workflow_names=[WF], max_instances=1, max_events=1, claim_expiry=60.0
        )
        await claim.write(pb.WorkflowStreamRequest(claim=ask))
        assert len((await claim.read()).claimed.instances) == 1
        tasks = [pb.NewTask(task_name="t"), pb.NewTask(task_name="t")]
        decision = pb.WorkflowDecision(request_id=1, claim=0, continue_=pb.Continue(tasks=tasks))
        await claim.write(pb.WorkflowStreamRequest(decision=decision))
        assert not (await claim.read()).answer.HasField("error")
        await claim.done_writing()
        call = stub.TaskSession()
        yield call
        call.cancel()


def _dequeue(request_id: int, max_tasks: int = 1, task_name: str = "t") -> pb.TaskStreamRequest:
    ask = pb.DequeueTasksRequest(
        task_name=task_name, max_tasks=max_tasks, task_expiry=60.0, request_id=request_id
    )
    return pb.TaskStreamRequest(dequeue=ask)


def _succeed(request_id: int, lease: int) -> pb.TaskStreamRequest:
    report = pb.TaskReport(request_id=request_id, lease=lease, succeed=pb.Succeed())
    return pb.TaskStreamRequest(report=report)


async def test_a_session_numbers_leases_across_dequeues_and_refuses_finished_ones(
    session: Any,
) -> None:
    # Given two dequeues of one task each on one session
    await session.write(_dequeue(7))
    first = await session.read()
    await session.write(_dequeue(8))
    second = await session.read()

    # Then each batch answers its request and the numbering goes on across them
    assert (first.leased.request_id, first.leased.first_lease, len(first.leased.tasks)) == (7, 0, 1)
    assert (second.leased.request_id, second.leased.first_lease) == (8, 1)

    # And a lease reports once; a second report is lost, an index never given is refused
    await session.write(_succeed(9, 0))
    assert not (await session.read()).answer.HasField("error")
    await session.write(_succeed(10, 0))
    again = (await session.read()).answer
    assert isinstance(error_from_pb(again.error), errors.TaskLostError)
    await session.write(_succeed(11, 5))
    unknown = (await session.read()).answer
    assert isinstance(error_from_pb(unknown.error), ValueError)

    # And a refused dequeue is answered on the session, which stays usable
    await session.write(_dequeue(12, task_name=""))
    refused = (await session.read()).answer
    assert refused.request_id == 12 and isinstance(error_from_pb(refused.error), ValueError)
    await session.write(_succeed(13, 1))
    assert not (await session.read()).answer.HasField("error")


async def test_an_unreported_lease_ends_with_its_session(session: Any, served_url: str) -> None:
    # Given a session holding one of the two leases when it is cancelled
    await session.write(_dequeue(1))
    assert len((await session.read()).leased.tasks) == 1
    session.cancel()

    # Then the server ends it as for a vanished client: the task is reported LOST
    store = open_driver(served_url)  # the served store, read directly
    await store.init()
    try:

        async def reported() -> bool:
            return await _task_results(store, "i") == [TaskStatus.LOST]

        await wait_until(reported, what="the session's unreported lease to be reported LOST")
    finally:
        await store.close()


async def test_a_client_of_an_older_server_claims_on_a_stream_per_claim(
    served_url: str, grpc_server_factory: Any, open_client: Any, monkeypatch: Any
) -> None:
    # Given a server as before sessions: no session RPCs, none in its first wakeup
    monkeypatch.setattr(CerealService, "TaskSession", pb_grpc.CerealServicer.TaskSession)
    monkeypatch.setattr(CerealService, "WorkflowSession", pb_grpc.CerealServicer.WorkflowSession)
    monkeypatch.setattr(service, "SERVER_FEATURES", ())
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())

    # When a workflow runs to its end through that client
    await _start_with_tasks(client, "old", b"1")
    [(_, lease)] = await client.dequeue_tasks("t", 1)
    await lease.succeed(b'"done"')
    [(events, completer)] = await client.claim_workflows([WF])
    assert events[-1].type == WorkflowEventType.TASK_COMPLETE
    await completer.done(b'"ok"')
    await completer.close()

    # Then it ran on batch streams, never asking for a session
    got = await client.get_workflow_instance(WF, "old")
    assert (got.status, got.result) == (WorkflowInstanceStatus.COMPLETED, b'"ok"')
    assert client._sessions.supported is False
    assert not client._sessions._current


async def test_a_session_past_its_index_limit_gives_way_to_a_new_one(
    served_url: str, grpc_server_factory: Any, open_client: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(_client_streams, "SESSION_INDEX_LIMIT", 1)
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())
    await _start_with_tasks(client, "i", b"1", b"2", b"3")

    # Given a first batch that takes the session past its limit
    first = await client.dequeue_tasks("t", 2)
    old = first[0][1]._stream
    assert not old.takes_claims

    # When the next dequeue comes
    [(_, later)] = await client.dequeue_tasks("t", 2)

    # Then it went on a new session, the old one's leases still report, and the
    # old session closes once they did
    assert later._stream is not old
    for _, lease in [*first, (None, later)]:
        await lease.succeed(b"1")
    assert await _task_results(client, "i") == [TaskStatus.SUCCESS] * 3
    await wait_until(lambda: _ended(old), what="the retired session to close")


async def _ended(stream: Any) -> bool:
    return bool(stream.ended)


async def test_a_stopping_server_ends_idle_sessions_without_waiting_for_its_grace(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())

    # Given idle sessions of both kinds (each asked once, holding nothing)
    assert await client.dequeue_tasks("t", 1) == []
    assert await client.claim_workflows([WF]) == []
    sessions = set(client._streams)
    assert len(sessions) == 2

    # When the server stops with a grace far longer than the waits below
    stopping = asyncio.run_coroutine_threadsafe(server._server.stop(grace=600), server._loop)

    # Then it ends both sessions at once, not at the end of its grace
    for stream in sessions:
        await wait_until(lambda s=stream: _ended(s), what="an idle session to end")
    # ... and the client's wakeup watch too: it has stopped with the client still open
    await asyncio.wait_for(asyncio.wrap_future(stopping), timeout=60)


async def test_reports_joined_in_one_message_are_each_applied_and_answered(session: Any) -> None:
    # Given both tasks leased on one session
    await session.write(_dequeue(1, max_tasks=2))
    assert len((await session.read()).leased.tasks) == 2

    # When their reports, and one for an index never given, come in one message
    joined = [_succeed(2, 0).report, _succeed(3, 1).report, _succeed(4, 9).report]
    await session.write(pb.TaskStreamRequest(reports=pb.TaskReports(reports=joined)))

    # Then each is answered by its id (alone or joined with others), the bad one refused
    answers: dict[int, pb.Answer] = {}
    while len(answers) < 3:
        reply = await session.read()
        kind = reply.WhichOneof("message")
        assert kind in ("answer", "answers")
        for answer in [reply.answer] if kind == "answer" else reply.answers.answers:
            answers[answer.request_id] = answer
    assert not answers[2].HasField("error") and not answers[3].HasField("error")
    assert isinstance(error_from_pb(answers[4].error), ValueError)


def _heartbeat(request_id: int) -> pb.TaskStreamRequest:
    report = pb.TaskReport(request_id=request_id, lease=request_id, heartbeat=pb.Empty())
    return pb.TaskStreamRequest(report=report)


def test_queued_reports_are_joined_in_order_within_the_size_limit() -> None:
    dequeue = _dequeue(9)
    queued = [_heartbeat(1), _heartbeat(2), dequeue, _heartbeat(3), _heartbeat(4), _heartbeat(5)]

    out = _client_streams.combined(queued, max_bytes=1 << 20)

    # runs of reports become one message each; the dequeue keeps its place
    assert [m.WhichOneof("message") for m in out] == ["reports", "dequeue", "reports"]
    assert [r.request_id for r in out[0].reports.reports] == [1, 2]
    assert [r.request_id for r in out[2].reports.reports] == [3, 4, 5]

    # a run that would pass the limit is split; a lone report stays as it was
    one = _heartbeat(1).ByteSize() + _client_streams._ITEM_OVERHEAD
    split = _client_streams.combined(queued[:3], max_bytes=2 * one)
    assert [m.WhichOneof("message") for m in split] == ["reports", "dequeue"]
    split = _client_streams.combined([_heartbeat(1), _heartbeat(2)], max_bytes=one)
    assert [m.WhichOneof("message") for m in split] == ["report", "report"]
