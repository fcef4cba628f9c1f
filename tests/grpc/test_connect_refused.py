"""Connecting to a grpc:// address nothing listens on fails fast, not at the connect timeout;
a server that starts while the client is still being refused is reached."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from cereal import errors
from cereal.drivers import open_driver
from cereal.drivers.grpc import driver as grpc_driver
from tests._waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_reported_as_refused() -> None:
    driver = open_driver(f"grpc://127.0.0.1:{free_port()}?connect_timeout=600")
    with pytest.raises(errors.DriverError, match="refused the connection") as caught:
        await driver.init()
    assert "not reachable within" not in str(caught.value)


async def test_a_server_that_starts_during_the_refusal_grace_is_reached(
    grpc_server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_driver, "REFUSAL_GRACE", 600.0)  # the server starts within it
    port = free_port()
    driver = open_driver(f"grpc://127.0.0.1:{port}")
    opening = asyncio.ensure_future(driver.init())
    try:
        # Given a client refused at least once (nothing listens yet)
        await wait_until(lambda: "refused" in driver._last_problem, what="a refusal")  # type: ignore[attr-defined]
        assert not opening.done()
        # When the server starts on that port, the client gets through
        await asyncio.to_thread(grpc_server_factory, f"sqlite:///{tmp_path / 'late.db'}", port=port)
        await asyncio.wait_for(opening, 60)
        await driver.enqueue_workflow("wf", "reached", None)  # the store answers
    finally:
        opening.cancel()
        while driver.is_open:
            await driver.close()
