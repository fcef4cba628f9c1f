"""Task claiming limits: the Manager-wide cap on concurrent claim queries, and poll jitter."""

from __future__ import annotations

import asyncio
import random

import pytest

from cereal import Manager, Task
from cereal.drivers.base import TaskCompleter
from cereal.drivers.memory import MemoryDriver
from cereal.engine.task_runner import TaskRunner
from cereal.models import TaskData
from tests.plugins.manager import eventually

NAMES = [f"t{n}" for n in range(5)]


class GatedDriver(MemoryDriver):
    """Holds every dequeue_tasks call at a gate, counting how many are in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.callers: set[str] = set()

    async def dequeue_tasks(
        self, task_name: str, max_tasks: int, *, task_expiry: float = 60.0
    ) -> list[tuple[TaskData, TaskCompleter]]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.callers.add(task_name)
        try:
            await self.gate.wait()
            return await super().dequeue_tasks(task_name, max_tasks, task_expiry=task_expiry)
        finally:
            self.in_flight -= 1


def idle(task: Task) -> None:
    return None


@pytest.mark.parametrize("cap", [1, 2])
async def test_task_dequeue_workers_caps_concurrent_claim_queries(cap: int) -> None:
    # Given five task runners sharing a cap of `cap` claim queries, and a store
    # that holds every claim query until the gate opens
    driver = GatedDriver()
    manager = Manager(driver, task_poll_interval=0.05, task_dequeue_workers=cap)
    for name in NAMES:
        manager.register_task_executor(name, idle)
    await manager.start()
    try:
        # When every runner has tried to claim (all are ready before the first
        # poll of this loop runs) and `cap` queries are held open
        await eventually(lambda: driver.in_flight >= cap, what="claim queries held")
        # Then no more than the cap are in flight
        assert (driver.in_flight, len(driver.callers)) == (cap, cap)

        # And once the gate opens every runner gets its turn, never above the cap
        driver.gate.set()
        await eventually(lambda: driver.callers == set(NAMES), what="every runner claimed")
        assert driver.most_in_flight == cap
    finally:
        driver.gate.set()
        await manager.stop()


def runner(poll_interval: float, poll_jitter: float) -> TaskRunner:
    return TaskRunner(
        MemoryDriver(),
        "t",
        idle,
        workers=1,
        timeout=None,
        poll_interval=poll_interval,
        poll_jitter=poll_jitter,
        heartbeat_interval=1.0,
        task_expiry=60.0,
        dequeue_slots=asyncio.Semaphore(1),
        max_value_bytes=1000,
        on_task_finished=lambda: None,
    )


def test_poll_delays_are_jittered_down_within_the_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a runner polling every 2 s with up to 0.5 s of jitter, on a seeded RNG
    monkeypatch.setattr("cereal.engine.task_runner.random.random", random.Random(7).random)
    polling = runner(2.0, 0.5)

    # When it computes many poll delays
    delays = [polling._next_sleep() for _ in range(2000)]

    # Then each is in (interval - jitter, interval], and they are spread, not fixed
    assert all(1.5 < delay <= 2.0 for delay in delays)
    assert min(delays) < 1.55
    assert max(delays) > 1.95
    assert len(set(delays)) > 1900


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 2.0), (0.5, 1.75), (0.999, 1.5005)])
def test_poll_delay_is_interval_minus_a_fraction_of_the_jitter(
    monkeypatch: pytest.MonkeyPatch, draw: float, expected: float
) -> None:
    monkeypatch.setattr("cereal.engine.task_runner.random.random", lambda: draw)

    assert runner(2.0, 0.5)._next_sleep() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("options", "jitter"),
    [
        ({"task_poll_interval": 2.0}, 0.2),  # default: 10 % of the poll interval
        ({"task_poll_interval": 2.0, "task_poll_interval_max_jitter": 0.5}, 0.5),
        ({"task_poll_interval": 2.0, "task_poll_interval_max_jitter": 9.0}, 2.0),  # capped
        ({"task_poll_interval": 2.0, "task_poll_interval_max_jitter": 0}, 0.0),
    ],
)
async def test_manager_passes_the_documented_jitter_to_its_runners(
    options: dict[str, float], jitter: float
) -> None:
    manager = Manager(MemoryDriver(), **options)  # type: ignore[arg-type]
    manager.register_task_executor("t", idle)
    await manager.start()
    try:
        polling = manager._task_runners["t"]  # the runner's computed delays are what matter
        delays = {polling._next_sleep() for _ in range(200)}
        assert all(2.0 - jitter - 1e-9 <= delay <= 2.0 for delay in delays)
        if jitter == 0:
            assert delays == {2.0}
    finally:
        await manager.stop()
