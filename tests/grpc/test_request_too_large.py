"""A decision over the server's message limit fails its instance instead of looping.

gRPC refuses a write over the client's send limit by ending the call, which
would drop every other claim and lease on that stream and redeliver the same
oversize decision forever. The client checks the size first and raises
``RequestTooLargeError`` without sending; the workflow runner fails the instance.
"""

from __future__ import annotations

from typing import Any

import cereal
from cereal import errors
from tests._waiting import wait_until

LIMIT = 256 * 1024  # the client's max_message_bytes here: far below the server's


class FanOut:
    """on_start enqueues ``count`` tasks of ``size``-character parameters, then completes."""

    def on_start(self, w: Any, ev: Any) -> Any:
        count, size = w.get_parameters()
        for _ in range(count):
            w.enqueue_task("t", "x" * size)
        return w.continue_(None)

    def on_task_complete(self, w: Any, ev: Any) -> Any:
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete("done")
        return w.continue_(None)

    def on_cancel(self, w: Any, ev: Any) -> Any:
        return w.fail("cancelled")


async def test_an_oversize_decision_fails_its_instance_and_leaves_others_alone(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url)
    driver = await open_client(f"grpc://{server.target}?max_message_bytes={LIMIT}")
    manager = cereal.Manager(driver, workflow_workers=1)
    manager.register_workflow_executor("fan", FanOut())
    manager.register_task_executor("t", lambda task: None, workers=2)
    # each value fits the value limit; together they are over the message limit
    await manager.enqueue_workflow("fan", "too-big", [8, 60_000])
    await manager.enqueue_workflow("fan", "fits", [2, 1_000])
    async with manager:
        await wait_until(
            lambda: _finished(manager, "too-big"), what="the oversize instance finished"
        )
        await wait_until(lambda: _finished(manager, "fits"), what="the other instance finished")

    big = await manager.get_workflow_instance("fan", "too-big")
    assert not big.is_running()
    try:
        big.get_result()
    except errors.WorkflowFailedError as failed:
        assert "decision too large to apply" in str(failed)
        assert "max_message_bytes" in str(failed)
    else:
        raise AssertionError("the oversize decision's instance did not fail")
    assert (await manager.get_workflow_instance("fan", "fits")).get_result() == "done"


async def _finished(manager: cereal.Manager, instance: str) -> bool:
    return not (await manager.get_workflow_instance("fan", instance)).is_running()
