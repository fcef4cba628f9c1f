"""Cross-process wakeups: the notification payload and the LISTEN connection.

One ``pg_notify`` per transaction announces the kinds (and names) of the new
work. The payload is text: the sender's token on the first line, then one
``kind<TAB>name`` line per announcement (an empty name means "any name").
Names hold no control characters, so tabs and newlines cannot occur in them.
A payload that would exceed PostgreSQL's limit collapses to kinds only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from cereal.drivers.base import WorkKind

logger = logging.getLogger(__name__)

CHANNEL = "cereal_wakeup"
"""The notification channel (also spelled out in queries.sql)."""

MAX_PAYLOAD_BYTES = 7900
"""Stay clear of PostgreSQL's 8000-byte payload limit."""

_KINDS: tuple[WorkKind, ...] = ("workflow", "task", "schedule")

Wake = tuple[WorkKind, str | None]


def encode_note(sender: str, wakes: Iterable[Wake]) -> str:
    """The payload announcing ``wakes`` from ``sender`` (deduplicated, order kept)."""
    unique = list(dict.fromkeys(wakes))
    lines = [sender] + [f"{kind}\t{name or ''}" for kind, name in unique]
    payload = "\n".join(lines)
    if len(payload.encode("utf-8")) <= MAX_PAYLOAD_BYTES:
        return payload
    kinds = dict.fromkeys(kind for kind, _ in unique)
    return "\n".join([sender] + [f"{kind}\t" for kind in kinds])


def decode_note(payload: str) -> tuple[str, list[Wake]]:
    """The sender and announcements of a payload; unknown lines mean "anything"."""
    sender, _, rest = payload.partition("\n")
    wakes: list[Wake] = []
    for line in rest.split("\n") if rest else []:
        kind, tab, name = line.partition("\t")
        if not tab or kind not in _KINDS:
            return sender, [(each, None) for each in _KINDS]
        wakes.append((kind, name or None))
    if not wakes:
        wakes = [(each, None) for each in _KINDS]
    return sender, wakes


class NotificationListener:
    """A dedicated connection that LISTENs and reports each announcement.

    It reconnects with backoff when the connection drops; after a reconnect it
    reports "any work of every kind", since notifications may have been missed.
    """

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        sender: str,
        on_wake: Callable[[WorkKind, str | None], None],
        *,
        max_backoff: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs
        self._sender = sender
        self._on_wake = on_wake
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connected_count = 0
        """How many times the connection was (re)established (for tests)."""

    async def start(self, timeout: float = 10.0) -> None:
        """Start listening; returns once LISTEN is active (or after ``timeout``)."""
        self._listening = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="cereal-postgres-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout)

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        delay = 0.05
        while True:
            before = self.connected_count
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect on any failure
                logger.warning("cereal LISTEN connection lost (%s); reconnecting", exc)
            if self.connected_count != before:
                delay = 0.05
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _listen_once(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, **self._connect_kwargs
        )
        try:
            await conn.execute("LISTEN cereal_wakeup")
            self.connected_count += 1
            if self.connected_count > 1:
                for kind in _KINDS:
                    self._on_wake(kind, None)
            self._listening.set()
            async for notification in conn.notifies():
                self._dispatch(notification.payload)
        finally:
            await conn.close()

    def _dispatch(self, payload: str) -> None:
        sender, wakes = decode_note(payload)
        if sender == self._sender:
            return  # our own commit: the driver woke its listeners already
        for kind, name in wakes:
            self._on_wake(kind, name)
