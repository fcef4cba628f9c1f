"""The client's session streams: all its workflow claims on one, all its task leases on another.

Opening a stream per claim cost a busy worker more CPU, on both ends, than
the claim itself (``bench/README.md``, "Where the gRPC column's CPU goes").
A session is opened on the first claim and kept: each later claim is one
request on it. A session that broke (a server restart, a dropped connection)
is replaced on the next claim; its leases are re-presented as on any broken
stream. A server that serves sessions says so in its first wakeup (feature
``sessions``); with an older one the driver uses a stream per claim
(``supported`` is False). All methods run on the driver's private I/O loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from cereal import errors
from cereal.drivers.grpc._client_streams import BuildRequest, HeldStream

Release = Callable[[HeldStream, Any], Coroutine[Any, Any, None]]
"""Releases a batch nobody will use (its claim's caller gave up waiting)."""


class ClaimSessions:
    """One session stream per RPC (``WorkflowSession``, ``TaskSession``), opened on demand.

    Args:
        open_call: opens a new stream call of the named RPC.
        call_timeout: seconds a claim waits for its answer.
        max_bytes: the largest request sent (see :class:`HeldStream`).
        track: told of each new stream (the driver cancels them all on close).
        untrack: told of each stream that ended.
    """

    def __init__(
        self,
        open_call: Callable[[str], Any],
        call_timeout: float,
        max_bytes: int,
        track: Callable[[HeldStream], None],
        untrack: Callable[[HeldStream], None],
    ) -> None:
        self._open_call = open_call
        self._call_timeout = call_timeout
        self._max_bytes = max_bytes
        self._track = track
        self._untrack = untrack
        self._current: dict[str, HeldStream] = {}
        self._releasing: set[asyncio.Task[None]] = set()
        self.supported = False
        """True while the server serves sessions (its first wakeup said so)."""

    async def claim(
        self,
        rpc: str,
        build: BuildRequest,
        lost: Callable[[str], errors.CerealError],
        release: Release,
    ) -> tuple[HeldStream, Any]:
        """Send a claim on ``rpc``'s session; the stream and the batch it got.

        A batch that arrives after the call timed out or was cancelled goes to
        ``release``.

        Raises:
            DriverError: the server did not answer in time, or the session broke.
            CerealError: the server refused the claim (with its error).
        """
        stream = self._session(rpc, lost)
        # the claim's own task: cancelling a stream's write would end the whole session
        asking = asyncio.get_running_loop().create_task(stream.claim(build))
        try:
            done, _ = await asyncio.wait({asking}, timeout=self._call_timeout)
        except asyncio.CancelledError:
            self._release_when_answered(asking, stream, release)
            raise
        if not done:
            self._release_when_answered(asking, stream, release)
            raise errors.DriverError("the cereal server did not answer a claim in time")
        try:
            return stream, asking.result()
        except errors.CerealError as exc:
            if stream.ended:
                raise errors.DriverError(f"claiming failed: {exc}") from None
            raise

    def _session(self, rpc: str, lost: Callable[[str], errors.CerealError]) -> HeldStream:
        current = self._current.get(rpc)
        if current is not None and current.takes_claims:
            return current
        if current is not None:
            current.retire()  # past its index limit: a new session takes the claims
        stream = HeldStream(
            self._open_call(rpc), 0, lost, self._ended, self._max_bytes, session=True
        )
        self._current[rpc] = stream
        self._track(stream)
        return stream

    def _ended(self, stream: HeldStream) -> None:
        self._untrack(stream)
        for rpc, current in list(self._current.items()):
            if current is stream:
                del self._current[rpc]

    def _release_when_answered(
        self, asking: asyncio.Task[Any], stream: HeldStream, release: Release
    ) -> None:
        def answered(done: asyncio.Task[Any]) -> None:
            if done.cancelled() or done.exception() is not None:
                return  # nothing was claimed
            releasing = asyncio.get_running_loop().create_task(release(stream, done.result()))
            self._releasing.add(releasing)
            releasing.add_done_callback(self._releasing.discard)

        asking.add_done_callback(answered)
