"""Composition: a chain of sub-workflows, a parallel fan-out, a single-task workflow.

``cereal.patterns`` builds workflows out of ordinary workflow executors:

* ``ChainWorkflowExecutor(a, b)`` runs ``a`` then ``b`` (a failed link stops
  the chain), each with its own parameters;
* ``ParallelWorkflowExecutor({"eu": x, "us": y})`` runs them side by side and
  completes when all have finished, recording each outcome;
* ``register_single_task_workflow_executor`` makes a workflow of one task.

Tasks enqueued by sub-workflows need object parameters: the pattern adds a
routing key (``__idx`` / ``__key``) to them, which task executors can ignore.

    python examples/03_chain_and_parallel.py [--db URL]
"""

from __future__ import annotations

from typing import Any

from _helpers import FAST, run, wait_finished

import cereal
from cereal.patterns import (
    ChainWorkflowExecutor,
    ParallelWorkflowExecutor,
    enqueue_chain_workflow,
    enqueue_parallel_workflow,
    get_chain_workflow_instance,
    get_parallel_workflow_instance,
    register_single_task_workflow_executor,
)


class RunStep:
    """A sub-workflow: run one ``step`` task with our parameters, end with its result."""

    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        w.enqueue_task("step", {"input": w.get_parameters()})
        return w.continue_()

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        failure = ev.result.err()
        return w.fail(failure) if failure else w.complete(ev.result.get())

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        return w.fail("cancelled")


def step(task: cereal.Task) -> Any:
    value = task.get_parameters()["input"]  # the routing key is in there too; we ignore it
    if value == "boom":
        raise RuntimeError("region unavailable")
    return f"{value} done"


def shout(task: cereal.Task) -> str:
    return str(task.get_parameters()).upper()


async def main(db: str) -> None:
    manager = cereal.Manager(cereal.open_driver(db), **FAST)
    manager.register_workflow_executor("pipeline", ChainWorkflowExecutor(RunStep(), RunStep()))
    manager.register_workflow_executor(
        "deploy", ParallelWorkflowExecutor({"eu": RunStep(), "us": RunStep(), "ap": RunStep()})
    )
    manager.register_task_executor("step", step, workers=3)
    register_single_task_workflow_executor(manager, "shout", shout, workers=2, timeout=5)

    async with manager:
        await enqueue_chain_workflow(manager, "pipeline", "p1", ["fetch", "build"])
        await enqueue_parallel_workflow(
            manager, "deploy", "d1", {"eu": "eu", "us": "us", "ap": "boom"}
        )
        await manager.enqueue_workflow("shout", "s1", "hello")

        await wait_finished(manager, "pipeline", "p1")
        chain = await get_chain_workflow_instance(manager, "pipeline", "p1")
        for index in range(chain.sub_workflow_count()):
            print(f"chain link {index} result: {chain.get_sub_workflow(index).get_result()}")

        await wait_finished(manager, "deploy", "d1")
        parallel = await get_parallel_workflow_instance(manager, "deploy", "d1")
        for key in parallel.list_sub_workflows():
            sub = parallel.get_sub_workflow(key)
            outcome = f"failed: {sub.err()}" if sub.err() else f"result: {sub.get_result()}"
            print(f"parallel {key!r} {outcome}")

        single = await wait_finished(manager, "shout", "s1")
        print(f"single-task result: {single.get_result()}")


if __name__ == "__main__":
    run(main, __doc__)
