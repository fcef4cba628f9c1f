"""Real worker processes sharing one store: work is shared, nothing runs twice, crashes become LOST.

Runs on every driver that declares the ``multiprocess`` capability (SQLite,
PostgreSQL). Processes are real (``subprocess``), and the crash is a real
SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cereal import Manager
from cereal.drivers import Driver
from tests.plugins.manager import eventually, wait_finished

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.requires("multiprocess")]


def _driver_url(driver: Driver) -> str:
    path = getattr(driver, "path", None)
    if path is not None:
        return f"sqlite:///{Path(path).resolve()}"
    dsn = getattr(driver, "dsn", None)
    if dsn is not None:
        return str(dsn)
    url = getattr(driver, "url", None)  # a grpc:// driver: the workers reach the same server
    if url is not None:
        return str(url)
    raise AssertionError(f"cannot tell the URL of {driver!r}")


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    workers: list[subprocess.Popen[bytes]] = []
    record = tmp_path / "records"
    record.mkdir()

    def spawn(url: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.system.worker_app", url, str(record)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        workers.append(process)
        return process

    yield spawn
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in workers:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _ready(record: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    await eventually(
        lambda: all((record / f"{p.pid}.ready").exists() for p in processes),
        timeout=30,
        what="workers ready",
    )


async def _crash_mid_run(
    client: Manager,
    spawn_worker: Callable[[str], subprocess.Popen[bytes]],
    record: Path,
    workflow: str,
    instance: str,
    marker: Callable[[subprocess.Popen[bytes]], Path],
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Start a worker, enqueue, wait for ``marker(worker)``, SIGKILL it, start a survivor."""
    url = _driver_url(client.driver)
    victim = spawn_worker(url)
    await _ready(record, [victim])
    await client.enqueue_workflow(workflow, instance)
    await eventually(lambda: marker(victim).exists(), timeout=30, what="crash point reached")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    survivor = spawn_worker(url)
    await _ready(record, [survivor])
    return victim, survivor


async def test_two_workers_share_a_fan_out_of_1000_tasks_exactly_once(
    driver_factory: Callable[[], Driver],
    spawn_worker: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # Given two worker processes on one store
    client = Manager(driver_factory())
    url = _driver_url(client.driver)
    workers = [spawn_worker(url), spawn_worker(url)]
    record = tmp_path / "records"
    await _ready(record, workers)

    # When a workflow fans out 1000 tasks
    count = 1000
    # (peers=2: each worker's tasks wait until both have started one, see worker_app)
    await client.enqueue_workflow("fan-out", "batch-1", {"count": count, "peers": 2})
    final = await wait_finished(client, "fan-out", "batch-1", timeout=120)

    # Then every completion reached the workflow exactly once and the result is right
    assert final.get_result() == {
        "sum": sum(i * i for i in range(count)),
        "completions": count,
        "distinct": count,
    }
    # and both processes took part, no task ran twice
    ran = {p.pid: (record / f"{p.pid}.ran").read_text().split() for p in workers}
    assert all(ran.values()), f"a worker ran nothing: { {k: len(v) for k, v in ran.items()} }"
    every = [int(i) for lines in ran.values() for i in lines]
    assert sorted(every) == list(range(count))
    await client.stop()


async def test_kill_9_mid_task_reports_lost_and_another_worker_carries_on(
    driver_factory: Callable[[], Driver],
    spawn_worker: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # Given one worker that will take the slow task
    client = Manager(driver_factory())
    record = tmp_path / "records"

    # When that worker is killed with SIGKILL mid-task and a second worker runs
    await _crash_mid_run(
        client,
        spawn_worker,
        record,
        "slow-then-quick",
        "crash-1",
        lambda victim: record / f"{victim.pid}.started-slow",
    )

    # Then the task reaches its workflow as LOST, and the survivor finishes the workflow
    final = await wait_finished(client, "slow-then-quick", "crash-1", timeout=60)
    assert final.get_result() == {"outcomes": [["slow", "lost"], ["quick", "success"]]}
    await client.stop()


async def test_kill_9_mid_callback_redelivers_the_event_and_applies_it_once(
    driver_factory: Callable[[], Driver],
    spawn_worker: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # Given a worker whose on_start hangs on the first delivery
    client = Manager(driver_factory())
    record = tmp_path / "records"

    # When that worker is killed mid-callback and a second worker runs
    victim, survivor = await _crash_mid_run(
        client,
        spawn_worker,
        record,
        "hang-on-first-delivery",
        "crash-2",
        lambda _: record / "first-delivery",
    )

    # Then the start event was redelivered and its effect (three tasks) applied exactly once
    final = await wait_finished(client, "hang-on-first-delivery", "crash-2", timeout=60)
    assert final.get_result() == {"completed": [0, 1, 2], "enqueued": 3}
    assert sorted((record / f"{survivor.pid}.ran").read_text().split()) == ["0", "1", "2"]
    assert not (record / f"{victim.pid}.ran").exists()
    await client.stop()


async def test_a_task_whose_worker_is_killed_twice_succeeds_on_the_third_under_its_retry_policy(
    driver_factory: Callable[[], Driver],
    spawn_worker: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # Given a workflow whose "crashy" task has max_attempts=3 (see worker_app)
    client = Manager(driver_factory())
    url = _driver_url(client.driver)
    record = tmp_path / "records"
    first = spawn_worker(url)
    await _ready(record, [first])
    await client.enqueue_workflow("crash-then-succeed", "crash-3")

    # When the worker running attempt 1 is killed with SIGKILL, then the one running attempt 2
    victim = first
    for attempt in (1, 2):
        marker = record / f"{victim.pid}.started-crashy-{attempt}"
        await eventually(marker.exists, timeout=60, what=f"attempt {attempt} started")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        victim = spawn_worker(url)
        await _ready(record, [victim])

    # Then the third worker runs attempt 3 and the workflow sees one success after 3 attempts
    final = await wait_finished(client, "crash-then-succeed", "crash-3", timeout=60)
    assert final.get_result() == {
        "status": "success",
        "attempts": 3,
        "value": "survived attempt 3",
    }
    assert (record / f"{victim.pid}.started-crashy-3").exists()
    await client.stop()
