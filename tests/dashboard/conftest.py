"""Dashboard fixtures: a store per driver, a real uvicorn server, a headless Chromium.

The dashboard runs in real uvicorn on a free port, in a thread with its own
event loop; the test seeds and checks the same store through Managers of its
own. Browser tests drive Debian's ``/usr/bin/chromium`` through Playwright
(never a downloaded browser): without it they skip with the reason printed,
and under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cereal import Manager
from cereal.drivers import Driver
from cereal.models import NewTask
from tests._waiting import wait_until_sync
from tests.plugins.manager import FAST_OPTIONS

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")

from cereal.dashboard import create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TOKEN = "s3cret-token"

StoreFactory = Callable[[], Driver]


def build_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    """Builds drivers over one real store: ``sqlite`` (a file) or ``postgres`` (a fresh db)."""
    if kind == "sqlite":
        from cereal.drivers.sqlite import SQLiteDriver

        path = str(tmp_path / "cereal.db")
        return lambda: SQLiteDriver(path)
    from cereal.drivers.postgres import PostgresDriver

    dsn: str = request.getfixturevalue("postgres_dsn")
    return lambda: PostgresDriver(dsn)


async def run_with_completions(store_factory: StoreFactory, completed: int, left: int) -> None:
    """An instance 'wf/big' whose ``completed`` tasks completed and ``left`` tasks still queue."""
    driver = store_factory()
    await driver.init()
    try:
        await driver.enqueue_workflow("wf", "big", None)
        _, decision = await driver.dequeue_workflow(["wf"])
        async with decision:
            tasks = [NewTask("t", None) for _ in range(completed)]
            await decision.continue_(None, [*tasks, *(NewTask("later", None) for _ in range(left))])
        while batch := await driver.dequeue_tasks("t", 500):
            for _, lease in batch:
                await lease.succeed(b"1")
    finally:
        await driver.close()


@pytest.fixture
async def seed(store_factory: StoreFactory) -> AsyncIterator[Manager]:
    """A storage-only Manager over the test's store, for seeding and checking."""
    manager = Manager(store_factory())
    try:
        yield manager
    finally:
        await manager.stop()


@pytest.fixture
async def worker_factory(store_factory: StoreFactory) -> AsyncIterator[Callable[..., Manager]]:
    """Builds fast-polling Managers over the test's store; stopped at teardown."""
    built: list[Manager] = []

    def make(**options: Any) -> Manager:
        manager = Manager(store_factory(), **{**FAST_OPTIONS, **options})
        built.append(manager)
        return manager

    try:
        yield make
    finally:
        for manager in built:
            await manager.stop()


@contextmanager
def serving(
    store_factory: StoreFactory,
    *,
    token: str | None,
    allowed_hosts: list[str] | None = None,
    login_to_read: bool = False,
) -> Iterator[str]:
    """Serve the dashboard over the store with real uvicorn; yields its base URL.

    The app trusts the names of its 127.0.0.1 bind plus ``allowed_hosts``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    manager = Manager(store_factory())
    if login_to_read:
        app = create_app(manager, token=token, login_to_read=True)
    elif allowed_hosts is None:
        app = create_app(manager, token=token)  # the default trusts the loopback names
    else:
        from cereal.dashboard import allowed_hosts_for

        app = create_app(
            manager, token=token, allowed_hosts=allowed_hosts_for("127.0.0.1", allowed_hosts)
        )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until_sync(lambda: server.started or not thread.is_alive(), what="uvicorn started")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def serve(store_factory: StoreFactory) -> Iterator[Callable[..., Any]]:
    """``serve(token=...)``: a context manager serving the dashboard over the test's store."""
    yield lambda *, token=TOKEN: serving(store_factory, token=token)


def _browser_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run under CI=true: {reason}")
    print(f"skipping browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian Chromium driven by Playwright (no browser download, ever)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _browser_unavailable("the playwright package is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        _browser_unavailable(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def screenshot_dir() -> Path:
    """Where the browser tests leave a screenshot of every page (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
