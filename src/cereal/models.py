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
    attempts: int = 1


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


@dataclass(frozen=True)
class TaskData:
    """A claimed task as handed from the driver to the task runner.

    ``retry_policy`` is the policy stored with the task
    (:meth:`cereal.RetryPolicy.to_json`); ``None``: a single attempt.
    """

    name: str
    parameters: bytes | None
    metadata: TaskMetadata
    retry_policy: str | None = None

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The task's parameters, decoded."""
        return values.decode(self.parameters, type)


@dataclass(frozen=True)
class NewTask:
    """A task a workflow step enqueues; ``start_after=None`` means the driver's now.

    ``retry_policy`` is the stored form of the task's own
    :class:`cereal.RetryPolicy`; ``None`` leaves it to the executor's (set at
    the first claim).
    """

    task_name: str
    parameters: bytes | None = None
    start_after: datetime | None = None
    retry_policy: str | None = None


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
class SweepReport:
    """What one maintenance sweep did."""

    expired_tasks: int = 0
    released_claims: int = 0
    trimmed_results: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    retried_tasks: int = 0
    """Expired leases queued again under their retry policy (not reported LOST)."""
    given_up: tuple[str, ...] = field(default_factory=tuple)
    """Expired leases that used their last attempt of several (poison tasks): who, which."""
