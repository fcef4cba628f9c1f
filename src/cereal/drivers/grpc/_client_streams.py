"""Client side of the streams that hold claimed work (see :mod:`cereal.server.service`).

A :class:`HeldStream` carries claimed work: requests (decisions, task
reports) go out tagged with an id, a reader task matches each answer to its
request. A batch stream holds one claimed batch and is half-closed once every
claim or lease of it is finished. A session stream (``session=True``) is a
client's long-lived stream for all its claims: each claim request (see
:meth:`HeldStream.claim`) adds a batch numbered on from the last, and the
stream stays open for the next until it is retired. If a stream breaks, every
pending and later request fails with the "lost" error (the server rolled the
work back, or, when it was stopping, left task leases for the client to
re-present: see ``broken``). All methods run on the driver's private I/O loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

import grpc
from cereal import errors
from cereal.wire.error_status import error_from_pb
from cereal.wire.proto import cereal_v1_pb2 as pb

logger = logging.getLogger(__name__)

_CLOSED = "the driver was closed"

BuildRequest = Callable[[int], Any]
"""Builds the stream request for a request id."""

SESSION_INDEX_LIMIT = 2**30
"""A session past this many claims is retired (indexes travel as int32)."""


_BATCHES: dict[str, tuple[type[Any], str, str]] = {
    # the field one request carries -> (request type, the batch's field, its list's field)
    "report": (pb.TaskStreamRequest, "reports", "reports"),
    "decision": (pb.WorkflowStreamRequest, "decisions", "decisions"),
}
_READER_GRACE = 5.0  # seconds a failed write waits for the reader to learn the call's status
_ITEM_OVERHEAD = 8  # bytes a repeated field adds per item, at most (tag and length)


def combined(queued: list[Any], max_bytes: int) -> list[Any]:
    """``queued`` requests, in order, with runs of reports (decisions) joined into one message.

    A joined message stays within ``max_bytes``: a run that would pass it is
    split (each request alone was checked against it).
    """
    out: list[Any] = []
    run: list[Any] = []  # requests of one kind, waiting to be joined
    run_kind: str | None = None
    run_bytes = 0

    def close_run() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            assert run_kind is not None
            request_type, field, items = _BATCHES[run_kind]
            joined = request_type(**{field: {items: [getattr(r, run_kind) for r in run]}})
            out.append(joined)
        run.clear()

    for message in queued:
        kind = message.WhichOneof("message")
        if kind not in _BATCHES:
            close_run()
            run_kind = None
            out.append(message)
            continue
        size = message.ByteSize() + _ITEM_OVERHEAD
        if kind != run_kind or run_bytes + size > max_bytes:
            close_run()
            run_kind, run_bytes = kind, 0
        run.append(message)
        run_bytes += size
    close_run()
    return out


def batch_indexes(batch: pb.LeasedTasks | pb.ClaimedWorkflows) -> range:
    """The session-wide indexes of a leased or claimed batch."""
    if isinstance(batch, pb.LeasedTasks):
        return range(batch.first_lease, batch.first_lease + len(batch.tasks))
    return range(batch.first_claim, batch.first_claim + len(batch.instances))


class HeldStream:
    """One open stream holding claims or leases (``count`` of them from the start)."""

    def __init__(
        self,
        call: Any,
        count: int,
        lost: Callable[[str], errors.CerealError],
        on_end: Callable[[HeldStream], None],
        max_bytes: int,
        *,
        session: bool = False,
    ) -> None:
        self._call = call
        self._max_bytes = max_bytes
        self._lost = lost
        self._on_end = on_end
        self._retired = not session  # a batch stream takes no more claims
        self._open = set(range(count))
        self._next_index = count
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._write_lock = asyncio.Lock()
        self._session = session
        self._outbox: list[Any] = []
        self._writer: asyncio.Task[None] | None = None
        self._ended: str | None = None
        self._half_closed = False
        self._closing: asyncio.Task[None] | None = None
        self.broken = False
        """True once the stream ended by the server's or the connection's doing."""
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def is_open(self, index: int) -> bool:
        """True while claim/lease ``index`` is held on a live stream."""
        return self._ended is None and index in self._open

    @property
    def ended(self) -> bool:
        """True once the stream ended (closed, broken or refused)."""
        return self._ended is not None

    @property
    def takes_claims(self) -> bool:
        """True for a live session stream that was not retired."""
        return self._ended is None and not self._retired

    async def request(self, build: BuildRequest) -> pb.Answer:
        """Send one request and wait for its answer; raise the error it carries.

        Raises:
            RequestTooLargeError: the request is over the server's message
                limit; it was not sent and the stream is untouched (a write
                over gRPC's own limit would end the stream, and every other
                claim or lease on it).
            CerealError: the answer's error, or the batch's "lost" error when
                the stream has ended.
        """
        result = await self._exchange(build)
        if result.HasField("error"):
            raise error_from_pb(result.error)
        answer: pb.Answer = result
        return answer

    async def claim(self, build: BuildRequest) -> Any:
        """Send a claim request on a session; the batch it got (now held here).

        Cancelling the caller cancels the write, which ends the whole stream:
        run it as a task of its own (see :class:`ClaimSessions`).

        Raises:
            CerealError: the server refused the claim, or the stream ended.
        """
        reply = await self._exchange(build)
        if isinstance(reply, pb.Answer):
            raise error_from_pb(reply.error)
        self._maybe_half_close()
        return reply

    def retire(self) -> None:
        """Take no more claims; half-close once what is held is finished."""
        self._retired = True
        self._maybe_half_close()

    async def _exchange(self, build: BuildRequest) -> Any:
        if self._ended is not None:
            raise self._lost(self._ended)
        request_id = next(self._ids)
        message = build(request_id)
        size = message.ByteSize()
        if size > self._max_bytes:
            raise errors.RequestTooLargeError(
                f"the request is {size} bytes, over the {self._max_bytes} bytes a cereal"
                " server accepts (max_message_bytes); it was not sent"
            )
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        if self._session:
            self._queue(message)
            return await reply
        try:
            async with self._write_lock:
                await self._call.write(message)
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            self._pending.pop(request_id, None)
            self.broken = self._ended != _CLOSED
            raise self._lost(f"the stream to the cereal server broke: {exc}") from None
        return await reply

    def _queue(self, message: Any) -> None:
        """Queue a session's request; the writer sends what queued together in one go."""
        self._outbox.append(message)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_out())

    async def _write_out(self) -> None:
        """Write the outbox, reports or decisions queued together as one message each time.

        The writer is a task of its own, so no caller's cancellation ever
        cancels a write (which would end the session and all it holds).
        """
        try:
            while self._outbox and self._ended is None:
                queued, self._outbox = self._outbox, []
                for message in combined(queued, self._max_bytes):
                    async with self._write_lock:
                        await self._call.write(message)
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            # the call is over: its reader learns why (the status the server ended it with)
            await asyncio.wait({self._reader}, timeout=_READER_GRACE)
            self.broken = self._ended != _CLOSED
            self._end(f"the stream to the cereal server broke: {exc}")
        finally:
            self._writer = None

    async def finish(self, index: int) -> None:
        """Mark ``index`` finished; a retired stream holding nothing more is half-closed."""
        self._open.discard(index)
        await self._half_close_if_done()

    def _done(self) -> bool:
        """Retired, and nothing held or asked for: the stream can be half-closed."""
        live = self._ended is None and not self._half_closed
        return live and self._retired and not self._open and not self._pending

    def _maybe_half_close(self) -> None:
        if self._done():
            self._closing = asyncio.get_running_loop().create_task(self._half_close_if_done())

    async def _half_close_if_done(self) -> None:
        if not self._done():
            return
        self._half_closed = True
        with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError, RuntimeError):
            async with self._write_lock:
                await self._call.done_writing()

    def cancel(self) -> None:
        """Drop the stream now (the server rolls back whatever is still held)."""
        self._end(_CLOSED)
        self._call.cancel()

    async def _read(self) -> None:
        reason = "the cereal server ended the stream"
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    self.broken = True
                    break
                reply = getattr(message, message.WhichOneof("message"))
                if isinstance(reply, pb.Answers):
                    for answer in reply.answers:
                        self._dispatch(answer)
                else:
                    self._dispatch(reply)
        except asyncio.CancelledError:
            reason = _CLOSED
        except grpc.RpcError as exc:
            self.broken = True
            reason = f"the stream to the cereal server broke: {exc.code().name}"
        except Exception as exc:  # a malformed reply: treat the batch as lost
            logger.warning("bad reply on a cereal stream: %r", exc)
            reason = f"bad reply from the cereal server: {exc!r}"
        self._end(reason)

    def _dispatch(self, reply: Any) -> None:
        """Hand ``reply`` to the request waiting for it (a new batch is held first)."""
        if not isinstance(reply, pb.Answer):
            indexes = batch_indexes(reply)
            self._open.update(indexes)
            self._next_index = max(self._next_index, indexes.stop)
            if self._next_index > SESSION_INDEX_LIMIT:
                self._retired = True
        waiter = self._pending.pop(reply.request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)
        self._maybe_half_close()  # e.g. a heartbeat answered after the last lease's report

    def _end(self, reason: str) -> None:
        if self._ended is None:
            self._ended = reason
            self._on_end(self)
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(self._lost(reason))
