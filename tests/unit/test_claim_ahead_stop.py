"""A stop and the tasks claimed ahead: the wait yields to ended runs, and the grace ends for all.

Both races are held open deterministically: a run that ends in the same
loop iteration as the stop's wait begins, and a store's hand-back held at a
gate while another runner's task ends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from cereal import Manager, Task
from cereal.drivers.memory import MemoryDriver
from cereal.engine.task_runner import TaskRunner
from tests.conformance._executors import Flow, collect_results, enqueue
from tests.plugins.manager import FAST_OPTIONS, eventually, wait_finished


def _runner() -> TaskRunner:
    return TaskRunner(
        MemoryDriver(),
        "t",
        lambda task: None,
        workers=1,
        timeout=None,
        poll_interval=1.0,
        poll_jitter=0.0,
        heartbeat_interval=1.0,
        task_expiry=60.0,
        dequeue_slots=asyncio.Semaphore(1),
        max_value_bytes=1 << 20,
        on_task_finished=lambda: None,
    )


async def test_the_stop_wait_lets_a_run_that_just_ended_free_its_slot() -> None:
    # Given a runner whose one run ends in the loop iteration the stop's wait begins in,
    # so the run is done but its done callback (which frees the slot) has not run yet
    runner = _runner()
    go = asyncio.Event()

    async def work() -> None:
        await go.wait()

    job = asyncio.create_task(work())
    runner._runs[job] = object()  # type: ignore[assignment]  # the slot the run holds
    job.add_done_callback(runner._finished)
    await asyncio.sleep(0)  # the run waits
    go.set()
    await asyncio.sleep(0)  # queued behind the run's wakeup: the run ends first
    assert job.done() and job in runner._runs

    # When the stop waits for running tasks (a generous deadline, never reached here)
    loop = asyncio.get_running_loop()
    await runner.wait_running(loop.time() + 30.0, loop.create_future())

    # Then the wait yielded to the callback and returned with the slot free
    # (a wait that never yields would hold the loop to the deadline, the slot still taken)
    assert runner._runs == {}


class _GatedHandBacks(MemoryDriver):
    """Holds the hand-backs of task ``a`` at a gate; says when the first one begins."""

    def __init__(self) -> None:
        super().__init__()
        self.handing_back = asyncio.Event()
        self.gate = asyncio.Event()

    async def dequeue_tasks(self, task_name: str, max_tasks: int, **options: Any) -> Any:
        claimed = await super().dequeue_tasks(task_name, max_tasks, **options)
        if task_name != "a":
            return claimed
        return [(data, _GatedCompleter(completer, self)) for data, completer in claimed]


class _GatedCompleter:
    def __init__(self, inner: Any, driver: _GatedHandBacks) -> None:
        self._inner = inner
        self._driver = driver

    async def hand_back(self) -> bool:
        self._driver.handing_back.set()
        await self._driver.gate.wait()
        queued: bool = await self._inner.hand_back()
        return queued

    async def hand_back_unstarted(self) -> bool:
        self._driver.handing_back.set()
        await self._driver.gate.wait()
        queued: bool = await self._inner.hand_back_unstarted()
        return queued

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_no_runner_starts_a_task_claimed_ahead_once_the_grace_period_is_over() -> None:
    # Given two runners of quick tasks, each running one held task with one more claimed
    # ahead, and a store whose hand-backs of runner a's tasks wait at a gate
    driver = _GatedHandBacks()
    starts: Counter[str] = Counter()
    release_b = asyncio.Event()

    async def run_a(task: Task) -> str:
        starts[task.metadata.task_id] += 1
        if task.get_parameters() == "hold":
            await asyncio.Event().wait()  # until the stop abandons it
        return "a"

    async def run_b(task: Task) -> str:
        starts[task.metadata.task_id] += 1
        if task.get_parameters() == "hold":
            await release_b.wait()
        return "b"

    options = {**FAST_OPTIONS, "stop_grace_period": 0.2}
    manager = Manager(driver, **options)
    quick = [("a", "quick")] * 4 + [("b", "quick")] * 4
    manager.register_workflow_executor("quick", Flow(enqueue(*quick), collect_results))
    held = [("a", "hold")] * 2 + [("b", "hold")] * 2
    manager.register_workflow_executor("held", Flow(enqueue(*held), collect_results))
    manager.register_task_executor("a", run_a, workers=1)
    manager.register_task_executor("b", run_b, workers=1)
    await manager.start()
    try:
        await manager.enqueue_workflow("quick", "i", None)
        await wait_finished(manager, "quick", "i")
        await manager.enqueue_workflow("held", "i", None)
        await eventually(lambda: len(starts) == 8 + 2, what="one held task running per runner")
        await eventually(lambda: _leased(manager, 4), what="one more claimed ahead per runner")
        waiting = [
            task.task_id
            for task in await manager.list_instance_tasks("held", "i")
            if task.task_id not in starts
        ]

        # When the grace period ends, runner a's abandon waits on the store, and while it
        # waits runner b's running task ends (freeing b's slot)
        stopping = asyncio.create_task(manager.stop())
        await driver.handing_back.wait()
        release_b.set()
        runner_b = manager._task_runners["b"]
        await eventually(
            lambda: runner_b.running == 0 or any(starts[task_id] for task_id in waiting),
            what="b's held task ended, its slot freed",
        )
        driver.gate.set()
        await stopping
    finally:
        driver.gate.set()
        release_b.set()
        await manager.stop()

    # Then neither runner started a task claimed ahead after the grace period
    assert [starts[task_id] for task_id in waiting] == [0, 0]


async def _leased(manager: Manager, count: int) -> bool:
    tasks = await manager.list_instance_tasks("held", "i")
    return Counter(task.state for task in tasks) == Counter(running=count)
