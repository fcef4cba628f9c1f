"""A task running across a graceful ``cereal serve`` restart reports its result to the next server.

The lease's stream breaks with the old server; the client re-presents the
lease (task id and token) on a new stream and the new server takes it up,
because a stopping server leaves unreported leases in the store. The workflow
sees the task's one result, never LOST. (A real process killed with -9:
``test_server_crash.py``.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from cereal import Decision, Manager, Task, WorkflowInstance
from cereal.drivers.grpc import GrpcDriver
from tests.plugins.manager import FAST_OPTIONS, eventually, wait_finished

# leases outlive the test: only the restart could end one
LONG_LEASES: dict[str, Any] = {**FAST_OPTIONS, "task_expiry": 3600.0}


class OneTask:
    """Run one task; complete with how it ended (a LOST task is not enqueued again)."""

    def on_start(self, w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("gated", 7)
        return w.continue_(None)

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        result = ev.result
        return w.complete(
            {"status": str(result.status), "attempts": result.attempts, "value": result.get()}
        )

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


class Gated:
    """A task executor that waits for its gate, then doubles its parameter."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[Task] = []

    async def run(self, task: Task) -> int:
        self.started.append(task)
        await self.gate.wait()
        value: int = task.get_parameters()
        return value * 2


async def test_a_task_finishing_after_a_graceful_restart_reports_success_once(
    served_url: str, grpc_server_factory: Any
) -> None:
    first = grpc_server_factory(served_url, maintenance=False)
    manager = Manager(GrpcDriver(first.target), **LONG_LEASES)
    manager.register_workflow_executor("wf", OneTask())
    gated = Gated()
    manager.register_task_executor("gated", gated.run)
    await manager.start()
    try:
        await manager.enqueue_workflow("wf", "inst")
        await eventually(lambda: len(gated.started) == 1, what="the task started")

        # When the server restarts gracefully (same port, same store) while the task runs
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(grpc_server_factory, served_url, maintenance=False, port=first.port)
        # and the task finishes only once the new server is up
        gated.gate.set()

        # Then its workflow gets its result, once: no LOST, no second run
        final = await wait_finished(manager, "wf", "inst", timeout=30)
        assert final.get_result() == {"status": "success", "attempts": 1, "value": 14}
        assert len(gated.started) == 1
    finally:
        await manager.stop(grace_period=1.0)
