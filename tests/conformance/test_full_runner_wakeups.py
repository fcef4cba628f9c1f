"""A runner claims as soon as a slot frees: work may have become claimable without a wakeup.

A wakeup that came while every slot was busy must not be lost; and a claim
that came back short may have been held back by a concurrency key at its
limit, whose next task becomes claimable when the running one ends, with
no wakeup from anyone. Task polls are an hour apart here: only the freed
slot can start the waiting task in time.
"""

from __future__ import annotations

import asyncio

from cereal import Task
from tests.conformance._executors import Flow, collect_results, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished


class HeldTask:
    """Task executor "t": records each start by parameters; ``held`` waits for :attr:`release`."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.release = asyncio.Event()
        self.started: list[str] = []

    async def __call__(self, task: Task) -> str:
        self.started.append(str(task.get_parameters()))
        if task.get_parameters() == self.held:
            await self.release.wait()
        return "ran"


async def test_work_announced_while_every_slot_was_busy_starts_when_one_frees(
    make_manager: MakeManager,
) -> None:
    run = HeldTask("hold")
    manager = register(
        make_manager(task_poll_interval=3600.0),
        {
            "holds": Flow(enqueue(("t", "hold")), collect_results),
            "quick": Flow(enqueue(("t", "quick")), collect_results),
        },
        {"t": run},
        workers=1,
    )
    async with manager:
        # Given the runner's one slot busy
        await manager.enqueue_workflow("holds", "h", None)
        await eventually(lambda: run.started == ["hold"], what="the held task to start")
        # When a task is added while it is full, and then the slot frees
        await manager.enqueue_workflow("quick", "q", None)

        async def task_enqueued() -> bool:
            instance = await manager.get_workflow_instance("quick", "q")
            return bool(instance.get_payload() == [])  # on_start's continue_([]) committed

        # (its on_start committed the task: the wakeup went to the full runner)
        await eventually(task_enqueued, what="the quick run's task to be enqueued")
        run.release.set()
        # Then the waiting task starts at once, not at the next poll
        await wait_finished(manager, "quick", "q")
        await wait_finished(manager, "holds", "h")
    assert run.started == ["hold", "quick"]


async def test_a_task_held_back_by_its_key_starts_when_the_running_one_ends(
    make_manager: MakeManager,
) -> None:
    # A claim that comes back short because a key is at its limit took not every
    # queued task: the key's next task becomes claimable when the running one ends,
    # with no wakeup from anyone; the runner must claim then, not at its next poll.
    run = HeldTask("first")
    keyed = {"concurrency_key": "k", "concurrency_limit": 1}
    manager = register(
        make_manager(task_poll_interval=3600.0),
        {"keyed": Flow(enqueue(("t", "first"), ("t", "second"), **keyed), collect_results)},
        {"t": run},
        workers=4,
    )
    async with manager:
        await manager.enqueue_workflow("keyed", "k", None)
        await eventually(lambda: run.started == ["first"], what="the first keyed task to start")
        run.release.set()
        await wait_finished(manager, "keyed", "k")
    assert run.started == ["first", "second"]
