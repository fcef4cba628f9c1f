"""The ``driver`` fixture: every conformance test runs once per driver.

Each entry of ``DRIVER_FACTORIES`` builds a fresh, isolated store. Narrow the
set with ``--drivers=memory,sqlite``. ``grpc-sqlite`` and ``grpc-postgres`` are
the ``grpc://`` driver talking over a real loopback port to a ``CerealServer``
the test starts (``tests/plugins/grpc_server.py``) over a fresh SQLite file or
PostgreSQL database; that server runs no scheduler or sweep of its own, since
driver-level cases expect no other actor on the store. A test marked
``@pytest.mark.requires("multiprocess")`` is skipped, with the reason printed,
on drivers that lack that capability.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cereal.drivers import Driver

DRIVER_NAMES = ["memory", "sqlite", "postgres", "grpc-sqlite", "grpc-postgres"]


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


def _grpc_server_url(tmp_path: Path, request: pytest.FixtureRequest, backing: str) -> str:
    """The URL of the test's one server (started on first use) over a fresh backing store."""
    key = f"grpc_url_{backing}"
    found = request.node.stash.get(_GRPC_URLS, {})
    if key not in found:
        if backing == "postgres":
            database = request.getfixturevalue("postgres_dsn")
        else:
            database = f"sqlite:///{tmp_path / 'served.db'}"
        # no server-side scheduler or sweep: driver-level cases expect no other actor
        server = request.getfixturevalue("grpc_server_factory")(database, maintenance=False)
        found[key] = server.url()
        request.node.stash[_GRPC_URLS] = found
    return found[key]


_GRPC_URLS = pytest.StashKey[dict[str, str]]()


def _build_grpc_sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> Driver:
    from cereal.drivers.grpc import GrpcDriver

    return GrpcDriver.from_url(_grpc_server_url(tmp_path, request, "sqlite"))


def _build_grpc_postgres(tmp_path: Path, request: pytest.FixtureRequest) -> Driver:
    from cereal.drivers.grpc import GrpcDriver

    return GrpcDriver.from_url(_grpc_server_url(tmp_path, request, "postgres"))


DRIVER_FACTORIES: dict[str, Callable[[Path, pytest.FixtureRequest], Driver]] = {
    "memory": _build_memory,
    "sqlite": _build_sqlite,
    "postgres": _build_postgres,
    "grpc-sqlite": _build_grpc_sqlite,
    "grpc-postgres": _build_grpc_postgres,
}


@pytest.fixture
def driver_factory(
    driver_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], Driver]:
    """Builds drivers over one shared store (for tests with several Managers)."""
    if driver_name in ("postgres", "grpc-postgres"):
        # set the database up now, so that it is torn down after the Managers using it
        request.getfixturevalue("postgres_dsn")
    if driver_name.startswith("grpc-"):
        # likewise the server: stopped after the Managers and drivers that use it
        request.getfixturevalue("grpc_server_factory")
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
