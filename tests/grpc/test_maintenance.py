"""The server runs each domain's schedules and expiry sweep itself, with no Manager anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cereal import errors
from cereal.models import NewTask, TaskStatus
from tests._waiting import wait_until


async def test_the_server_runs_due_schedules_and_expires_silent_leases(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, sweep_expiry=0.2)
    client = await open_client(server.url(domain="ops"))

    # a due schedule, and no Manager: only the server's scheduler can start it
    past = datetime.now(UTC) - timedelta(seconds=1)
    await client.create_workflow_schedule("nightly", "run", b"7", True, "FREQ=DAILY", past)

    async def started() -> bool:
        try:
            found = await client.get_workflow_instance("nightly", "run")
        except errors.WorkflowInstanceNotFoundError:
            return False
        return found.parameters == b"7"

    await wait_until(started, what="the server's scheduler enqueued the run", timeout=15)
    assert (await client.get_workflow_schedule("nightly", "run")).next_due_at > past

    # a lease whose holder stays connected but silent: the server's sweep reports it LOST
    [(_, claim)] = await client.claim_workflows(["nightly"])
    await claim.continue_(None, [NewTask("slow", None)])
    await claim.close()
    [(_task, _lease)] = await client.dequeue_tasks("slow", 1, task_expiry=0.1)
    found: list[Any] = []

    async def lost_arrived() -> bool:
        found[:] = await client.claim_workflows(["nightly"])
        return bool(found)

    await wait_until(lost_arrived, what="the sweep's LOST result", timeout=15)
    [(events, completer)] = found
    assert events[0].task_result is not None
    assert events[0].task_result.status is TaskStatus.LOST
    await completer.close()
