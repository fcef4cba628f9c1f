"""Every field of every record crosses the wire, and every driver method is an RPC.

Each sample sets every field of its model to a value other than the default,
and the test checks that the sample names every field the model has: a field
added to a model later makes this fail until the proto and the converters
carry it (see docs/grpc.md, "Adding an RPC for a new driver method").
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cereal.drivers import base
from cereal.drivers.grpc import GrpcDriver
from cereal.drivers.grpc.driver import (
    _RemoteScheduleCompleter,
    _RemoteTaskCompleter,
    _RemoteWorkflowCompleter,
)
from cereal.models import (
    ExpiredLease,
    FailureDetails,
    HistoryRetention,
    InstanceEvent,
    InstanceTask,
    LeaseSettlement,
    ListWorkflowFilter,
    NewTask,
    NewWorker,
    QueueDepth,
    Schedule,
    ScheduleUpdate,
    TaskData,
    TaskMetadata,
    TaskQueueStats,
    TaskResultData,
    TaskStatus,
    WorkerInfo,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
    WorkflowRetention,
)
from cereal.wire import convert

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

FAILED_RUN = WorkflowInstanceData(
    workflow_name="wf",
    instance_name="inst",
    status=WorkflowInstanceStatus.COMPLETED,
    parameters=b"p",
    payload=b"",
    result=b"r",
    err="boom",
    started_at=T0,
    ended_at=T1,
    error_type="builtins.KeyError",
    error_traceback="Traceback ...",
    traceparent=TRACEPARENT,
    concurrency_key="customer-7",
    concurrency_limit=2,
    waiting_for_key=True,
)
FAILED_RESULT = TaskResultData(
    task_name="t",
    status=TaskStatus.FAILED,
    parameters=b"tp",
    error_text="bad",
    result=b"",
    error_type="builtins.ValueError",
    error_traceback="Traceback (t) ...",
    attempts=3,
    traceparent="00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
)
POLICY = '{"max_attempts": 3}'
METADATA = TaskMetadata(
    enqueued_at=T0,
    task_name="t",
    workflow_name="wf",
    instance_name="inst",
    attempt=3,
    task_id="id-1",
    traceparent=TRACEPARENT,
)


def _through_event(result: TaskResultData) -> TaskResultData | None:
    event = WorkflowEvent(WorkflowEventType.TASK_COMPLETE, FAILED_RUN, 1, 1, T0, result)
    return convert.EVENT.from_pb(convert.EVENT.to_pb(event)).task_result


def _through_task(metadata: TaskMetadata) -> TaskMetadata:
    task = TaskData(name="t", parameters=None, metadata=metadata)
    return convert.TASK.from_pb(convert.TASK.to_pb(task)).metadata


def _through_update(update: ScheduleUpdate) -> ScheduleUpdate:
    return convert.update_from_pb(convert.update_to_pb("wf", "inst", update))


def _through_retention(retention: HistoryRetention) -> HistoryRetention:
    return convert.RETENTION.from_pb(convert.RETENTION.to_pb(retention))


# (a fully set sample, a round trip through its message)
ROUND_TRIPS: list[tuple[object, Callable[[Any], object]]] = [
    (FAILED_RUN, lambda x: convert.INSTANCE.from_pb(convert.INSTANCE.to_pb(x))),
    (FAILED_RESULT, _through_event),
    (
        WorkflowEvent(WorkflowEventType.TASK_COMPLETE, FAILED_RUN, 4, 2, T2, FAILED_RESULT),
        lambda x: convert.EVENT.from_pb(convert.EVENT.to_pb(x)),
    ),
    (
        NewTask(
            "t",
            b"x",
            start_after=T1,
            traceparent=TRACEPARENT,
            retry_policy=POLICY,
            concurrency_key="customer-7",
            concurrency_limit=2,
            rate_limit_starts=10,
            rate_limit_seconds=1.5,
            priority=7,
            idempotency_key="charge-7",
        ),
        lambda x: convert.NEW_TASK.from_pb(convert.NEW_TASK.to_pb(x)),
    ),
    (
        TaskData(name="t", parameters=b"x", metadata=METADATA, retry_policy=POLICY),
        lambda x: convert.TASK.from_pb(convert.TASK.to_pb(x)),
    ),
    (METADATA, _through_task),
    (
        Schedule(
            id=7,
            enabled=False,
            workflow_name="wf",
            instance_name="inst",
            parameters=b"s",
            recurrence="*/5 * * * *",
            next_due_at=T0,
            last_enqueued_at=T1,
            last_start=T1,
            last_end=T2,
            overlap="buffer_one",
            catch_up_window=30.5,
            run_pending=True,
        ),
        lambda x: convert.SCHEDULE.from_pb(convert.SCHEDULE.to_pb(x)),
    ),
    (
        ScheduleUpdate(
            enabled=True,
            parameters=b"",
            recurrence="@every 1m",
            next_due_at=T2,
            due_rule="@every 2m",
            overlap="terminate_other",
            catch_up_window=0.0,
        ),
        _through_update,
    ),
    (
        ListWorkflowFilter(
            workflow_name="wf",
            instance_name="inst",
            is_running=False,
            limit=0,
            offset=20,
            newest_first=True,
        ),
        lambda x: convert.LISTING.from_pb(convert.LISTING.to_pb(x)),
    ),
    (
        ExpiredLease("12", "a-lease", 3, "t", "wf", "inst", '{"max_attempts": 2}'),
        lambda x: convert.EXPIRED_LEASE.from_pb(convert.EXPIRED_LEASE.to_pb(x)),
    ),
    (
        LeaseSettlement("12", "a-lease", delay=2.5, error="why"),
        lambda x: convert.SETTLEMENT.from_pb(convert.SETTLEMENT.to_pb(x)),
    ),
    (
        HistoryRetention(
            max_rows=5,
            margin_rows=1,
            max_age=60.0,
            per_workflow={
                "reports": WorkflowRetention(max_runs=3),
                "beats": WorkflowRetention(max_age=86400.0),
                "both": WorkflowRetention(max_runs=0, max_age=1.5),
            },
        ),
        _through_retention,
    ),
    (
        InstanceTask(
            "id-1", "t", "running", b"", T0, T1, 2, "wf", "inst", "customer-7", 2, 10, 1.5, 7, "k-1"
        ),
        lambda x: convert.INSTANCE_TASK.from_pb(convert.INSTANCE_TASK.to_pb(x)),
    ),
    (
        InstanceEvent(
            3,
            WorkflowEventType.TASK_COMPLETE,
            T1,
            "t",
            TaskStatus.LOST,
            "gone",
            pending=True,
            task_enqueued_at=T0,
            task_attempts=2,
        ),
        lambda x: convert.INSTANCE_EVENT.from_pb(convert.INSTANCE_EVENT.to_pb(x)),
    ),
    (
        TaskQueueStats("t", 4, 1, T0),
        lambda x: convert.QUEUE_STATS.from_pb(convert.QUEUE_STATS.to_pb(x)),
    ),
    (
        QueueDepth("workflow", "wf", 9, T1),
        lambda x: convert.QUEUE_DEPTH.from_pb(convert.QUEUE_DEPTH.to_pb(x)),
    ),
    (
        NewWorker("w-1", "host", 42, ("wf",), ("t", "u"), "1.2.3", 12.5),
        lambda x: convert.NEW_WORKER.from_pb(convert.NEW_WORKER.to_pb(x)),
    ),
    (
        WorkerInfo("w-1", "host", 42, T0, T2, ("wf",), ("t",), "1.2.3"),
        lambda x: convert.WORKER_INFO.from_pb(convert.WORKER_INFO.to_pb(x)),
    ),
    (
        FailureDetails("boom", "builtins.KeyError", "Traceback ..."),
        lambda x: convert.FAILURE.from_pb(convert.FAILURE.to_pb(x)),
    ),
]


@pytest.mark.parametrize(
    ("sample", "round_trip"), ROUND_TRIPS, ids=[type(s).__name__ for s, _ in ROUND_TRIPS]
)
def test_every_field_survives_its_message(
    sample: object, round_trip: Callable[[Any], object]
) -> None:
    assert dataclasses.is_dataclass(sample)
    for model_field in dataclasses.fields(sample):
        default = model_field.default
        if default is not dataclasses.MISSING:
            assert getattr(sample, model_field.name) != default, (
                f"the {type(sample).__name__} sample leaves {model_field.name} at its default:"
                " set it, and carry it in the proto"
            )
    assert round_trip(sample) == sample


def test_absent_optionals_stay_absent() -> None:
    bare_run = WorkflowInstanceData("wf", "inst", WorkflowInstanceStatus.RUNNING)
    assert convert.INSTANCE.from_pb(convert.INSTANCE.to_pb(bare_run)) == bare_run
    assert convert.NEW_TASK.from_pb(convert.NEW_TASK.to_pb(NewTask("t"))) == NewTask("t")
    bare_failure = FailureDetails("only text")
    assert convert.FAILURE.from_pb(convert.FAILURE.to_pb(bare_failure)) == bare_failure
    assert _through_update(ScheduleUpdate()) == ScheduleUpdate()
    everything = ListWorkflowFilter()
    assert convert.LISTING.from_pb(convert.LISTING.to_pb(everything)) == everything
    no_policy = ExpiredLease("1", "l", 1, "t", "wf", "inst", None)
    assert convert.EXPIRED_LEASE.from_pb(convert.EXPIRED_LEASE.to_pb(no_policy)) == no_policy
    lost = LeaseSettlement("1", "l")  # no delay: LOST
    assert convert.SETTLEMENT.from_pb(convert.SETTLEMENT.to_pb(lost)) == lost
    retry_now = LeaseSettlement("1", "l", delay=0.0)  # zero is a delay, not an absent one
    assert convert.SETTLEMENT.from_pb(convert.SETTLEMENT.to_pb(retry_now)) == retry_now


# kept by the base class for every driver, or meaningless across the wire
_NOT_REMOTE = {
    "init",
    "close",
    "add_wakeup_listener",
    "remove_wakeup_listener",
    # the base class refuses with TypeError: no caller connection reaches the server's store
    "enqueue_workflow_in_transaction",
    # the server migrates each domain's store as it opens it; a client's migrate connects
    "migrate",
    # defaults that call a remote method of the same object (dequeue_tasks, run_and_advance)
    "dequeue_task",
    "enqueue_and_update",
    # the server takes leases up for its clients (a resume request): a client's lease
    # moves to a new stream by itself, so grpc:// does not offer it (RESUMABLE_LEASES)
    "resume_task_lease",
}


def _overridable(cls: type) -> set[str]:
    return {
        name
        for name, member in vars(cls).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }


@pytest.mark.parametrize(
    ("contract", "remote"),
    [
        (base.Driver, GrpcDriver),
        (base.WorkflowCompleter, _RemoteWorkflowCompleter),
        (base.TaskCompleter, _RemoteTaskCompleter),
        (base.ScheduledWorkflowCompleter, _RemoteScheduleCompleter),
    ],
    ids=["Driver", "WorkflowCompleter", "TaskCompleter", "ScheduledWorkflowCompleter"],
)
def test_every_contract_method_goes_to_the_server(contract: type, remote: type) -> None:
    """A default of the contract would answer from the client's process, not the domain."""
    missing = _overridable(contract) - _overridable(remote) - _NOT_REMOTE
    assert not missing, f"{remote.__name__} inherits {sorted(missing)}: add RPCs for them"
