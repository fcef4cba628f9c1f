"""Tasks claimed ahead of a runner's free slots: only while tasks are quick, leases kept, stop safe.

A runner whose tasks average under ``QUICK_TASK_SECONDS`` claims up to as many
again as its ``workers``; those wait, heartbeated, and start as slots free.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from cereal import Task
from cereal.drivers import Driver
from cereal.engine.claimed_ahead import QUICK_TASK_SECONDS
from tests.conformance._executors import Flow, collect_results, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished

WORKERS = 2
HELD = 6
# leases that would expire within the test unless heartbeated
SHORT_LEASES: dict[str, Any] = {"task_expiry": 0.5, "task_heartbeat_interval": 0.1}


class Work:
    """A task executor: ``"quick"`` returns at once, ``"slow"`` takes twice the quick bound,
    ``"hold"`` waits for :attr:`release`; records each start by task id."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.starts: Counter[str] = Counter()
        self.held: list[str] = []

    async def run(self, task: Task) -> str:
        self.starts[task.metadata.task_id] += 1
        kind = task.get_parameters()
        if kind == "slow":
            await asyncio.sleep(2 * QUICK_TASK_SECONDS)  # a task's own length, not a wait
        elif kind == "hold":
            self.held.append(task.metadata.task_id)
            await self.release.wait()
        return str(kind)

    @property
    def holding(self) -> int:
        """Hold tasks started and not released (before :attr:`release` is set)."""
        return 0 if self.release.is_set() else len(self.held)


def flows(kind: str, count: int) -> Flow:
    """A workflow enqueueing ``count`` tasks of ``kind``, completing with their results."""
    return Flow(enqueue(*[("t", kind)] * count), collect_results)


# eight quick tasks, so that one slow start on a loaded machine cannot make the average slow
WORKFLOWS = {"quick": flows("quick", 8), "slow": flows("slow", 2), "held": flows("hold", HELD)}


async def _states(manager: Any) -> Counter[str]:
    return Counter(task.state for task in await manager.list_instance_tasks("held", "i"))


class BeatCounter:
    """Counts heartbeats per task id on the completers a driver's claims hand out."""

    def __init__(self) -> None:
        self.beats: Counter[str] = Counter()


def count_beats(driver: Driver) -> BeatCounter:
    """Make ``driver`` a test-only subclass whose claimed completers count their heartbeats."""
    counter = BeatCounter()
    base: type[Any] = type(driver)

    async def dequeue_tasks(self: Any, name: str, max_tasks: int, **options: Any) -> Any:
        claimed = await base.dequeue_tasks(self, name, max_tasks, **options)
        return [
            (data, _Counted(completer, data.metadata.task_id, counter))
            for data, completer in claimed
        ]

    driver.__class__ = type(
        f"BeatCounted{base.__name__}", (base,), {"dequeue_tasks": dequeue_tasks}
    )
    return counter


class _Counted:
    """A completer that counts its heartbeats and passes every call on."""

    def __init__(self, inner: Any, task_id: str, counter: BeatCounter) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_task_id", task_id)
        object.__setattr__(self, "_counter", counter)

    async def heartbeat(self) -> None:
        self._counter.beats[self._task_id] += 1
        await self._inner.heartbeat()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


async def test_a_runner_of_quick_tasks_claims_as_many_again_and_starts_them_as_slots_free(
    make_manager: MakeManager,
) -> None:
    # Given a worker with 2 slots whose tasks have been quick
    work = Work()
    manager = register(make_manager(), WORKFLOWS, {"t": work.run}, workers=WORKERS)
    await manager.start()
    await manager.enqueue_workflow("quick", "i", None)
    await wait_finished(manager, "quick", "i")

    # When 6 tasks that hold their slot are enqueued at once
    await manager.enqueue_workflow("held", "i", None)

    # Then 2 run and 2 more are claimed (leased) to wait for a slot; 2 stay queued
    await eventually(lambda: work.holding == WORKERS, what="both slots busy")
    await eventually(
        lambda: _has_states(manager, running=2 * WORKERS, queued=HELD - 2 * WORKERS),
        what="two tasks claimed ahead",
    )
    assert work.holding == WORKERS

    # And once released, every task ran exactly once and the run completed with them all
    work.release.set()
    done = await wait_finished(manager, "held", "i")
    assert [r["result"] for r in done.get_result()] == ["hold"] * HELD
    assert len(work.starts) == 8 + HELD and set(work.starts.values()) == {1}


async def _has_states(manager: Any, **expected: int) -> bool:
    return await _states(manager) == Counter(expected)


async def _hold_with_two_ahead(flows_manager: Any, worker: Any, work: Work) -> list[str]:
    """Run the quick workflow, then the held one: the ids of the tasks claimed ahead."""
    await flows_manager.enqueue_workflow("quick", "i", None)
    await wait_finished(flows_manager, "quick", "i")
    await flows_manager.enqueue_workflow("held", "i", None)
    await eventually(lambda: work.holding == WORKERS, what="both slots busy")
    await eventually(lambda: _has_states(worker, running=2 * WORKERS, queued=HELD - 2 * WORKERS))
    waiting = [
        task.task_id
        for task in await worker.list_instance_tasks("held", "i")
        if task.state == "running" and task.task_id not in work.starts
    ]
    assert len(waiting) == WORKERS
    return waiting


@pytest.mark.parametrize("before", ["no task ended", "slow tasks"])
async def test_a_runner_claims_only_its_free_slots_until_its_tasks_prove_quick(
    make_manager: MakeManager, before: str
) -> None:
    # Given a worker with 2 slots that has run no task yet, or only slow ones
    work = Work()
    manager = register(make_manager(), WORKFLOWS, {"t": work.run}, workers=WORKERS)
    await manager.start()
    if before == "slow tasks":
        await manager.enqueue_workflow("slow", "i", None)
        await wait_finished(manager, "slow", "i")

    # When 6 tasks that hold their slot are enqueued at once
    await manager.enqueue_workflow("held", "i", None)

    # Then only the 2 that run are claimed; the other 4 stay queued for any worker
    await eventually(lambda: work.holding == WORKERS, what="both slots busy")
    await eventually(lambda: _has_states(manager, running=WORKERS, queued=HELD - WORKERS))
    work.release.set()
    await wait_finished(manager, "held", "i")


async def test_tasks_claimed_ahead_keep_their_leases_while_they_wait(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given a quick worker with 2 slots and half-second leases, its heartbeats counted
    work = Work()
    driver = driver_factory()
    beats = count_beats(driver)
    manager = register(
        make_manager(driver=driver, **SHORT_LEASES), WORKFLOWS, {"t": work.run}, workers=WORKERS
    )
    await manager.start()

    # When 2 tasks hold both slots while 2 more wait, claimed ahead, for longer than a lease
    waiting = await _hold_with_two_ahead(manager, manager, work)
    # ten beats 0.1 s apart: twice the lease's length has passed since the claim
    await eventually(
        lambda: all(beats.beats[task_id] >= 10 for task_id in waiting),
        what="the waiting tasks' leases heartbeated",
    )
    assert not any(work.starts[task_id] for task_id in waiting)

    # Then released, every task runs once and succeeds: no waiting task was lost
    work.release.set()
    done = await wait_finished(manager, "held", "i")
    assert [r["status"] for r in done.get_result()] == ["success"] * HELD
    assert set(work.starts.values()) == {1}


async def test_a_graceful_stop_runs_the_tasks_claimed_ahead_within_its_grace_period(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given a quick worker with 2 slots holding 2 tasks and 2 more claimed ahead
    work = Work()
    flows_manager, worker, ahead = await _worker_holding(make_manager, work, grace=60.0)

    # When the worker stops, and its running tasks then end within the grace period
    stopping = asyncio.create_task(worker.stop())
    await eventually(lambda: _logged(caplog, "manager stopping"), what="stop() began")
    work.release.set()
    await stopping

    # Then the tasks claimed ahead ran there, once, and nothing was handed back; the
    # two never claimed stay queued, and a second worker runs them
    assert [work.starts[task_id] for task_id in ahead] == [1, 1]
    assert not _logged(caplog, "handed back")
    assert await _states(flows_manager) == Counter(queued=HELD - 2 * WORKERS)
    await _second_worker_finishes_the_run(make_manager, flows_manager, work)
    assert set(work.starts.values()) == {1}


async def test_tasks_claimed_ahead_still_waiting_when_the_grace_period_ends_are_handed_back(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cereal")
    # Given a quick worker with 2 slots holding 2 tasks and 2 more claimed ahead
    work = Work()
    flows_manager, worker, ahead = await _worker_holding(make_manager, work, grace=0.2)

    # When the worker stops and its running tasks outlast the grace period
    await worker.stop()

    # Then the tasks claimed ahead were handed back unstarted, named in a WARNING, with
    # the running ones: all six are queued again at once (no lease expiry passes here)
    assert not any(work.starts[task_id] for task_id in ahead)
    assert _logged(caplog, "claimed ahead", *(f"(id {task_id})" for task_id in ahead))
    assert await _states(flows_manager) == Counter(queued=HELD)
    work.release.set()
    await _second_worker_finishes_the_run(make_manager, flows_manager, work)
    assert [work.starts[task_id] for task_id in ahead] == [1, 1]


async def _worker_holding(
    make_manager: MakeManager, work: Work, *, grace: float
) -> tuple[Any, Any, list[str]]:
    """A workflow Manager and a worker with the stop ``grace``: the ids claimed ahead."""
    flows_manager = register(make_manager(stop_grace_period=60.0), WORKFLOWS)
    worker = register(make_manager(stop_grace_period=grace), {}, {"t": work.run}, workers=WORKERS)
    await flows_manager.start()
    await worker.start()
    return flows_manager, worker, await _hold_with_two_ahead(flows_manager, worker, work)


async def _second_worker_finishes_the_run(
    make_manager: MakeManager, flows_manager: Any, work: Work
) -> None:
    """Start another worker; the held run then completes with every task a success."""
    later = register(make_manager(), {}, {"t": work.run}, workers=WORKERS)
    await later.start()
    done = await wait_finished(flows_manager, "held", "i")
    assert [r["status"] for r in done.get_result()] == ["success"] * HELD


def _logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    return any(all(part in record.getMessage() for part in parts) for record in caplog.records)
