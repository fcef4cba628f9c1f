"""Fixtures of the gRPC tests: a served store per backing driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cereal.drivers.grpc import GrpcDriver


@pytest.fixture(params=["sqlite", "postgres"])
def served_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL a test's server serves (SQLite file or fresh PostgreSQL database)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_dsn"))
    return f"sqlite:///{tmp_path / 'served.db'}"


@pytest.fixture
async def open_client() -> AsyncIterator[Callable[..., Any]]:
    """Open GrpcDrivers by URL; all are closed at teardown."""
    opened: list[GrpcDriver] = []

    async def open_(url: str, **options: Any) -> GrpcDriver:
        driver = GrpcDriver.from_url(url, **options)
        await driver.init()
        opened.append(driver)
        return driver

    yield open_
    for driver in opened:
        while driver.is_open:
            await driver.close()
