"""Cross-process wakeups: the notification payload and the LISTEN connection.

One ``pg_notify`` per transaction announces the kinds (and names) of the new
work. The payload is text: the sender's token on the first line, then one
``kind<TAB>name`` line per announcement (an empty name means "any name").
Names hold no control characters, so tabs and newlines cannot occur in them.
A payload that would exceed PostgreSQL's limit collapses to kinds only.

The listener also checks that announcements reach it at all: now and then it
sends a probe (a ``probe<TAB>token`` line, ignored by every other listener)
to the pool's URL, the way real announcements travel. Behind a
transaction-pooling proxy such as PgBouncer, a LISTEN made through the proxy
hears nothing; the probe then never arrives, and one WARNING says so while
polling carries the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg

from cereal.drivers.base import WorkKind

logger = logging.getLogger(__name__)

CHANNEL = "cereal_wakeup"
"""The notification channel (also spelled out in queries.sql)."""

MAX_PAYLOAD_BYTES = 7900
"""Stay clear of PostgreSQL's 8000-byte payload limit."""

PROBE_INTERVAL = 300.0
"""Seconds between wakeup probes (one at start, then rarely: an idle driver stays idle)."""

PROBE_TIMEOUT = 10.0
"""Seconds a probe may take to arrive before wakeups are reported as not received."""

PROBE_KIND = "probe"
"""The line kind of a probe payload; listeners other than its sender ignore it."""

BURST_SECONDS = 0.05
"""How long the listener reads on after data arrived, before it waits for the socket alone.

psycopg's own wait for notifications wakes every 0.1 s (to let Ctrl-C in):
ten wakeups a second for an idle worker. Between bursts the listener waits
for its socket to become readable instead, which costs nothing while idle.
"""

_KINDS: tuple[WorkKind, ...] = ("workflow", "task", "schedule")

Wake = tuple[WorkKind, str | None]


async def _until_readable(socket: int) -> None:
    """Wait until ``socket`` has data (or has closed: the next read then fails)."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(socket, ready)
    try:
        await readable
    finally:
        loop.remove_reader(socket)


def encode_note(sender: str, wakes: Iterable[Wake]) -> str:
    """The payload announcing ``wakes`` from ``sender`` (deduplicated, order kept)."""
    unique = list(dict.fromkeys(wakes))
    lines = [sender] + [f"{kind}\t{name or ''}" for kind, name in unique]
    payload = "\n".join(lines)
    if len(payload.encode("utf-8")) <= MAX_PAYLOAD_BYTES:
        return payload
    kinds = dict.fromkeys(kind for kind, _ in unique)
    return "\n".join([sender] + [f"{kind}\t" for kind in kinds])


def encode_probe(sender: str, token: str) -> str:
    """The payload of ``sender``'s wakeup probe number ``token`` (announces nothing)."""
    return f"{sender}\n{PROBE_KIND}\t{token}"


def decode_note(payload: str) -> tuple[str, list[Wake]]:
    """The sender and announcements of a payload; unknown lines mean "anything".

    Probe lines announce nothing: a probe alone decodes to no wakes.
    """
    sender, _, rest = payload.partition("\n")
    lines = rest.split("\n") if rest else []
    wakes: list[Wake] = []
    for line in lines:
        kind, tab, name = line.partition("\t")
        if tab and kind == PROBE_KIND:
            continue
        if not tab or kind not in _KINDS:
            return sender, [(each, None) for each in _KINDS]
        wakes.append((kind, name or None))
    if not lines:
        wakes = [(each, None) for each in _KINDS]
    return sender, wakes


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` for at most ``timeout`` seconds (TimeoutError after that).

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that
    arrives as the event is set, and ``stop()`` would then wait a probe interval.
    """
    async with asyncio.timeout(timeout):
        await event.wait()


class NotificationListener:
    """A dedicated connection that LISTENs and reports each announcement.

    It reconnects with backoff when the connection drops. Each time LISTEN
    becomes active (the first time too) it reports "any work of every kind":
    whatever was announced before it listened was missed, so every runner
    looks once more.
    Given ``probe`` (which sends a payload the way announcements are sent), it
    checks at start, after each reconnect and every ``probe_interval`` seconds
    that its own probe arrives within ``probe_timeout``; when one does not, it
    logs one WARNING (until a probe arrives again) and nothing else changes:
    the pollers carry on.
    """

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        sender: str,
        on_wake: Callable[[WorkKind, str | None], None],
        *,
        max_backoff: float = 5.0,
        probe: Callable[[str], Awaitable[None]] | None = None,
        probe_interval: float | None = None,
        probe_timeout: float | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs
        self._sender = sender
        self._on_wake = on_wake
        self._max_backoff = max_backoff
        self._probe = probe
        self._probe_interval = PROBE_INTERVAL if probe_interval is None else probe_interval
        self._probe_timeout = PROBE_TIMEOUT if probe_timeout is None else probe_timeout
        self._tasks: list[asyncio.Task[None]] = []
        self._follow_lock = asyncio.Lock()
        self._listening = asyncio.Event()
        self._reconnected = asyncio.Event()
        self._probe_arrived = asyncio.Event()
        self._awaited_probe: str | None = None
        self._probe_count = 0
        self._warned = False
        self.connected_count = 0
        """How many times the connection was (re)established (for tests)."""
        self.probes_judged = 0
        """How many probes were sent and then arrived or timed out (for tests)."""
        self.wakeups_received: bool | None = None
        """What the last judged probe showed (None: none judged yet)."""

    async def start(self, timeout: float = 10.0) -> None:
        """Start listening; returns once LISTEN is active (or after ``timeout``)."""
        self._listening = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run(), name="cereal-postgres-listen")]
        if self._probe is not None:
            probing = asyncio.create_task(self._probe_loop(), name="cereal-postgres-probe")
            self._tasks.append(probing)
        with contextlib.suppress(TimeoutError):
            await _wait(self._listening, timeout)

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (listening, or reconnecting)."""
        return bool(self._tasks)

    @property
    def listening(self) -> bool:
        """True while LISTEN is active on the connection."""
        return self._listening.is_set()

    async def follow(self, wanted: Callable[[], bool]) -> None:
        """Start or stop so that the listener runs exactly when ``wanted()`` says so.

        Serialised: concurrent calls apply the latest demand in turn.
        """
        async with self._follow_lock:
            if wanted() and not self.running:
                await self.start()
            elif not wanted() and self.running:
                await self.stop()

    async def stop(self) -> None:
        """Stop listening and probing, and close the connection."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
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
            for kind in _KINDS:  # announcements made before now were missed
                self._on_wake(kind, None)
            if self.connected_count > 1:
                self._reconnected.set()  # a new route: probe it now
            self._listening.set()
            while True:
                async for notification in conn.notifies(timeout=BURST_SECONDS):
                    self._dispatch(notification.payload)
                await _until_readable(conn.pgconn.socket)
        finally:
            self._listening.clear()
            await conn.close()

    def _dispatch(self, payload: str) -> None:
        sender, wakes = decode_note(payload)
        if sender == self._sender:
            # our own commit (the driver woke its listeners already), or our probe
            _, _, rest = payload.partition("\n")
            kind, _, token = rest.partition("\t")
            if kind == PROBE_KIND and token == self._awaited_probe:
                self._probe_arrived.set()
            return
        for kind, name in wakes:
            self._on_wake(kind, name)

    # ---- probing -----------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while True:
            await self._listening.wait()
            self._reconnected.clear()
            judged = await self._probe_once()
            # a probe that could not be judged (not sent, or the connection changed
            # under it) is retried soon; a judged one is repeated rarely
            pause = self._probe_interval if judged else min(self._probe_interval, 30.0)
            with contextlib.suppress(TimeoutError):
                await _wait(self._reconnected, pause)

    async def _probe_once(self) -> bool:
        """Send one probe and judge whether it arrived; False if it could not be judged."""
        assert self._probe is not None
        generation = self.connected_count
        self._probe_count += 1
        token = str(self._probe_count)
        self._awaited_probe = token
        self._probe_arrived.clear()
        try:
            await self._probe(encode_probe(self._sender, token))
        except Exception as exc:  # storage trouble: the runners report it; try later
            logger.debug("could not send a wakeup probe: %s", exc)
            return False
        with contextlib.suppress(TimeoutError):
            await _wait(self._probe_arrived, self._probe_timeout)
        arrived = self._probe_arrived.is_set()
        if not arrived and (self.connected_count != generation or not self._listening.is_set()):
            return False  # reconnecting: the probe may have gone to the old connection
        self.probes_judged += 1
        self.wakeups_received = arrived
        if arrived and self._warned:
            self._warned = False
            logger.info("cereal wakeups are received again")
        elif not arrived and not self._warned:
            self._warned = True
            logger.warning(
                "cereal wakeups are not received: a probe NOTIFY sent through the main URL did not"
                " reach the LISTEN connection within %g s (a transaction-pooling proxy such"
                " as PgBouncer?); polling carries on; set listen_url to a direct connection"
                " to the server",
                self._probe_timeout,
            )
        return True
