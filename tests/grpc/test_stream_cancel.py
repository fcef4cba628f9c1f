"""A caller cancelled mid-request affects only its own request, never the shared stream.

The leases of one dequeued batch (and the claims of one claimed batch) share
a stream. Cancelling a grpc.aio write cancels the whole call, after which the
server ends every unreported lease of the stream: a cancelled report (a
graceful stop past its grace period, a cancelled keepalive) must not do that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest

from cereal import errors
from cereal.models import NewTask, TaskStatus, WorkflowEvent, WorkflowInstanceStatus
from tests._waiting import wait_until


class Gate:
    """Held shut on the client's I/O loop until the test, on its own loop, releases it.

    ``entered`` is set the first time something waits at the gate; later
    passes go through without waiting.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._open = asyncio.Event()
        self.entered: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def pass_once(self) -> bool:
        """Wait at the gate the first time; returns whether this pass waited."""
        if self.entered.done():
            return False
        self.entered.set_result(None)
        await self._open.wait()
        return True

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)


class HeldWrite(Gate):
    """Wraps a stream's grpc.aio call: its next write is held until :meth:`release`.

    Stands for a write stuck on a slow connection. A cancelled write cancels the
    whole call, as grpc.aio's own ``write`` does when cancelled mid-way.
    """

    def __init__(self, call: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._call = call

    async def write(self, request: Any) -> None:
        try:
            await self.pass_once()
        except asyncio.CancelledError:
            self._call.cancel()
            raise
        await self._call.write(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


async def _task_events(client: Any, count: int) -> list[WorkflowEvent]:
    """The instance's next ``count`` task completions (claimed, then released)."""
    found: list[WorkflowEvent] = []

    async def claimed() -> bool:
        batch = await client.claim_workflows(["wf"], max_events=count)
        for events, completer in batch:
            if len(events) == count:
                found.extend(events)
            await completer.close()
        return bool(found)

    await wait_until(claimed, what=f"{count} task completions queued")
    return found


async def test_a_cancelled_report_leaves_the_other_leases_of_its_stream_alone(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())
    await client.enqueue_workflow("wf", "inst", None)
    [(_, completer)] = await client.claim_workflows(["wf"])
    await completer.continue_(None, [NewTask("t", b"1"), NewTask("t", b"2")])
    await completer.close()
    [(_, first), (_, second)] = await client.dequeue_tasks("t", 2)
    stream = first._stream
    assert second._stream is stream  # both leases live on one stream
    held = HeldWrite(stream._call, client._io.loop)
    stream._call = held

    # Given the first lease's report is mid-write when its caller is cancelled
    report = asyncio.create_task(first.succeed(b"10"))
    await asyncio.wrap_future(held.entered)
    report.cancel()
    with pytest.raises(asyncio.CancelledError):
        await report
    held.release()

    # Then the other lease of the stream still reports normally
    await second.succeed(b"20")
    # And the cancelled report reached the server whole: both tasks succeeded, none LOST
    events = await _task_events(client, 2)
    results = sorted(
        (e.task_result.status, e.task_result.result) for e in events if e.task_result is not None
    )
    assert results == [(TaskStatus.SUCCESS, b"10"), (TaskStatus.SUCCESS, b"20")]
    with pytest.raises(errors.TaskLostError):  # applied once: the lease is spent
        await first.succeed(b"10")


async def test_a_cancelled_heartbeat_leaves_the_claims_of_its_stream_alone(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())
    await client.enqueue_workflow("wf", "a", None)
    await client.enqueue_workflow("wf", "b", None)
    claimed = await client.claim_workflows(["wf"], max_instances=2)
    [(_, first), (_, second)] = claimed
    stream = first._stream
    held = HeldWrite(stream._call, client._io.loop)
    stream._call = held

    # Given a claim's keepalive is cancelled while its heartbeat is mid-write
    beat = asyncio.create_task(first.heartbeat())
    await asyncio.wrap_future(held.entered)
    beat.cancel()
    with pytest.raises(asyncio.CancelledError):
        await beat
    held.release()

    # Then the other claim of the stream still decides, and the first one too
    await second.done(None)
    await first.done(None)
    for name in ("a", "b"):
        assert (
            await client.get_workflow_instance("wf", name)
        ).status == WorkflowInstanceStatus.COMPLETED


class HeldReply:
    """Wraps a dequeue's grpc.aio call: its first reply is read, then held at ``gate``.

    Stands for a reply that the server sent (the tasks are leased) but that
    has not reached its caller yet when the caller is cancelled.
    """

    def __init__(self, call: Any, gate: Gate) -> None:
        self._call = call
        self._gate = gate

    async def read(self) -> Any:
        reply = await self._call.read()
        await self._gate.pass_once()
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class StubHoldingDequeue:
    """Wraps the client's stub: the next lease stream's first reply is held by ``gate``."""

    def __init__(self, stub: Any, gate: Gate) -> None:
        self._stub = stub
        self._gate = gate

    def DequeueTasks(self, *args: Any, **kwargs: Any) -> Any:
        return HeldReply(self._stub.DequeueTasks(*args, **kwargs), self._gate)

    def TaskSession(self, *args: Any, **kwargs: Any) -> Any:
        return HeldReply(self._stub.TaskSession(*args, **kwargs), self._gate)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)


async def test_a_dequeue_cancelled_after_the_server_leased_hands_the_tasks_back(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())
    await client.enqueue_workflow("wf", "inst", None)
    [(_, completer)] = await client.claim_workflows(["wf"])
    await completer.continue_(None, [NewTask("t", b"1"), NewTask("t", b"2")])
    await completer.close()
    gate = Gate(client._io.loop)
    client._stub = StubHoldingDequeue(client._stub, gate)

    # Given the server leased both tasks, and the caller is cancelled before the reply reaches it
    dequeue = asyncio.create_task(client.dequeue_tasks("t", 2))
    await asyncio.wrap_future(gate.entered)
    dequeue.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dequeue
    gate.release()

    # Then the leases come back to the queue at once (the attempt not counted), never LOST
    client._stub = client._stub._stub
    again: list[Any] = []

    async def back_in_the_queue() -> bool:
        again.extend(await client.dequeue_tasks("t", 2))  # one hand-back may come first
        return len(again) == 2

    await wait_until(back_in_the_queue, what="the cancelled dequeue's tasks to be handed back")
    assert sorted(task.parameters for task, _ in again) == [b"1", b"2"]
    assert [task.metadata.attempt for task, _ in again] == [1, 1]
    for _, lease in again:
        await lease.succeed(b"1")
    events = await _task_events(client, 2)
    assert [e.task_result.status for e in events if e.task_result is not None] == [
        TaskStatus.SUCCESS,
        TaskStatus.SUCCESS,
    ]
