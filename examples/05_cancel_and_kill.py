"""Cancel vs kill.

``cancel_workflow`` asks politely: the workflow's ``on_cancel`` runs and
decides (here: fail with a message, or ignore the cancel and keep going).
``kill_workflow`` ends the instance at once with the error ``killed``; no
callback runs. Either way, when an instance ends its running tasks are
cancelled: async executors get ``asyncio.CancelledError``.

    python examples/05_cancel_and_kill.py [--db URL]
"""

from __future__ import annotations

import asyncio

from _helpers import FAST, run, wait_finished

import cereal


class LongJob:
    """Runs one long task; a cancel fails it unless the parameters say to ignore cancels."""

    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        w.enqueue_task("long-task", {"seconds": w.get_parameters()["seconds"]})
        return w.continue_({"cancel_requested": False})

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        return w.complete({"task": ev.result.get(), **w.get_payload()})

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        if w.get_parameters().get("ignore_cancel"):
            print(f"{w.instance_name}: cancel requested, finishing the task anyway")
            return w.continue_({"cancel_requested": True})
        print(f"{w.instance_name}: cancel requested, stopping")
        return w.fail("cancelled by the user")


CANCELLED_TASKS: set[str] = set()


async def long_task(task: cereal.Task) -> str:
    name = task.metadata.instance_name
    try:
        await asyncio.sleep(task.get_parameters()["seconds"])
    except asyncio.CancelledError:
        print(f"{name}: task cancelled because its workflow ended")
        CANCELLED_TASKS.add(name)
        raise
    return "task finished"


async def wait_task_running(manager: cereal.Manager, instance_name: str) -> None:
    while True:
        instance = await manager.get_workflow_instance("long-job", instance_name)
        if instance.get_payload() is not None:  # on_start has run and enqueued the task
            await asyncio.sleep(0.3)  # let the task start, to show it being cancelled
            return
        await asyncio.sleep(0.05)


async def main(db: str) -> None:
    # running tasks notice their workflow ended at their next heartbeat (default 10 s)
    manager = cereal.Manager(
        cereal.open_driver(db), **FAST, task_heartbeat_interval=0.2, task_expiry=5.0
    )
    manager.register_workflow_executor("long-job", LongJob())
    manager.register_task_executor("long-task", long_task, workers=3)
    async with manager:
        await manager.enqueue_workflow("long-job", "polite", {"seconds": 60})
        await manager.enqueue_workflow(
            "long-job", "stubborn", {"seconds": 2, "ignore_cancel": True}
        )
        await manager.enqueue_workflow("long-job", "doomed", {"seconds": 60})
        for name in ("polite", "stubborn", "doomed"):
            await wait_task_running(manager, name)

        await manager.cancel_workflow("long-job", "polite")
        await manager.cancel_workflow("long-job", "stubborn")
        await manager.kill_workflow("long-job", "doomed")

        for name in ("polite", "stubborn", "doomed"):
            done = await wait_finished(manager, "long-job", name)
            if done.err() is not None:
                print(f"long-job/{name} failed: {done.err()}")
            else:
                print(f"long-job/{name} completed: {done.get_result()}")
        for _ in range(100):  # the ended workflows' tasks are cancelled within a heartbeat
            if {"polite", "doomed"} <= CANCELLED_TASKS:
                break
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    run(main, __doc__)
