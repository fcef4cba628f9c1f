"""A runner that was full when new work was announced claims it as soon as a slot frees.

A runner whose last claim came back short does not claim again when a slot
frees unless something says more work may be queued (a wakeup, a full
claim, owed tasks): an idle runner would not claim then either. A wakeup
that came while every slot was busy is such a sign, and must not be lost.
Task polls are an hour apart here: only the wakeup can start the task.
"""

from __future__ import annotations

import asyncio

from cereal import Task
from tests.conformance._executors import Flow, collect_results, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished


async def test_work_announced_while_every_slot_was_busy_starts_when_one_frees(
    make_manager: MakeManager,
) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def run(task: Task) -> str:
        started.append(str(task.get_parameters()))
        if task.get_parameters() == "hold":
            await release.wait()
        return "ran"

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
        await eventually(lambda: started == ["hold"], what="the held task to start")
        # When a task is added while it is full, and then the slot frees
        await manager.enqueue_workflow("quick", "q", None)

        async def task_enqueued() -> bool:
            instance = await manager.get_workflow_instance("quick", "q")
            return bool(instance.get_payload() == [])  # on_start's continue_([]) committed

        # (its on_start committed the task: the wakeup went to the full runner)
        await eventually(task_enqueued, what="the quick run's task to be enqueued")
        release.set()
        # Then the waiting task starts at once, not at the next poll
        await wait_finished(manager, "quick", "q")
        await wait_finished(manager, "holds", "h")
    assert started == ["hold", "quick"]
