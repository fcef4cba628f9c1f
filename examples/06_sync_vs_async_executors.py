"""Plain (sync) and async executors, side by side.

Any callback or task executor may be a plain function or an ``async def``:

* async ones run on the event loop: use them for I/O with async libraries;
* plain ones run in worker threads so they never block the loop: use them
  for blocking libraries or CPU-bound work. ``workers=N`` lets N tasks of one
  name run at once. A plain task cannot be interrupted; it should poll
  ``task.is_cancelled()`` in long loops.

Both workflows below fan out four 0.3 s tasks with ``workers=4``: they finish
in about 0.3 s each, not 1.2 s, because the tasks run concurrently.

    python examples/06_sync_vs_async_executors.py [--db URL]
"""

from __future__ import annotations

import asyncio
import threading
import time

from _helpers import FAST, run, wait_finished

import cereal

MAIN_THREAD = threading.get_ident()


def where() -> str:
    return "the event loop thread" if threading.get_ident() == MAIN_THREAD else "a worker thread"


class FanOut:
    """Plain callbacks: enqueue four tasks, complete with their sorted results."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name

    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        print(f"{w.workflow_name}: plain on_start runs in {where()}")
        for i in range(4):
            w.enqueue_task(self.task_name, i)
        return w.continue_([])

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        results = [*w.get_payload(), ev.result.get()]
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(sorted(results))
        return w.continue_(results)

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        return w.fail("cancelled")


class AsyncFanOut(FanOut):
    """The same workflow with an async on_start: it runs on the event loop."""

    async def on_start(  # type: ignore[override]
        self, w: cereal.WorkflowInstance, ev: cereal.StartEvent
    ) -> cereal.Decision:
        print(f"{w.workflow_name}: async on_start runs in {where()}")
        for i in range(4):
            w.enqueue_task(self.task_name, i)
        return w.continue_([])


def blocking_square(task: cereal.Task) -> int:
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # blocking work, in slices so a cancel is noticed
        if task.is_cancelled():
            raise RuntimeError("cancelled")
        time.sleep(0.05)
    return int(task.get_parameters()) ** 2


async def async_square(task: cereal.Task) -> int:
    await asyncio.sleep(0.3)  # non-blocking I/O stand-in
    return int(task.get_parameters()) ** 2


async def main(db: str) -> None:
    manager = cereal.Manager(cereal.open_driver(db), **FAST)
    manager.register_workflow_executor("sync-fanout", FanOut("blocking-square"))
    manager.register_workflow_executor("async-fanout", AsyncFanOut("async-square"))
    manager.register_task_executor("blocking-square", blocking_square, workers=4)
    manager.register_task_executor("async-square", async_square, workers=4)
    async with manager:
        started = time.monotonic()
        await manager.enqueue_workflow("sync-fanout", "run")
        await manager.enqueue_workflow("async-fanout", "run")
        for name in ("sync-fanout", "async-fanout"):
            done = await wait_finished(manager, name, "run")
            print(f"{name} result: {done.get_result()}")
        print(f"both workflows completed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    run(main, __doc__)
