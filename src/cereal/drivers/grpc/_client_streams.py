"""Client side of the streams that hold claimed work (see :mod:`._service`).

A :class:`HeldStream` carries one claimed batch: requests (decisions, task
reports) go out tagged with an id, a reader task matches each answer to its
request. Once every claim or lease of the batch is finished the client
half-closes the stream; if the stream breaks first, every pending and later
request fails with the batch's "lost" error (the server rolled the work back,
or, when it was stopping, left task leases for the client to re-present: see
``broken``). All methods run on the driver's private I/O loop.
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


class HeldStream:
    """One open stream holding ``count`` claims or leases."""

    def __init__(
        self,
        call: Any,
        count: int,
        lost: Callable[[str], errors.CerealError],
        on_end: Callable[[HeldStream], None],
        max_bytes: int,
    ) -> None:
        self._call = call
        self._max_bytes = max_bytes
        self._lost = lost
        self._on_end = on_end
        self._open = set(range(count))
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.Answer]] = {}
        self._write_lock = asyncio.Lock()
        self._ended: str | None = None
        self.broken = False
        """True once the stream ended by the server's or the connection's doing."""
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def is_open(self, index: int) -> bool:
        """True while claim/lease ``index`` is held on a live stream."""
        return self._ended is None and index in self._open

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
        answer: asyncio.Future[pb.Answer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        try:
            async with self._write_lock:
                await self._call.write(message)
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            self._pending.pop(request_id, None)
            self.broken = self._ended != _CLOSED
            raise self._lost(f"the stream to the cereal server broke: {exc}") from None
        result = await answer
        if result.HasField("error"):
            raise error_from_pb(result.error)
        return result

    async def finish(self, index: int) -> None:
        """Mark ``index`` finished; after the last one, half-close the stream."""
        self._open.discard(index)
        if self._open or self._ended is not None:
            return
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
                answer: pb.Answer = message.answer
                waiter = self._pending.pop(answer.request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        except asyncio.CancelledError:
            reason = _CLOSED
        except grpc.RpcError as exc:
            self.broken = True
            reason = f"the stream to the cereal server broke: {exc.code().name}"
        except Exception as exc:  # a malformed reply: treat the batch as lost
            logger.warning("bad reply on a cereal stream: %r", exc)
            reason = f"bad reply from the cereal server: {exc!r}"
        self._end(reason)

    def _end(self, reason: str) -> None:
        if self._ended is None:
            self._ended = reason
            self._on_end(self)
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(self._lost(reason))
