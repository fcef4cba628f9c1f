"""Waiting for a wakeup with a timeout, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives
just as the awaited event is set: the loop that called it then runs on
instead of stopping. ``asyncio.wait`` never swallows the caller's
cancellation, so the engine's poll loops wait through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True when it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)


class ClaimPacer:
    """Spaces a runner's claims at least ``interval`` seconds apart.

    A claim is a round trip and a commit whatever it returns. Under load,
    wakeups arrive faster than work can be usefully claimed one item at a
    time; waiting until ``interval`` has passed since the previous claim
    lets more work gather, so one claim takes it all. An idle runner (no
    claim within ``interval``) claims at once, so pickup latency is unchanged.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = float("-inf")

    async def pace(self) -> None:
        """Wait until a claim may be made, then count it as made."""
        loop = asyncio.get_running_loop()
        wait = self._last + self._interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last = loop.time()


async def wait_all_or(
    cut: asyncio.Future[Any], jobs: Iterable[asyncio.Future[Any]], deadline: float
) -> None:
    """Wait until every job is done, ``cut`` is done, or the loop's clock reaches ``deadline``."""
    loop = asyncio.get_running_loop()
    pending = {job for job in jobs if not job.done()}
    while pending and not cut.done():
        left = deadline - loop.time()
        if left <= 0:
            return
        _, pending = await asyncio.wait(
            pending | {cut}, timeout=left, return_when=asyncio.FIRST_COMPLETED
        )
        pending.discard(cut)
