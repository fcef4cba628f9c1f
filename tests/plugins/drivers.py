"""The ``driver`` fixture: every conformance test runs once per driver.

Each entry of ``DRIVER_FACTORIES`` builds a fresh, isolated store. Narrow the
set with ``--drivers=memory,sqlite``. A test marked
``@pytest.mark.requires("multiprocess")`` is skipped, with the reason printed,
on drivers that lack that capability.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cereal.drivers import Driver

DRIVER_NAMES = ["memory", "sqlite", "postgres"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--drivers",
        default=",".join(DRIVER_NAMES),
        help="comma-separated drivers the conformance suite runs on",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver_name" in metafunc.fixturenames:
        chosen = [n for n in metafunc.config.getoption("--drivers").split(",") if n]
        metafunc.parametrize("driver_name", chosen)


def _build_memory(tmp_path: Path, request: pytest.FixtureRequest) -> Driver:
    from cereal.drivers.memory import MemoryDriver

    return MemoryDriver()


def _build_sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> Driver:
    from cereal.drivers.sqlite import SQLiteDriver

    return SQLiteDriver(str(tmp_path / "cereal.db"))


def _build_postgres(tmp_path: Path, request: pytest.FixtureRequest) -> Driver:
    from cereal.drivers.postgres import PostgresDriver

    dsn: str = request.getfixturevalue("postgres_dsn")
    return PostgresDriver(dsn)


DRIVER_FACTORIES: dict[str, Callable[[Path, pytest.FixtureRequest], Driver]] = {
    "memory": _build_memory,
    "sqlite": _build_sqlite,
    "postgres": _build_postgres,
}


@pytest.fixture
def driver_factory(
    driver_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], Driver]:
    """Builds drivers over one shared store (for tests with several Managers)."""
    if driver_name == "postgres":
        # set the database up now, so that it is torn down after the Managers using it
        request.getfixturevalue("postgres_dsn")
    for marker in request.node.iter_markers("requires"):
        build = DRIVER_FACTORIES[driver_name]
        capability = marker.args[0]
        probe = build(tmp_path, request)
        if capability not in probe.capabilities:
            pytest.skip(f"driver {driver_name!r} lacks capability {capability!r}")
    if driver_name == "memory":
        # memory is process-local: "another driver over the same store" is the same object
        shared = DRIVER_FACTORIES["memory"](tmp_path, request)
        return lambda: shared
    return lambda: DRIVER_FACTORIES[driver_name](tmp_path, request)


@pytest.fixture
async def driver(driver_factory: Callable[[], Driver]) -> AsyncIterator[Driver]:
    """A fresh, initialised driver; closed at teardown."""
    built = driver_factory()
    await built.init()
    try:
        yield built
    finally:
        while built.is_open:
            await built.close()
