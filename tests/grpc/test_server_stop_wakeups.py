"""A stopping server ends its clients' wakeup streams instead of waiting out its grace.

A ``WatchWakeups`` stream lasts as long as its client is connected; a graceful
stop that waited for it would always take its whole grace while any worker
was connected, however idle.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests._waiting import wait_until


async def test_a_stop_ends_wakeup_streams_and_returns_long_before_its_grace(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    client = await open_client(server.url())  # connected: its wakeup stream is open

    # When the server stops with a grace far longer than the wait below
    stopping = asyncio.run_coroutine_threadsafe(server._server.stop(grace=600), server._loop)

    # Then it stops with the client still connected, which saw its stream end
    await asyncio.wait_for(asyncio.wrap_future(stopping), timeout=60)
    await wait_until(
        lambda: client._last_problem != "no answer", what="the client to see its stream end"
    )
