"""Deploying changed workflow code while runs are in flight (docs/changing-workflows.md).

A Manager running version 1 of a workflow (steps A -> B -> C) stops while
two runs are mid-way: one waits on step B, one on step C. Version 2 adds a
step (A -> B -> B2) and removes C. The runs go on under the new code exactly
as the docs say: the run at B finishes through the new B2; the run at C
keeps its queued C task, which waits (is not failed or lost) while no
executor for C is registered, and completes once a Manager that still
registers C's task executor (kept until that queue drains) takes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cereal import Decision, Task, WorkflowInstance
from tests.conformance._executors import WF, register
from tests.plugins.manager import MakeManager, eventually, wait_finished

NO_EXPIRY: dict[str, Any] = {"task_expiry": 3600.0, "stop_grace_period": 60.0}


class Steps:
    """Runs ``order`` one task at a time; the payload lists the steps done."""

    def __init__(self, order: list[str], legacy: frozenset[str] = frozenset()) -> None:
        self.order = order
        self.legacy = legacy

    def on_start(self, w: WorkflowInstance, ev: Any) -> Decision:
        first = w.get_parameters().get("start", self.order[0])
        w.enqueue_task(first, None)
        return w.continue_({"done": []})

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        step = ev.result.task_name
        done = [*w.get_payload()["done"], step]
        if step in self.legacy:  # a step this version removed: its run ends here
            return w.complete({"done": done, "finished_by": "legacy path"})
        following = self.order.index(step) + 1
        if following == len(self.order):
            return w.complete({"done": done})
        w.enqueue_task(self.order[following], None)
        return w.continue_({"done": done})

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


def instant(task: Task) -> str:
    return "ok"


async def test_running_instances_go_on_under_changed_code(make_manager: MakeManager) -> None:
    # Given version 1 (A -> B -> C), whose B and C outlive the stop
    started: set[str] = set()

    async def stuck(task: Task) -> None:
        started.add(task.metadata.instance_name)
        await asyncio.Event().wait()

    v1 = register(
        make_manager(**NO_EXPIRY),
        {WF: Steps(["A", "B", "C"])},
        {"A": instant, "B": stuck, "C": stuck},
    )
    await v1.start()
    await v1.enqueue_workflow(WF, "at-b", {})
    await v1.enqueue_workflow(WF, "at-c", {"start": "C"})
    await eventually(lambda: started == {"at-b", "at-c"}, what="B and C running")

    # When it stops mid-workflow: both running tasks are handed back to the queue
    await v1.stop(grace_period=0)
    assert (await v1.get_workflow_instance(WF, "at-b")).get_payload() == {"done": ["A"]}
    assert [t.instance_name for t in await v1.list_tasks("B")] == ["at-b"]
    assert [t.instance_name for t in await v1.list_tasks("C")] == ["at-c"]

    # And version 2 (A -> B -> B2, C removed) starts without C's executor
    v2 = register(
        make_manager(**NO_EXPIRY),
        {WF: Steps(["A", "B", "B2"], legacy=frozenset({"C"}))},
        {"A": instant, "B": instant, "B2": instant},
    )
    await v2.start()

    # Then the run at B finishes through the new step B2
    at_b = await wait_finished(v2, WF, "at-b")
    assert at_b.get_result() == {"done": ["A", "B", "B2"]}
    # and the run at C waits: its C task stays queued, neither failed nor lost
    at_c = await v2.get_workflow_instance(WF, "at-c")
    assert at_c.is_running()
    [waiting] = await v2.list_tasks("C")
    assert (waiting.instance_name, waiting.state, waiting.attempt) == ("at-c", "queued", 0)
    assert await v2.list_dead_tasks() == []
    await v2.stop()

    # When version 2 is deployed keeping C's task executor until its queue drains
    drained = register(
        make_manager(**NO_EXPIRY),
        {WF: Steps(["A", "B", "B2"], legacy=frozenset({"C"}))},
        {"A": instant, "B": instant, "B2": instant, "C": instant},
    )
    await drained.start()

    # Then the run at C completes through version 2's handling of the removed step
    done = await wait_finished(drained, WF, "at-c")
    assert done.get_result() == {"done": ["C"], "finished_by": "legacy path"}
    assert await drained.list_tasks("C") == []
