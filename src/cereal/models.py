"""Records that cross the driver boundary, and the enums and filters they use.

Drivers store and return bytes; the ``get_*`` helpers here decode them for users.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from cereal import errors, values

T = TypeVar("T")


class TaskStatus(enum.StrEnum):
    """How a task ended, as its workflow sees it."""

    SUCCESS = "success"
    FAILED = "failed"
    LOST = "lost"
    UNUSABLE_RESULT = "unusable_result"


class WorkflowInstanceStatus(enum.StrEnum):
    """Where an instance is in its life; ``COMPLETED`` only for finished runs."""

    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"


class WorkflowEventType(enum.StrEnum):
    """The kinds of event in an instance's queue."""

    START = "start"
    TASK_COMPLETE = "task_complete"
    CANCEL = "cancel"


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""Sentinel: "leave this field unchanged" (``None`` is a real value for parameters)."""

Unset = _Unset


@dataclass
class WorkflowInstanceData:
    """One workflow instance as stored: live (starting/running) or finished (completed).

    A live instance has parameters and payload but no result or error; a
    finished one has parameters and either a result or an error text.
    """

    workflow_name: str
    instance_name: str
    status: WorkflowInstanceStatus
    parameters: bytes | None = None
    payload: bytes | None = None
    result: bytes | None = None
    err: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error_type: str | None = None
    """For a failed run, the qualified type name of the exception that failed it.

    A callback that raised: the task's exception type when it re-raised a
    task's failure (``TaskResult.get()``), else its own; ``w.fail(exc)``: the
    type of ``exc``. ``None`` for a text failure, a kill, or runs stored by
    older cereal. Filled in by ``get_workflow_instance`` only (not by lists).
    """
    error_traceback: str | None = None
    """The traceback that goes with :attr:`error_type` (bounded), if there was one."""

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The parameters the instance was enqueued with, decoded."""
        return values.decode(self.parameters, type)

    def get_payload(self, type: type[T] | None = None) -> Any:
        """The payload of the last ``continue_`` decision, decoded (``None`` before any)."""
        return values.decode(self.payload, type)

    def get_result(self, type: type[T] | None = None) -> Any:
        """The result of a completed instance.

        Raises:
            WorkflowNotCompleteError: while the instance runs.
            WorkflowFailedError: if the instance failed (its text is the stored error).
        """
        if self.is_running():
            raise errors.WorkflowNotCompleteError()
        if self.err is not None:
            raise errors.WorkflowFailedError(self.err)
        return values.decode(self.result, type)

    def is_running(self) -> bool:
        """True while the instance is live (``starting`` counts as running)."""
        return self.status != WorkflowInstanceStatus.COMPLETED


@dataclass(frozen=True)
class TaskResultData:
    """How one task ended, as stored for its workflow's ``task_complete`` event."""

    task_name: str
    status: TaskStatus
    parameters: bytes | None = None
    error_text: str = ""
    result: bytes | None = None
    error_type: str | None = None
    """The qualified name of the executor's exception (``FAILED`` results only)."""
    error_traceback: str | None = None
    """The executor's traceback, bounded (see :data:`MAX_TRACEBACK_CHARS`); ``FAILED`` only."""


MAX_TRACEBACK_CHARS = 8192
"""Most characters of a failed task's traceback that are stored (its last ones)."""

MAX_TRACEBACK_FRAMES = 50
"""Most stack frames of a failed task's traceback that are stored (its innermost ones)."""


@dataclass(frozen=True)
class FailureDetails:
    """A failure's text, with the exception's qualified type name and bounded traceback.

    Stored with a ``FAILED`` task result (what its executor raised) and with a
    failed workflow run (what failed it; see ``WorkflowInstanceData.error_type``).
    """

    error: str
    error_type: str | None = None
    error_traceback: str | None = None


@dataclass(frozen=True)
class WorkflowEvent:
    """One dequeued event of an instance, with the instance as it is now.

    ``completed_task_count`` already counts this event's task for a
    ``task_complete`` event; ``enqueued_task_count`` is the stored count.
    """

    type: WorkflowEventType
    instance: WorkflowInstanceData
    enqueued_task_count: int
    completed_task_count: int
    enqueued_at: datetime
    task_result: TaskResultData | None = None


@dataclass(frozen=True)
class TaskMetadata:
    """Facts about a running task that its executor may use."""

    enqueued_at: datetime
    task_name: str = ""
    workflow_name: str = ""
    instance_name: str = ""
    attempt: int = 1
    task_id: str = ""
    traceparent: str | None = None
    """The W3C ``traceparent`` of the callback that enqueued the task, if traced."""


@dataclass(frozen=True)
class TaskData:
    """A claimed task as handed from the driver to the task runner."""

    name: str
    parameters: bytes | None
    metadata: TaskMetadata

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The task's parameters, decoded."""
        return values.decode(self.parameters, type)


@dataclass(frozen=True)
class NewTask:
    """A task a workflow step enqueues; ``start_after=None`` means the driver's now."""

    task_name: str
    parameters: bytes | None = None
    start_after: datetime | None = None
    traceparent: str | None = None
    """The W3C ``traceparent`` of the enqueuing callback's span (tracing only)."""


@dataclass
class Schedule:
    """A recurring workflow: enqueue (workflow_name, instance_name) whenever it is due."""

    id: int
    enabled: bool
    workflow_name: str
    instance_name: str
    parameters: bytes | None
    recurrence: str
    next_due_at: datetime
    last_enqueued_at: datetime | None = None
    last_start: datetime | None = None
    last_end: datetime | None = None

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The parameters each run is enqueued with, decoded."""
        return values.decode(self.parameters, type)


@dataclass(frozen=True)
class ScheduleUpdate:
    """The changes one ``update_workflow_schedule`` applies atomically.

    ``enabled`` and ``recurrence`` are ``None`` when unchanged; ``parameters`` is
    ``UNSET`` when unchanged. When ``next_due_at`` is set it is stored as the
    new due time (the Manager computes it for a recurrence change or a re-enable).
    With ``due_rule`` set, ``next_due_at`` is stored only if, when the update
    lands, the schedule is disabled and its recurrence is ``due_rule`` (the rule
    the due time was computed from): enabling an enabled schedule keeps its due
    time, and a rule changed meanwhile keeps the due time its change stored.
    """

    enabled: bool | None = None
    parameters: bytes | Unset | None = UNSET
    recurrence: str | None = None
    next_due_at: datetime | None = None
    due_rule: str | None = None


@dataclass(frozen=True)
class ListWorkflowFilter:
    """Filters of ``list_workflow_instances``; ``None`` means "any"."""

    workflow_name: str | None = None
    instance_name: str | None = None
    is_running: bool | None = None
    limit: int | None = None
    """At most this many entries, ordered by (workflow name, instance name); ``None``: all."""
    offset: int = 0
    """Skip this many entries of that order first (paging)."""


@dataclass(frozen=True)
class InstanceTask:
    """One queued or running task of a live instance (a read-only view for inspection)."""

    task_id: str
    task_name: str
    state: str
    """``queued`` or ``running``."""
    parameters: bytes | None
    enqueued_at: datetime
    start_after: datetime
    attempt: int

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The task's parameters, decoded."""
        return values.decode(self.parameters, type)


@dataclass(frozen=True)
class InstanceEvent:
    """One pending event of a live instance, oldest first; consumed events are not kept."""

    seq: int
    type: WorkflowEventType
    enqueued_at: datetime
    task_name: str | None = None
    """For a ``task_complete`` event: the task that ended."""
    task_status: TaskStatus | None = None
    """For a ``task_complete`` event: how it ended."""
    error_text: str = ""


@dataclass(frozen=True)
class TaskQueueStats:
    """The queue of one task name: how many wait, how many run, and the oldest waiting."""

    task_name: str
    queued: int
    running: int
    oldest_queued_at: datetime | None


@dataclass(frozen=True)
class HistoryRetention:
    """How much finished-run history a driver keeps.

    When more than ``max_rows`` rows exist the oldest are trimmed down to
    ``max_rows - margin_rows`` (the original's 10 000 / 1 000); rows older than
    ``max_age`` seconds (if set) are removed too.
    """

    max_rows: int = 10_000
    margin_rows: int = 1_000
    max_age: float | None = None


@dataclass(frozen=True)
class QueueDepth:
    """The ready work of one name: how many items wait and since when the oldest does.

    ``kind`` is ``"task"`` (queued tasks whose ``start_after`` has passed) or
    ``"workflow"`` (live instances with pending events that no callback holds).
    """

    kind: str
    name: str
    depth: int
    oldest_at: datetime | None


@dataclass(frozen=True)
class SweepReport:
    """What one maintenance sweep did."""

    expired_tasks: int = 0
    released_claims: int = 0
    trimmed_results: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
