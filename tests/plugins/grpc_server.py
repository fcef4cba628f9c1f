"""A real ``cereal serve`` server for tests: in a thread of its own, on a loopback port.

``ServerThread`` runs :class:`~cereal.server.CerealServer` on its own
event loop in a background thread (so the test's loop stays free), bound to a
free port on 127.0.0.1; clients reach it over real TCP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import pytest


class ServerThread:
    """Runs one server until :meth:`stop`."""

    def __init__(self, database_url: str, **options: Any) -> None:
        from cereal.server import CerealServer, ServeOptions

        self._server = CerealServer(database_url, ServeOptions(**{"port": 0, **options}))
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()
        self._started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="cereal-test-server", daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        self.port = self._started.result(timeout=60)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, **query: str) -> str:
        suffix = "&".join(f"{k}={v}" for k, v in query.items())
        return f"grpc://{self.target}" + (f"?{suffix}" if suffix else "")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        try:
            port = await self._server.start()
        except BaseException as exc:
            self._started.set_exception(exc)
            return
        self._started.set_result(port)
        await self._stopped.wait()
        await self._server.stop(grace=0.5)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=60)


@pytest.fixture
def grpc_server_factory() -> Iterator[Any]:
    """Start servers over given database URLs; every one is stopped at teardown."""
    started: list[ServerThread] = []

    def start(database_url: str, **options: Any) -> ServerThread:
        server = ServerThread(database_url, **options).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
