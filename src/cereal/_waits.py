"""Waiting for a wakeup with a timeout, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives
just as the awaited event is set: the loop that called it then runs on
instead of stopping. ``asyncio.wait`` never swallows the caller's
cancellation, so the engine's poll loops wait through it.
"""

from __future__ import annotations

import asyncio


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
