"""Live workers across real processes: a worker killed with SIGKILL drops out of the list.

Runs on every driver that declares the ``multiprocess`` capability (SQLite,
PostgreSQL). The workers are ``tests.system.worker_app`` processes
(``task_expiry`` 1.5 s, heartbeat 0.2 s); the kill is a real SIGKILL.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cereal import Manager
from cereal.drivers import Driver
from tests.plugins.manager import eventually
from tests.system.test_multiprocess import _driver_url, _ready, spawn_worker

__all__ = ["spawn_worker"]  # the fixture, shared with test_multiprocess

pytestmark = [pytest.mark.slow, pytest.mark.requires("multiprocess")]


async def test_a_worker_killed_with_sigkill_drops_out_after_its_task_expiry(
    driver_factory: Callable[[], Driver],
    spawn_worker: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # Given two worker processes, each listed once it has started
    client = Manager(driver_factory())
    url = _driver_url(client.driver)
    victim, survivor = spawn_worker(url), spawn_worker(url)
    await _ready(tmp_path / "records", [victim, survivor])

    async def listed() -> set[int]:
        return {info.pid for info in await client.list_workers()}

    assert await listed() == {victim.pid, survivor.pid}
    [shown] = [info for info in await client.list_workers() if info.pid == victim.pid]
    assert "fan-out" in shown.workflow_names and "square" in shown.task_names

    # When one is killed with SIGKILL (it cannot remove its row)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    # Then it drops out once its task_expiry has passed; the survivor stays listed
    async def only_survivor() -> bool:
        return await listed() == {survivor.pid}

    await eventually(only_survivor, timeout=60, what="the killed worker to drop out")

    # and a worker that stops gracefully removes its own row at once
    survivor.send_signal(signal.SIGTERM)
    survivor.wait(timeout=30)
    assert await listed() == set()
    await client.stop()
