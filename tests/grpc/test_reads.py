"""Read-only operations travel by their declaration: every one has an RPC of the right
shape, ``cereal serve`` checks its requests as the Manager checks its calls, and a
mismatch between the declaration and the proto file is refused by name."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

import grpc
from cereal.drivers._read_operations import READ_OPERATIONS, ReadOperation
from cereal.drivers.grpc.driver import GrpcDriver
from cereal.models import InstanceTask
from cereal.server.service import CerealService
from cereal.wire import convert, reads
from cereal.wire.proto import cereal_v1_pb2 as pb
from cereal.wire.proto import cereal_v1_pb2_grpc as pb_grpc

OPERATIONS = sorted(READ_OPERATIONS)


def test_the_contract_declares_the_inspection_reads() -> None:
    assert {"list_instance_tasks", "list_instance_events", "task_queue_stats"} <= set(OPERATIONS)


@pytest.mark.parametrize("name", OPERATIONS)
def test_each_read_operation_has_its_rpc_and_both_ends_serve_it(name: str) -> None:
    operation = READ_OPERATIONS[name]
    reads.check_rpc(operation)
    assert getattr(GrpcDriver, name).__name__ == name
    assert getattr(CerealService, reads.rpc_name(operation)).__name__ == reads.rpc_name(operation)


def test_a_read_rpc_converts_its_records_with_the_codec_of_cereal_wire_convert() -> None:
    shared = {
        "list_instance_tasks": convert.INSTANCE_TASK,
        "list_tasks": convert.INSTANCE_TASK,
        "list_instance_events": convert.INSTANCE_EVENT,
        "task_queue_stats": convert.QUEUE_STATS,
        "queue_depths": convert.QUEUE_DEPTH,
    }
    for name, codec in shared.items():
        assert reads._shape(READ_OPERATIONS[name])[3] is codec, name


def _operation(name: str, *parameters: str) -> ReadOperation:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return ReadOperation(
        name, InstanceTask, lambda **_: None, tuple(inspect.Parameter(p, kind) for p in parameters)
    )


@pytest.mark.parametrize(
    ("operation", "problem"),
    [
        (_operation("list_everything"), "no rpc ListEverything"),
        (_operation("list_instance_tasks", "workflow_name"), "ListInstanceTasksRequest has fields"),
        (
            _operation(
                "enqueue_workflow", "workflow_name", "instance_name", "parameters", "traceparent"
            ),
            "scalar",
        ),
        (_operation("get_workflow_instance", "workflow_name", "instance_name"), "one repeated"),
    ],
    ids=lambda item: getattr(item, "name", item),
)
def test_an_rpc_unlike_its_operation_is_refused_by_name(
    operation: ReadOperation, problem: str
) -> None:
    with pytest.raises(TypeError, match=problem) as refused:
        reads.check_rpc(operation)
    assert operation.name in str(refused.value)


def test_arguments_round_trip_with_unset_optionals_as_none() -> None:
    operation = READ_OPERATIONS["list_instance_tasks"]
    paged = {"workflow_name": "wf", "instance_name": "i", "limit": 5, "before": "12"}
    whole = {"workflow_name": "wf", "instance_name": "i", "limit": None, "before": None}
    for arguments in (paged, whole):
        message = reads.request_to_pb(operation, arguments)
        assert reads.arguments_from_pb(operation, message) == arguments
    assert not reads.request_to_pb(operation, whole).HasField("limit")


def test_a_call_that_does_not_fit_the_signature_is_a_type_error() -> None:
    operation = READ_OPERATIONS["list_instance_tasks"]
    with pytest.raises(TypeError):
        operation.bind(("wf",), {})
    with pytest.raises(TypeError):
        operation.bind(("wf", "i"), {"page": 3})
    with pytest.raises(TypeError, match="limit"):
        operation.bind(("wf", "i"), {"limit": "5"})


@pytest.fixture
async def stub(served_url: str, grpc_server_factory: Any) -> AsyncIterator[Any]:
    """A raw ``cereal.v1.Cereal`` stub on a fresh served store."""
    server = grpc_server_factory(served_url, maintenance=False)
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield pb_grpc.CerealStub(channel)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("method", "ask", "field"),
    [
        (
            "ListInstanceTasks",
            pb.ListInstanceTasksRequest(workflow_name="wf", instance_name="i", limit=0),
            "limit",
        ),
        (
            "ListInstanceTasks",
            pb.ListInstanceTasksRequest(workflow_name="wf", instance_name="i", before="x1"),
            "before",
        ),
        (
            "ListInstanceTasks",
            pb.ListInstanceTasksRequest(workflow_name="", instance_name="i"),
            "workflow name",
        ),
        (
            "ListInstanceEvents",
            pb.ListInstanceEventsRequest(workflow_name="wf", instance_name="i", before=-1),
            "before",
        ),
        ("ListTasks", pb.ListTasksRequest(task_name=""), "task name"),
        ("ListTasks", pb.ListTasksRequest(task_name="t\x1b"), "task name"),
        ("ListTasks", pb.ListTasksRequest(task_name="t", limit=-1), "limit"),
        ("ListTasks", pb.ListTasksRequest(task_name="t", before="-3"), "before"),
        (
            "ListInstanceEvents",
            pb.ListInstanceEventsRequest(workflow_name="wf", instance_name="i\n", limit=1),
            "instance name",
        ),
    ],
    ids=repr,
)
async def test_the_server_checks_a_read_request_before_its_store_sees_it(
    stub: Any, method: str, ask: Any, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await getattr(stub, method)(ask)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (refused.value.details() or "")
