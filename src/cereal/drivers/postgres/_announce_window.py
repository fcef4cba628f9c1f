"""At most one cross-process announcement of new runs per window from one event loop.

Every NOTIFY costs each listening process a transaction of its own to read
it (``pg_stat_database.xact_commit`` counts them: with two worker processes,
an enqueue announced in its own commit cost two more). Under a burst of
enqueues a worker cannot use that many wakeups anyway: its claims are paced
at least ``CLAIM_INTERVAL`` (5 ms) apart under load, and each claim takes
every ready run. So the first enqueue after a quiet spell still carries its
NOTIFY in its own commit (an isolated start is announced as before), and
opens a window; the enqueues committed inside it are announced together,
once, when it closes, in a NOTIFY of their own, which opens the next window.

The deferred announcement is sent only after the commits it announces
returned, so a worker that hears it finds their runs; a worker that claimed
between the two found what had committed by then. Nothing is lost by a
deferred announcement that fails to send: the workers poll. Decisions
still announce their tasks in their commits: deferring them too left (g)'s
commits per workflow where they were (bench/README.md), since an idle runner
of the deciding process takes most new tasks unannounced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from cereal.drivers.postgres._listen import Wake

ANNOUNCE_WINDOW = 0.005
"""Seconds a window stays open: the engine's claim pacing under load (``CLAIM_INTERVAL``)."""


class AnnouncementWindow:
    """Decides, per enqueue, whether its commit announces it or the window's close does.

    Lives on one event loop (the driver keeps one per loop, as it does its
    group committers); ``send`` announces a group of wakes in the background.
    """

    def __init__(
        self,
        send: Callable[[list[Wake]], None],
        window: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._window = ANNOUNCE_WINDOW if window is None else window
        self._clock = clock
        self._open_until = float("-inf")
        self._pending: dict[Wake, None] = {}
        self._closing: asyncio.TimerHandle | None = None

    def announce_in_commit(self) -> bool:
        """True: the caller's commit carries its NOTIFY (and opens a window).

        False: a window is open; after its commit the caller passes its wakes
        to :meth:`announce_later` (a commit that failed announces nothing).
        """
        now = self._clock()
        if now < self._open_until or self._closing is not None:
            return False
        self._open_until = now + self._window
        return True

    def announce_later(self, wakes: Iterable[Wake]) -> None:
        """Announce ``wakes`` (already committed) when the open window closes."""
        self._pending.update(dict.fromkeys(wakes))
        if self._closing is not None or not self._pending:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._open_until - self._clock())
        self._closing = loop.call_later(delay, self._close)

    def flush(self) -> None:
        """Announce whatever waits for the window now (the driver is closing)."""
        if self._closing is not None:
            self._closing.cancel()
            self._close()

    def _close(self) -> None:
        self._closing = None
        wakes, self._pending = list(self._pending), {}
        if wakes:
            # the announcement is itself a NOTIFY: the next window starts with it
            self._open_until = self._clock() + self._window
            self._send(wakes)
