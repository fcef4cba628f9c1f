"""Read-only views and worker rows to and from their ``cereal.v1`` messages.

The inspection records of the dashboard (tasks and events of an instance,
task queues), the metrics' queue depths, the live-worker rows and a failure's
details; the core records are in :mod:`.convert`.
"""

from __future__ import annotations

from cereal.models import (
    FailureDetails,
    InstanceEvent,
    InstanceTask,
    NewWorker,
    QueueDepth,
    TaskQueueStats,
    TaskStatus,
    WorkerInfo,
    WorkflowEventType,
)
from cereal.wire.convert import (
    optional_str,
    required_time,
    time_from_pb,
    time_to_pb,
    value_from_pb,
    value_to_pb,
)
from cereal.wire.proto import cereal_v1_pb2 as pb


def instance_task_to_pb(task: InstanceTask) -> pb.InstanceTask:
    """A queued or running task of an instance as a message."""
    return pb.InstanceTask(
        task_id=task.task_id,
        task_name=task.task_name,
        state=task.state,
        parameters=value_to_pb(task.parameters),
        enqueued_at=time_to_pb(task.enqueued_at),
        start_after=time_to_pb(task.start_after),
        attempt=task.attempt,
    )


def instance_task_from_pb(message: pb.InstanceTask) -> InstanceTask:
    """The instance's task a message carries."""
    return InstanceTask(
        task_id=message.task_id,
        task_name=message.task_name,
        state=message.state,
        parameters=value_from_pb(message, "parameters"),
        enqueued_at=required_time(message, "enqueued_at"),
        start_after=required_time(message, "start_after"),
        attempt=message.attempt,
    )


def instance_event_to_pb(event: InstanceEvent) -> pb.InstanceEvent:
    """One event of an instance's history as a message."""
    return pb.InstanceEvent(
        seq=event.seq,
        type=event.type.value,
        enqueued_at=time_to_pb(event.enqueued_at),
        task_name=event.task_name,
        task_status=None if event.task_status is None else event.task_status.value,
        error_text=event.error_text,
        pending=event.pending,
    )


def instance_event_from_pb(message: pb.InstanceEvent) -> InstanceEvent:
    """The history event a message carries."""
    status = optional_str(message, "task_status")
    return InstanceEvent(
        seq=message.seq,
        type=WorkflowEventType(message.type),
        enqueued_at=required_time(message, "enqueued_at"),
        task_name=optional_str(message, "task_name"),
        task_status=None if status is None else TaskStatus(status),
        error_text=message.error_text,
        pending=message.pending,
    )


def queue_stats_to_pb(stats: TaskQueueStats) -> pb.TaskQueueStats:
    """One task name's queue figures as a message."""
    return pb.TaskQueueStats(
        task_name=stats.task_name,
        queued=stats.queued,
        running=stats.running,
        oldest_queued_at=time_to_pb(stats.oldest_queued_at),
    )


def queue_stats_from_pb(message: pb.TaskQueueStats) -> TaskQueueStats:
    """The queue figures a message carries."""
    return TaskQueueStats(
        task_name=message.task_name,
        queued=message.queued,
        running=message.running,
        oldest_queued_at=time_from_pb(message, "oldest_queued_at"),
    )


def queue_depth_to_pb(depth: QueueDepth) -> pb.QueueDepth:
    """One name's ready work as a message."""
    return pb.QueueDepth(
        kind=depth.kind,
        name=depth.name,
        depth=depth.depth,
        oldest_at=time_to_pb(depth.oldest_at),
    )


def queue_depth_from_pb(message: pb.QueueDepth) -> QueueDepth:
    """The ready work a message carries."""
    return QueueDepth(
        kind=message.kind,
        name=message.name,
        depth=message.depth,
        oldest_at=time_from_pb(message, "oldest_at"),
    )


def new_worker_to_pb(worker: NewWorker) -> pb.NewWorker:
    """A registering worker as its request."""
    return pb.NewWorker(
        id=worker.id,
        host=worker.host,
        pid=worker.pid,
        workflow_names=list(worker.workflow_names),
        task_names=list(worker.task_names),
        version=worker.version,
        expiry=worker.expiry,
    )


def new_worker_from_pb(message: pb.NewWorker) -> NewWorker:
    """The registering worker a request carries."""
    return NewWorker(
        id=message.id,
        host=message.host,
        pid=message.pid,
        workflow_names=tuple(message.workflow_names),
        task_names=tuple(message.task_names),
        version=message.version,
        expiry=message.expiry,
    )


def worker_info_to_pb(worker: WorkerInfo) -> pb.WorkerInfo:
    """A live worker's row as a message."""
    return pb.WorkerInfo(
        id=worker.id,
        host=worker.host,
        pid=worker.pid,
        started_at=time_to_pb(worker.started_at),
        last_seen_at=time_to_pb(worker.last_seen_at),
        workflow_names=list(worker.workflow_names),
        task_names=list(worker.task_names),
        version=worker.version,
    )


def worker_info_from_pb(message: pb.WorkerInfo) -> WorkerInfo:
    """The live worker's row a message carries."""
    return WorkerInfo(
        id=message.id,
        host=message.host,
        pid=message.pid,
        started_at=required_time(message, "started_at"),
        last_seen_at=required_time(message, "last_seen_at"),
        workflow_names=tuple(message.workflow_names),
        task_names=tuple(message.task_names),
        version=message.version,
    )


def failure_to_pb(failure: FailureDetails) -> pb.Fail:
    """A failure's text, type and traceback as a message."""
    return pb.Fail(
        error=failure.error,
        error_type=failure.error_type,
        error_traceback=failure.error_traceback,
    )


def failure_from_pb(message: pb.Fail) -> FailureDetails:
    """The failure a message carries."""
    return FailureDetails(
        error=message.error,
        error_type=optional_str(message, "error_type"),
        error_traceback=optional_str(message, "error_traceback"),
    )
