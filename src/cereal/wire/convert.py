"""Records of :mod:`cereal.models` to and from their ``cereal.v1`` messages.

Both ends use these: one codec per record, with ``to_pb`` and ``from_pb``.
Most are :class:`~cereal.wire.codec.RecordCodec`, which carries every field by
name (a field added to a model is added to its message only, and a model
field the message lacks fails at import). Written out by hand
(:class:`~cereal.wire.codec.WrittenCodec`) are:

- the hot path's records, claimed and decided many times a second: an event
  with its instance and task result, a new task, a leased task. The generic
  walk costs about 15-75% more per message there (scripts/bench_convert.py);
  tests/grpc/test_codec.py checks that they agree with a generic codec;
- records whose message is shaped differently: a leased task (its metadata
  is flattened into ``Task``), a schedule update (``UNSET`` parameters travel
  as ``set_parameters`` false) and a sweep request (the retention plus the
  expiry).
"""

from __future__ import annotations

from collections.abc import Mapping

from cereal.models import (
    UNSET,
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
    check_overlap,
)
from cereal.wire.codec import (
    FieldCodec,
    RecordCodec,
    WrittenCodec,
    optional_field,
    plain_codec,
    required_time,
    time_from_pb,
    time_to_pb,
    value_from_pb,
    value_to_pb,
)
from cereal.wire.proto import cereal_v1_pb2 as pb

# ---- the hot path, written out ------------------------------------------------------


def _instance_to_pb(instance: WorkflowInstanceData) -> pb.Instance:
    return pb.Instance(
        workflow_name=instance.workflow_name,
        instance_name=instance.instance_name,
        status=instance.status.value,
        parameters=value_to_pb(instance.parameters),
        payload=value_to_pb(instance.payload),
        result=value_to_pb(instance.result),
        err=instance.err,
        started_at=time_to_pb(instance.started_at),
        ended_at=time_to_pb(instance.ended_at),
        error_type=instance.error_type,
        error_traceback=instance.error_traceback,
        traceparent=instance.traceparent,
        concurrency_key=instance.concurrency_key,
        concurrency_limit=instance.concurrency_limit,
        waiting_for_key=instance.waiting_for_key,
    )


def _instance_from_pb(message: pb.Instance) -> WorkflowInstanceData:
    return WorkflowInstanceData(
        workflow_name=message.workflow_name,
        instance_name=message.instance_name,
        status=WorkflowInstanceStatus(message.status),
        parameters=value_from_pb(message, "parameters"),
        payload=value_from_pb(message, "payload"),
        result=value_from_pb(message, "result"),
        err=optional_field(message, "err"),
        started_at=time_from_pb(message, "started_at"),
        ended_at=time_from_pb(message, "ended_at"),
        error_type=optional_field(message, "error_type"),
        error_traceback=optional_field(message, "error_traceback"),
        traceparent=optional_field(message, "traceparent"),
        concurrency_key=optional_field(message, "concurrency_key"),
        concurrency_limit=optional_field(message, "concurrency_limit"),
        waiting_for_key=message.waiting_for_key,
    )


INSTANCE = WrittenCodec(_instance_to_pb, _instance_from_pb)
"""A live or finished instance."""


def _task_result_to_pb(result: TaskResultData) -> pb.TaskResult:
    return pb.TaskResult(
        task_name=result.task_name,
        status=result.status.value,
        parameters=value_to_pb(result.parameters),
        error_text=result.error_text,
        result=value_to_pb(result.result),
        error_type=result.error_type,
        error_traceback=result.error_traceback,
        attempts=result.attempts,
        traceparent=result.traceparent,
    )


def _task_result_from_pb(message: pb.TaskResult) -> TaskResultData:
    return TaskResultData(
        task_name=message.task_name,
        status=TaskStatus(message.status),
        parameters=value_from_pb(message, "parameters"),
        error_text=message.error_text,
        result=value_from_pb(message, "result"),
        error_type=optional_field(message, "error_type"),
        error_traceback=optional_field(message, "error_traceback"),
        attempts=message.attempts,
        traceparent=optional_field(message, "traceparent"),
    )


TASK_RESULT = WrittenCodec(_task_result_to_pb, _task_result_from_pb)
"""A task's outcome, as its workflow's event carries it."""


def _event_to_pb(event: WorkflowEvent) -> pb.Event:
    result = event.task_result
    return pb.Event(
        type=event.type.value,
        instance=_instance_to_pb(event.instance),
        enqueued_task_count=event.enqueued_task_count,
        completed_task_count=event.completed_task_count,
        enqueued_at=time_to_pb(event.enqueued_at),
        task_result=None if result is None else _task_result_to_pb(result),
    )


def _event_from_pb(message: pb.Event) -> WorkflowEvent:
    has_result = message.HasField("task_result")
    return WorkflowEvent(
        type=WorkflowEventType(message.type),
        instance=_instance_from_pb(message.instance),
        enqueued_task_count=message.enqueued_task_count,
        completed_task_count=message.completed_task_count,
        enqueued_at=required_time(message, "enqueued_at"),
        task_result=_task_result_from_pb(message.task_result) if has_result else None,
    )


EVENT = WrittenCodec(_event_to_pb, _event_from_pb)
"""A claimed event with its instance."""


def _new_task_to_pb(task: NewTask) -> pb.NewTask:
    return pb.NewTask(
        task_name=task.task_name,
        parameters=value_to_pb(task.parameters),
        start_after=time_to_pb(task.start_after),
        traceparent=task.traceparent,
        retry_policy=task.retry_policy,
        concurrency_key=task.concurrency_key,
        concurrency_limit=task.concurrency_limit,
        rate_limit_starts=task.rate_limit_starts,
        rate_limit_seconds=task.rate_limit_seconds,
        priority=task.priority,
        idempotency_key=task.idempotency_key,
    )


def _new_task_from_pb(message: pb.NewTask) -> NewTask:
    return NewTask(
        task_name=message.task_name,
        parameters=value_from_pb(message, "parameters"),
        start_after=time_from_pb(message, "start_after"),
        traceparent=optional_field(message, "traceparent"),
        retry_policy=optional_field(message, "retry_policy"),
        concurrency_key=optional_field(message, "concurrency_key"),
        concurrency_limit=optional_field(message, "concurrency_limit"),
        rate_limit_starts=optional_field(message, "rate_limit_starts"),
        rate_limit_seconds=optional_field(message, "rate_limit_seconds"),
        priority=message.priority,
        idempotency_key=optional_field(message, "idempotency_key"),
    )


NEW_TASK = WrittenCodec(_new_task_to_pb, _new_task_from_pb)
"""A task a decision enqueues."""


def _task_to_pb(task: TaskData) -> pb.Task:
    meta = task.metadata
    return pb.Task(
        name=task.name,
        parameters=value_to_pb(task.parameters),
        enqueued_at=time_to_pb(meta.enqueued_at),
        task_name=meta.task_name,
        workflow_name=meta.workflow_name,
        instance_name=meta.instance_name,
        attempt=meta.attempt,
        task_id=meta.task_id,
        traceparent=meta.traceparent,
        retry_policy=task.retry_policy,
    )


def _task_from_pb(message: pb.Task) -> TaskData:
    return TaskData(
        name=message.name,
        parameters=value_from_pb(message, "parameters"),
        metadata=TaskMetadata(
            enqueued_at=required_time(message, "enqueued_at"),
            task_name=message.task_name,
            workflow_name=message.workflow_name,
            instance_name=message.instance_name,
            attempt=message.attempt,
            task_id=message.task_id,
            traceparent=optional_field(message, "traceparent"),
        ),
        retry_policy=optional_field(message, "retry_policy"),
    )


TASK = WrittenCodec(_task_to_pb, _task_from_pb)
"""A leased task (its metadata flattened into the message)."""

# ---- carried field by field ---------------------------------------------------------

SCHEDULE = RecordCodec(Schedule, pb.Schedule, parse={"overlap": check_overlap})
"""A schedule."""

LISTING = RecordCodec(ListWorkflowFilter, pb.ListWorkflowInstancesRequest)
"""A listing's filter, as its request."""


def _rules_to_pb(rules: Mapping[str, WorkflowRetention]) -> dict[str, pb.WorkflowRetentionRule]:
    return {
        name: pb.WorkflowRetentionRule(max_runs=rule.max_runs, max_age=rule.max_age)
        for name, rule in rules.items()
    }


def _rules_from_pb(message: pb.TrimHistoryRequest) -> dict[str, WorkflowRetention]:
    return {
        name: WorkflowRetention(
            max_runs=rule.max_runs if rule.HasField("max_runs") else None,
            max_age=rule.max_age if rule.HasField("max_age") else None,
        )
        for name, rule in message.per_workflow.items()
    }


RETENTION = RecordCodec(
    HistoryRetention,
    pb.TrimHistoryRequest,
    custom={"per_workflow": FieldCodec(_rules_to_pb, _rules_from_pb)},
)
"""The history retention a trim request carries."""

# ---- maintenance: the sweep's store operations ----------------------------------------

EXPIRED_LEASE = RecordCodec(ExpiredLease, pb.ExpiredLease)
"""A running task past its lease deadline, for the caller's sweep to decide."""

SETTLEMENT = RecordCodec(LeaseSettlement, pb.LeaseSettlement)
"""A sweep's decision for one expired lease."""

# ---- inspection, metrics, live workers, failures ------------------------------------

INSTANCE_TASK = plain_codec(InstanceTask, pb.InstanceTask)
"""A queued or running task of an instance (dashboard)."""

INSTANCE_EVENT = plain_codec(InstanceEvent, pb.InstanceEvent)
"""One event of an instance's history (dashboard)."""

QUEUE_STATS = plain_codec(TaskQueueStats, pb.TaskQueueStats)
"""One task name's queue figures (dashboard)."""

QUEUE_DEPTH = plain_codec(QueueDepth, pb.QueueDepth)
"""One name's ready work (metrics)."""

NEW_WORKER = RecordCodec(NewWorker, pb.NewWorker)
"""A registering worker, as its request."""

WORKER_INFO = RecordCodec(WorkerInfo, pb.WorkerInfo)
"""A live worker's row."""

FAILURE = RecordCodec(FailureDetails, pb.Fail)
"""A failure's text, exception type and traceback."""

# ---- requests shaped differently from their record ----------------------------------


def update_to_pb(
    workflow_name: str, instance_name: str, update: ScheduleUpdate
) -> pb.UpdateScheduleRequest:
    """A schedule update as its request (``UNSET`` parameters: ``set_parameters`` false)."""
    params_set = update.parameters is not UNSET
    return pb.UpdateScheduleRequest(
        workflow_name=workflow_name,
        instance_name=instance_name,
        enabled=update.enabled,
        set_parameters=params_set,
        parameters=value_to_pb(update.parameters) if params_set else None,  # type: ignore[arg-type]
        recurrence=update.recurrence,
        next_due_at=time_to_pb(update.next_due_at),
        due_rule=update.due_rule,
        overlap=update.overlap,
        catch_up_window=update.catch_up_window,
    )


def update_from_pb(message: pb.UpdateScheduleRequest) -> ScheduleUpdate:
    """The schedule update a request carries."""
    overlap = optional_field(message, "overlap")
    return ScheduleUpdate(
        enabled=optional_field(message, "enabled"),
        parameters=value_from_pb(message, "parameters") if message.set_parameters else UNSET,
        recurrence=optional_field(message, "recurrence"),
        next_due_at=time_from_pb(message, "next_due_at"),
        due_rule=optional_field(message, "due_rule"),
        overlap=None if overlap is None else check_overlap(overlap),
        catch_up_window=optional_field(message, "catch_up_window"),
    )
