"""Records of :mod:`cereal.models` to and from their ``cereal.v1`` messages.

Both ends use these, so a field added to a model is added here once.
Optional bytes travel as an absent or present ``Value`` (``None`` is not ``b""``);
times travel as ``Timestamp`` and come back as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cereal.models import (
    UNSET,
    HistoryRetention,
    ListWorkflowFilter,
    NewTask,
    Schedule,
    ScheduleUpdate,
    SweepReport,
    TaskData,
    TaskMetadata,
    TaskResultData,
    TaskStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
    check_overlap,
)
from cereal.wire.proto import cereal_v1_pb2 as pb


def value_to_pb(data: bytes | None) -> pb.Value | None:
    """Optional bytes as an optional ``Value``."""
    return None if data is None else pb.Value(data=data)


def value_from_pb(holder: object, field: str) -> bytes | None:
    """The optional bytes in ``holder.field`` (a ``Value`` message field)."""
    if not holder.HasField(field):  # type: ignore[attr-defined]
        return None
    value: pb.Value = getattr(holder, field)
    return bytes(value.data)


def time_to_pb(moment: datetime | None) -> Timestamp | None:
    """An aware datetime as a ``Timestamp`` (``None`` stays absent)."""
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def time_from_pb(holder: object, field: str) -> datetime | None:
    """The aware UTC datetime in ``holder.field``, or ``None`` when absent."""
    if not holder.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp: Timestamp = getattr(holder, field)
    moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    return moment


def optional_str(holder: object, field: str) -> str | None:
    """The ``optional string`` in ``holder.field``, or ``None`` when absent."""
    if not holder.HasField(field):  # type: ignore[attr-defined]
        return None
    text: str = getattr(holder, field)
    return text


def required_time(holder: object, field: str) -> datetime:
    """The aware UTC datetime in ``holder.field``; a missing one is a malformed message."""
    moment = time_from_pb(holder, field)
    if moment is None:
        raise ValueError(f"message field {field!r} is required")
    return moment


def instance_to_pb(instance: WorkflowInstanceData) -> pb.Instance:
    """A live or finished instance as a message."""
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
    )


def instance_from_pb(message: pb.Instance) -> WorkflowInstanceData:
    """The instance a message carries."""
    return WorkflowInstanceData(
        workflow_name=message.workflow_name,
        instance_name=message.instance_name,
        status=WorkflowInstanceStatus(message.status),
        parameters=value_from_pb(message, "parameters"),
        payload=value_from_pb(message, "payload"),
        result=value_from_pb(message, "result"),
        err=message.err if message.HasField("err") else None,
        started_at=time_from_pb(message, "started_at"),
        ended_at=time_from_pb(message, "ended_at"),
        error_type=optional_str(message, "error_type"),
        error_traceback=optional_str(message, "error_traceback"),
    )


def event_to_pb(event: WorkflowEvent) -> pb.Event:
    """A claimed event as a message."""
    result = event.task_result
    return pb.Event(
        type=event.type.value,
        instance=instance_to_pb(event.instance),
        enqueued_task_count=event.enqueued_task_count,
        completed_task_count=event.completed_task_count,
        enqueued_at=time_to_pb(event.enqueued_at),
        task_result=None
        if result is None
        else pb.TaskResult(
            task_name=result.task_name,
            status=result.status.value,
            parameters=value_to_pb(result.parameters),
            error_text=result.error_text,
            result=value_to_pb(result.result),
            error_type=result.error_type,
            error_traceback=result.error_traceback,
            attempts=result.attempts,
        ),
    )


def event_from_pb(message: pb.Event) -> WorkflowEvent:
    """The claimed event a message carries."""
    result = None
    if message.HasField("task_result"):
        carried = message.task_result
        result = TaskResultData(
            task_name=carried.task_name,
            status=TaskStatus(carried.status),
            parameters=value_from_pb(carried, "parameters"),
            error_text=carried.error_text,
            result=value_from_pb(carried, "result"),
            error_type=optional_str(carried, "error_type"),
            error_traceback=optional_str(carried, "error_traceback"),
            attempts=carried.attempts,
        )
    return WorkflowEvent(
        type=WorkflowEventType(message.type),
        instance=instance_from_pb(message.instance),
        enqueued_task_count=message.enqueued_task_count,
        completed_task_count=message.completed_task_count,
        enqueued_at=required_time(message, "enqueued_at"),
        task_result=result,
    )


def new_task_to_pb(task: NewTask) -> pb.NewTask:
    """A task to enqueue as a message."""
    return pb.NewTask(
        task_name=task.task_name,
        parameters=value_to_pb(task.parameters),
        start_after=time_to_pb(task.start_after),
        traceparent=task.traceparent,
        retry_policy=task.retry_policy,
    )


def new_task_from_pb(message: pb.NewTask) -> NewTask:
    """The task to enqueue a message carries."""
    return NewTask(
        task_name=message.task_name,
        parameters=value_from_pb(message, "parameters"),
        start_after=time_from_pb(message, "start_after"),
        traceparent=optional_str(message, "traceparent"),
        retry_policy=optional_str(message, "retry_policy"),
    )


def task_to_pb(task: TaskData) -> pb.Task:
    """A leased task as a message."""
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


def task_from_pb(message: pb.Task) -> TaskData:
    """The leased task a message carries."""
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
            traceparent=optional_str(message, "traceparent"),
        ),
        retry_policy=optional_str(message, "retry_policy"),
    )


def schedule_to_pb(schedule: Schedule) -> pb.Schedule:
    """A schedule as a message."""
    return pb.Schedule(
        id=schedule.id,
        enabled=schedule.enabled,
        workflow_name=schedule.workflow_name,
        instance_name=schedule.instance_name,
        parameters=value_to_pb(schedule.parameters),
        recurrence=schedule.recurrence,
        next_due_at=time_to_pb(schedule.next_due_at),
        last_enqueued_at=time_to_pb(schedule.last_enqueued_at),
        last_start=time_to_pb(schedule.last_start),
        last_end=time_to_pb(schedule.last_end),
        overlap=schedule.overlap,
        catch_up_window=schedule.catch_up_window,
        run_pending=schedule.run_pending,
    )


def schedule_from_pb(message: pb.Schedule) -> Schedule:
    """The schedule a message carries."""
    return Schedule(
        id=message.id,
        enabled=message.enabled,
        workflow_name=message.workflow_name,
        instance_name=message.instance_name,
        parameters=value_from_pb(message, "parameters"),
        recurrence=message.recurrence,
        next_due_at=required_time(message, "next_due_at"),
        last_enqueued_at=time_from_pb(message, "last_enqueued_at"),
        last_start=time_from_pb(message, "last_start"),
        last_end=time_from_pb(message, "last_end"),
        overlap=check_overlap(message.overlap),
        catch_up_window=message.catch_up_window,
        run_pending=message.run_pending,
    )


def update_to_pb(
    workflow_name: str, instance_name: str, update: ScheduleUpdate
) -> pb.UpdateScheduleRequest:
    """A schedule update as its request."""
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
    return ScheduleUpdate(
        enabled=message.enabled if message.HasField("enabled") else None,
        parameters=value_from_pb(message, "parameters") if message.set_parameters else UNSET,
        recurrence=message.recurrence if message.HasField("recurrence") else None,
        next_due_at=time_from_pb(message, "next_due_at"),
        due_rule=message.due_rule if message.HasField("due_rule") else None,
        overlap=check_overlap(message.overlap) if message.HasField("overlap") else None,
        catch_up_window=message.catch_up_window if message.HasField("catch_up_window") else None,
    )


def filter_to_pb(where: ListWorkflowFilter) -> pb.ListWorkflowInstancesRequest:
    """A listing filter as its request."""
    return pb.ListWorkflowInstancesRequest(
        workflow_name=where.workflow_name,
        instance_name=where.instance_name,
        is_running=where.is_running,
        limit=where.limit,
        offset=where.offset,
    )


def filter_from_pb(message: pb.ListWorkflowInstancesRequest) -> ListWorkflowFilter:
    """The listing filter a request carries."""
    return ListWorkflowFilter(
        workflow_name=message.workflow_name if message.HasField("workflow_name") else None,
        instance_name=message.instance_name if message.HasField("instance_name") else None,
        is_running=message.is_running if message.HasField("is_running") else None,
        limit=message.limit if message.HasField("limit") else None,
        offset=message.offset,
    )


def sweep_to_pb(report: SweepReport) -> pb.SweepResponse:
    """A sweep report as its response."""
    return pb.SweepResponse(
        expired_tasks=report.expired_tasks,
        released_claims=report.released_claims,
        trimmed_results=report.trimmed_results,
        notes=list(report.notes),
        retried_tasks=report.retried_tasks,
        retried=[
            pb.RetriedTask(workflow_name=workflow, task_name=task)
            for workflow, task in report.retried
        ],
        given_up=list(report.given_up),
    )


def sweep_from_pb(message: pb.SweepResponse) -> SweepReport:
    """The sweep report a response carries."""
    return SweepReport(
        expired_tasks=message.expired_tasks,
        released_claims=message.released_claims,
        trimmed_results=message.trimmed_results,
        notes=tuple(message.notes),
        retried_tasks=message.retried_tasks,
        retried=tuple((each.workflow_name, each.task_name) for each in message.retried),
        given_up=tuple(message.given_up),
    )


def sweep_request(task_expiry: float, retention: HistoryRetention) -> pb.SweepRequest:
    """A sweep request carrying the caller's retention."""
    return pb.SweepRequest(
        task_expiry=task_expiry,
        max_rows=retention.max_rows,
        margin_rows=retention.margin_rows,
        max_age=retention.max_age,
    )


def retention_from_pb(message: pb.SweepRequest) -> HistoryRetention:
    """The retention a sweep request carries."""
    return HistoryRetention(
        max_rows=message.max_rows,
        margin_rows=message.margin_rows,
        max_age=message.max_age if message.HasField("max_age") else None,
    )
