"""Task results: successes, failures and typed values.

The workflow fans out one ``divide`` task per pair, keeps what came back in
its payload with ``continue_``, and completes with a summary once every task
has reported. A task that raises does not fail the workflow: the workflow sees
the failure in ``ev.result.err()`` and decides. Parameters and results decode
into dataclasses with ``get_parameters(Type)`` / ``get(Type)``.

    python examples/02_task_results.py [--db URL]
"""

from __future__ import annotations

from dataclasses import dataclass

from _helpers import FAST, run, wait_finished

import cereal


@dataclass
class Division:
    numerator: int
    denominator: int


@dataclass
class Quotient:
    value: float


class DivideAll:
    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        for pair in w.get_parameters():
            w.enqueue_task("divide", Division(*pair))
        return w.continue_({"ok": [], "failed": []})

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        seen = w.get_payload()
        division = ev.result.get_parameters(Division)
        label = f"{division.numerator}/{division.denominator}"
        failure = ev.result.err()
        if failure is None:
            quotient = ev.result.get(Quotient)
            print(f"task divide({label}) returned {quotient}")
            seen["ok"].append([label, quotient.value])
        else:
            print(f"task divide({label}) failed: {failure}")
            seen["failed"].append([label, str(failure)])
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(seen)
        return w.continue_(seen)

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        return w.fail("cancelled")


def divide(task: cereal.Task) -> Quotient:
    division = task.get_parameters(Division)
    return Quotient(division.numerator / division.denominator)  # raises ZeroDivisionError on 0


async def main(db: str) -> None:
    manager = cereal.Manager(cereal.open_driver(db), **FAST)
    manager.register_workflow_executor("divide-all", DivideAll())
    manager.register_task_executor("divide", divide, workers=3)
    async with manager:
        await manager.enqueue_workflow("divide-all", "batch", [[10, 4], [1, 3], [10, 0]])
        done = await wait_finished(manager, "divide-all", "batch")
        summary = done.get_result()
        print(f"completed: {len(summary['ok'])} ok, {len(summary['failed'])} failed")
        print(f"result: {summary}")


if __name__ == "__main__":
    run(main, __doc__)
