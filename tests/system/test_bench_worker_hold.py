"""A bench worker started with ``hold`` is READY with its Manager not started, until released.

The backlog scenario (e) starts two workers on a queue that is already full;
unless both start together, the first drains the window while the second
still boots (a quick run's small backlog all of it, so the drain "stalled").
Real worker processes over a SQLite store; the started Manager is seen in the
store's live-worker list, which a Manager joins as it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from bench import apps, procs

import cereal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@asynccontextmanager
async def _store_with_one_queued_run(path: Path) -> AsyncIterator[tuple[str, cereal.Manager]]:
    """A SQLite store's URL, and an unstarted client that queued ``SINGLE``/"queued" there."""
    url = f"sqlite:///{path}"
    client = cereal.Manager(cereal.open_driver(url))
    try:
        await client.enqueue_workflow(apps.SINGLE, "queued", {"t0": time.time()})
        yield url, client
    finally:
        await client.stop()


async def _until_workers(client: cereal.Manager, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(await client.list_workers()) != count:
        assert time.monotonic() < deadline, f"never {count} live workers"
        await asyncio.sleep(0.05)


async def test_held_workers_start_their_managers_only_when_released(tmp_path: Path) -> None:
    async with _store_with_one_queued_run(tmp_path / "hold.db") as (url, client):
        async with procs.workers(url, 2, hold=True) as workers:
            # both READY: each blocks on its GO line, so neither Manager has started
            assert await client.list_workers() == []
            instance = await client.get_workflow_instance(apps.SINGLE, "queued")
            assert instance.get_payload() is None  # on_start has not run
            await procs.release(workers)
            assert len(await client.list_workers()) == 2  # both said STARTED
            deadline = time.monotonic() + 60
            while (await client.get_workflow_instance(apps.SINGLE, "queued")).is_running():
                assert time.monotonic() < deadline, "the released workers never ran the workflow"
                await asyncio.sleep(0.05)
        await _until_workers(client, 0)  # stopped gracefully at stdin's end


async def test_held_workers_never_released_stop_without_starting(tmp_path: Path) -> None:
    async with _store_with_one_queued_run(tmp_path / "never.db") as (url, client):
        async with procs.workers(url, 1, hold=True) as workers:
            assert await client.list_workers() == []
        assert workers[0].returncode == 0
        instance = await client.get_workflow_instance(apps.SINGLE, "queued")
        assert instance.get_payload() is None  # nothing ran: the Manager never started
