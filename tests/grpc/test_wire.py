"""What crosses the wire: values up to max_value_bytes, and errors with their texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cereal import errors
from cereal.drivers.sqlite import SQLiteDriver
from cereal.models import NewTask
from cereal.values import DEFAULT_MAX_VALUE_BYTES
from tests._waiting import wait_until


async def test_values_of_max_value_bytes_cross_both_ways(
    tmp_path: Path, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(f"sqlite:///{tmp_path / 'served.db'}", maintenance=False)
    client = await open_client(server.url())
    big = b'"' + b"x" * (DEFAULT_MAX_VALUE_BYTES - 2) + b'"'

    await client.enqueue_workflow("wf", "inst", big)
    [(events, completer)] = await client.claim_workflows(["wf"])
    assert events[0].instance.parameters == big
    await completer.continue_(big, [NewTask("t", big)])
    await completer.close()
    [(task, lease)] = await client.dequeue_tasks("t", 1)
    assert task.parameters == big
    await lease.succeed(big)
    [(events, completer)] = await client.claim_workflows(["wf"])
    assert events[0].instance.payload == big
    assert events[0].task_result is not None and events[0].task_result.result == big
    await completer.done(big)
    await completer.close()
    assert (await client.get_workflow_instance("wf", "inst")).result == big


async def test_errors_keep_their_class_and_text(
    tmp_path: Path, grpc_server_factory: Any, open_client: Any
) -> None:
    served = tmp_path / "served.db"
    server = grpc_server_factory(f"sqlite:///{served}", maintenance=False)
    client = await open_client(server.url())
    await client.enqueue_workflow("wf", "inst", None)

    with pytest.raises(errors.WorkflowInstanceExistsError) as remote:
        await client.enqueue_workflow("wf", "inst", None)
    with pytest.raises(errors.WorkflowInstanceNotFoundError) as remote_missing:
        await client.cancel_workflow("wf", "nobody")
    with pytest.raises(ValueError, match="max_instances >= 1"):
        await client.claim_workflows(["wf"], max_instances=0)

    async with SQLiteDriver(str(served)) as direct:
        with pytest.raises(errors.WorkflowInstanceExistsError) as local:
            await direct.enqueue_workflow("wf", "inst", None)
        with pytest.raises(errors.WorkflowInstanceNotFoundError) as local_missing:
            await direct.cancel_workflow("wf", "nobody")
    assert str(remote.value) == str(local.value)
    assert str(remote_missing.value) == str(local_missing.value)


async def test_a_dropped_claim_stream_redelivers_the_event(
    tmp_path: Path, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(f"sqlite:///{tmp_path / 'served.db'}", maintenance=False)
    holder = await open_client(server.url())
    other = await open_client(server.url())
    await holder.enqueue_workflow("wf", "inst", b"1")
    [(events, _completer)] = await holder.claim_workflows(["wf"])
    assert await other.claim_workflows(["wf"]) == []  # held on holder's stream

    # the holder's connection goes away without a decision (as a crashed process's would)
    await holder.close()

    [(again, completer)] = await other.claim_workflows(["wf"])
    assert again == events
    await completer.close()


async def test_a_dropped_task_stream_reports_the_task_lost(
    tmp_path: Path, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(f"sqlite:///{tmp_path / 'served.db'}", maintenance=False)
    holder = await open_client(server.url())
    other = await open_client(server.url())
    await other.enqueue_workflow("wf", "inst", None)
    [(_, completer)] = await other.claim_workflows(["wf"])
    await completer.continue_(None, [NewTask("t", b"2")])
    await completer.close()
    [(_task, _lease)] = await holder.dequeue_tasks("t", 1, task_expiry=3600)

    await holder.close()  # the lease's stream ends unreported

    # the server abandoned it at once: LOST long before the hour's expiry
    found: list[Any] = []

    async def arrived() -> bool:
        found[:] = await other.claim_workflows(["wf"])
        return bool(found)

    await wait_until(arrived, what="the task_complete event", timeout=15)
    [(events, completer)] = found
    assert events[0].task_result is not None
    assert events[0].task_result.status.value == "lost"
    await completer.close()


async def test_completers_of_a_closed_driver_report_their_work_lost(
    tmp_path: Path, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(f"sqlite:///{tmp_path / 'served.db'}", maintenance=False)
    holder = await open_client(server.url())
    await holder.enqueue_workflow("wf", "inst", None)
    [(_, claim)] = await holder.claim_workflows(["wf"])
    await claim.continue_(None, [NewTask("t", None)])
    await claim.close()
    await holder.enqueue_workflow("wf", "other", None)
    [(_, undecided)] = await holder.claim_workflows(["wf"])
    [(_, lease)] = await holder.dequeue_tasks("t", 1)

    await holder.close()

    with pytest.raises(errors.TaskLostError):
        await lease.succeed(None)
    with pytest.raises(errors.WorkflowClaimLostError):
        await undecided.done(None)
    await undecided.close()  # released with the driver's streams; closing is a no-op
