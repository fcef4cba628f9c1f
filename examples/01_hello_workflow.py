"""Hello, workflow: one workflow, one task, one result.

The workflow executor reacts to events with decisions: on start it enqueues a
``greet`` task and continues; when the task completes it completes with the
task's result. The task executor is a plain function.

    python examples/01_hello_workflow.py [--db sqlite:////tmp/hello.db]
"""

from __future__ import annotations

from _helpers import FAST, run, wait_finished

import cereal


class HelloWorkflow:
    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        w.enqueue_task("greet", {"name": w.get_parameters()})
        return w.continue_()

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        return w.complete(ev.result.get())

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        return w.fail("cancelled")


def greet(task: cereal.Task) -> str:
    return f"Hello, {task.get_parameters()['name']}!"


async def main(db: str) -> None:
    manager = cereal.Manager(cereal.open_driver(db), **FAST)
    manager.register_workflow_executor("hello", HelloWorkflow())
    manager.register_task_executor("greet", greet)
    async with manager:
        await manager.enqueue_workflow("hello", "first", "world")
        print("enqueued hello/first with parameters 'world'")
        done = await wait_finished(manager, "hello", "first")
        print(f"hello/first finished: {done.get_result()}")


if __name__ == "__main__":
    run(main, __doc__)
