"""What workflow callbacks see and return: the instance view, events, task results, decisions.

Everything here is pure (no I/O): the workflow runner builds these objects
from a dequeued event and applies the returned :class:`Decision` through the
driver. ``cereal.testing`` builds the same objects with no driver at all.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from cereal import errors, values
from cereal.checks import names as name_checks
from cereal.checks import times, validation
from cereal.engine import failures
from cereal.models import (
    FailureDetails,
    NewTask,
    TaskResultData,
    TaskStatus,
    WorkflowInstanceData,
)
from cereal.priority import check_priority
from cereal.rate_limit import RateLimit
from cereal.retry import RetryPolicy, check_policy

logger = logging.getLogger(__name__)

T = TypeVar("T")

ENQUEUE_AND_COMPLETE_ERROR = "enqueue_task and complete called in same workflow step"
"""The failure text when a callback both enqueues tasks and completes (as the original)."""

GENERIC_FAILURE = "workflow failed"
"""The failure text of ``fail(None)``."""


class DecisionKind(enum.Enum):
    """What a decision does to its instance."""

    CONTINUE = "continue"
    COMPLETE = "complete"
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    """The outcome of one callback; made by :class:`WorkflowInstance` methods, not by hand."""

    kind: DecisionKind
    payload: bytes | None = None
    result: bytes | None = None
    error: str | None = None
    tasks: tuple[NewTask, ...] = field(default_factory=tuple)
    error_type: str | None = None
    """A failing decision's exception type (qualified name), when an exception failed it."""
    error_traceback: str | None = None
    """That exception's traceback (bounded), when it had one."""

    @property
    def is_complete(self) -> bool:
        """True when the instance completes with :attr:`result`."""
        return self.kind is DecisionKind.COMPLETE

    @property
    def is_continuing(self) -> bool:
        """True when the instance keeps running with :attr:`payload` and :attr:`tasks`."""
        return self.kind is DecisionKind.CONTINUE

    @property
    def is_failed(self) -> bool:
        """True when the instance fails with :attr:`error`."""
        return self.kind is DecisionKind.FAIL

    def get_payload(self, type: type[T] | None = None) -> Any:
        """The payload of a continuing decision, decoded."""
        return values.decode(self.payload, type)

    def get_result(self, type: type[T] | None = None) -> Any:
        """The result of a completing decision, decoded."""
        return values.decode(self.result, type)


def error_text(error: BaseException | str | None) -> str:
    """The stored text of a failure: the message, else the exception's type name."""
    if error is None:
        return GENERIC_FAILURE
    if isinstance(error, BaseException):
        return str(error) or type(error).__name__
    if not isinstance(error, str):
        raise TypeError(f"fail: error must be an exception or a str, got {type(error).__name__}")
    return error or GENERIC_FAILURE


def failure_details(exc: BaseException) -> FailureDetails:
    """The type and traceback stored with a workflow that ``exc`` failed.

    A task's failure (``TaskFailedError`` from :meth:`TaskResult.err`) brings
    the task's own exception type and traceback, the root cause.
    """
    if isinstance(exc, errors.TaskFailedError) and exc.error_type is not None:
        return FailureDetails(str(exc), exc.error_type, exc.error_traceback)
    traceback = None if exc.__traceback__ is None else failures.bounded_traceback(exc)
    return FailureDetails(str(exc), failures.qualified_name(type(exc)), traceback)


@dataclass(frozen=True)
class StartEvent:
    """The instance was enqueued."""

    enqueued_at: datetime


@dataclass(frozen=True)
class CancelEvent:
    """Someone called ``cancel_workflow`` on the instance."""

    enqueued_at: datetime


class TaskResult:
    """How one of the instance's tasks ended, as seen in ``on_task_complete``."""

    def __init__(self, data: TaskResultData) -> None:
        self._data = data

    @property
    def task_name(self) -> str:
        """The task's name."""
        return self._data.task_name

    @property
    def status(self) -> TaskStatus:
        """``SUCCESS``, ``FAILED``, ``LOST`` or ``UNUSABLE_RESULT``."""
        return self._data.status

    @property
    def attempts(self) -> int:
        """How many attempts the task took (1 unless its retry policy tried it again)."""
        return self._data.attempts

    @property
    def error_type(self) -> str | None:
        """The qualified name of the exception the executor raised (``FAILED`` only).

        ``None`` for other statuses, and for a failure that was no exception of
        the executor (a timeout, an unencodable result) or was stored by an
        older cereal.
        """
        if self._data.status is not TaskStatus.FAILED:
            return None
        return self._data.error_type

    @property
    def error_traceback(self) -> str | None:
        """The executor's traceback, bounded (``FAILED`` only; as :attr:`error_type`)."""
        if self._data.status is not TaskStatus.FAILED:
            return None
        return self._data.error_traceback

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The parameters the task was enqueued with, decoded."""
        return values.decode(self._data.parameters, type)

    def get(self, type: type[T] | None = None) -> Any:
        """The executor's return value, decoded; raises :meth:`err` unless it succeeded."""
        failure = self.err()
        if failure is not None:
            raise failure
        return values.decode(self._data.result, type)

    def err(self) -> Exception | None:
        """``None`` on success; else the failure (``TaskLostError`` for ``LOST``)."""
        if self._data.status is TaskStatus.SUCCESS:
            return None
        if self._data.status is TaskStatus.LOST:
            # a sweep that refused the task's stored retry policy says so here
            return errors.TaskLostError(self._data.error_text or None)
        if self._data.status is TaskStatus.UNUSABLE_RESULT:
            return errors.UnusableTaskResultError(self._data.error_text or None)
        failure = errors.TaskFailedError(self._data.error_text)
        failure.error_type = self._data.error_type
        failure.error_traceback = self._data.error_traceback
        return failure

    def __repr__(self) -> str:
        return f"TaskResult(task_name={self.task_name!r}, status={self.status.value!r})"


@dataclass(frozen=True)
class TaskCompleteEvent:
    """One of the instance's tasks ended."""

    task_name: str
    result: TaskResult
    enqueued_at: datetime


@runtime_checkable
class WorkflowInstance(Protocol):
    """The instance as a callback sees it (the protocol users program against)."""

    workflow_name: str
    instance_name: str

    def get_payload(self, type: type[T] | None = None) -> Any:
        """The payload of the last ``continue_``."""

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The parameters the instance was enqueued with."""

    def enqueue_task(
        self,
        task_name: str,
        parameters: Any = None,
        *,
        start_after: datetime | None = None,
        retry: RetryPolicy | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
    ) -> None:
        """Buffer a task; it is stored only if the callback returns ``continue_``."""

    def complete(self, result: Any = None) -> Decision:
        """Finish the instance with ``result``."""

    def continue_(self, payload: Any = None) -> Decision:
        """Keep running with ``payload``; the buffered tasks are enqueued."""

    def fail(self, error: BaseException | str | None) -> Decision:
        """Finish the instance with an error."""

    def total_enqueued_tasks(self) -> int:
        """Tasks enqueued so far, this callback's included."""

    def total_completed_tasks(self) -> int:
        """Tasks completed so far, this event's included."""


class LiveWorkflowInstance:
    """The concrete :class:`WorkflowInstance` given to callbacks: buffers tasks, decides."""

    def __init__(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        parameters: bytes | None = None,
        payload: bytes | None = None,
        enqueued_tasks: int = 0,
        completed_tasks: int = 0,
        max_value_bytes: int = values.DEFAULT_MAX_VALUE_BYTES,
        held_keys: AbstractSet[str] = frozenset(),
    ) -> None:
        self.workflow_name = workflow_name
        self.instance_name = instance_name
        self._parameters = parameters
        self._payload = payload
        self._enqueued_before = enqueued_tasks
        self._completed = completed_tasks
        self._max_value_bytes = max_value_bytes
        self._tasks: list[NewTask] = []
        # task idempotency keys the run holds already (enqueues with them are dropped)
        self._held = held_keys
        # the idempotency keys of the buffered tasks
        self._keys: set[str] = set()

    @property
    def enqueued(self) -> Sequence[NewTask]:
        """The tasks buffered by this callback so far."""
        return tuple(self._tasks)

    @property
    def held_keys(self) -> AbstractSet[str]:
        """The task idempotency keys the run held as this callback began (enqueues drop them)."""
        return self._held

    def enqueue_new_task(self, task: NewTask) -> None:
        """Buffer a task already built and checked (a sub-workflow's, say) with all its fields.

        As :meth:`enqueue_task`: dropped when its idempotency key is held by
        the run or was used by this callback.
        """
        key = task.idempotency_key
        if key is not None:
            if key in self._keys or key in self._held:
                return
            self._keys.add(key)
        self._tasks.append(task)

    def get_payload(self, type: type[T] | None = None) -> Any:
        """The payload of the last ``continue_`` (``None`` in ``on_start``)."""
        return values.decode(self._payload, type)

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The parameters the instance was enqueued with."""
        return values.decode(self._parameters, type)

    def enqueue_task(
        self,
        task_name: str,
        parameters: Any = None,
        *,
        start_after: datetime | None = None,
        retry: RetryPolicy | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
    ) -> None:
        """Buffer a task; it is stored only if the callback returns ``continue_``.

        ``retry`` overrides the task executor's :class:`~cereal.RetryPolicy`
        for this task; it is stored with the task.

        ``concurrency_key`` with ``concurrency_limit``: of the tasks carrying
        this key (of any task name, workflow or run), at most the limit run at
        once, across every process and host sharing the store. The store's
        claim enforces it: a task over the limit stays queued (it is not
        failed) until one of its key ends, is retried, handed back or lost.
        A task is claimed only when fewer than its own limit of its key run,
        so tasks sharing a key should share the limit.

        ``concurrency_key`` with ``rate_limit`` (a :class:`~cereal.RateLimit`,
        alone or beside ``concurrency_limit``): the task starts only while
        fewer than ``rate_limit.starts`` tasks of its key started in the last
        ``rate_limit.per`` (a sliding window kept in the store, across every
        process); over the limit it stays queued until a start leaves the
        window, and the first claim after that takes it.

        ``priority`` (0, the default, to 100): higher goes first, and each
        level is worth a minute of waiting, so a task is passed over only by
        higher ones that became due less than the difference in minutes after
        it (aging: no task starves under a constant higher-priority load).

        ``idempotency_key`` (the rules of a name): the run gets at most one
        task with this key for as long as it lives. A later enqueue with a key
        the run already has is dropped and not counted by
        :meth:`total_enqueued_tasks`, whether the key came from this callback
        or an earlier step, even once that task has ended: the run sees one
        task and one completion. (The engine asks the store which keys the run
        holds after the callback returns, and calls it again, with those keys
        known, when one was held: callbacks must be deterministic.) Keys are
        per run: another instance, or a later run of these names, may use the
        same key.

        Raises:
            ValueError: bad task name, oversize parameters, naive ``start_after``,
                a concurrency key without a limit or rate limit (or either
                without a key), a key that breaks the name rules, a limit out
                of 1-10 000, a priority out of 0-100, an idempotency key
                that breaks the name rules.
            TypeError: parameters that are not JSON, ``retry`` not a RetryPolicy,
                ``rate_limit`` not a RateLimit, a limit or priority that is not
                an int, an idempotency key that is not a str.
        """
        name_checks.check_name(task_name, what="task name")
        if idempotency_key is not None:
            name_checks.check_name(idempotency_key, what="enqueue_task idempotency_key")
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError(
                f"enqueue_task rate_limit must be a RateLimit, got {type(rate_limit).__name__}"
            )
        rate_starts = None if rate_limit is None else rate_limit.starts
        rate_seconds = None if rate_limit is None else rate_limit.seconds
        validation.check_concurrency(
            concurrency_key,
            concurrency_limit,
            where="enqueue_task",
            rate_starts=rate_starts,
            rate_seconds=rate_seconds,
        )
        check_priority(priority, where="enqueue_task")
        policy = check_policy(retry)
        encoded = values.encode(parameters, where="enqueue_task", max_bytes=self._max_value_bytes)
        when = None if start_after is None else times.to_utc(start_after, name="start_after")
        stored = None if policy is None else policy.to_json()
        self.enqueue_new_task(
            NewTask(
                task_name,
                encoded,
                when,
                retry_policy=stored,
                concurrency_key=concurrency_key,
                concurrency_limit=concurrency_limit,
                rate_limit_starts=rate_starts,
                rate_limit_seconds=rate_seconds,
                priority=priority,
                idempotency_key=idempotency_key,
            )
        )

    def complete(self, result: Any = None) -> Decision:
        """Finish the instance with ``result``; fails instead if tasks were enqueued in this step.

        Raises:
            TypeError / ValueError: the result is not JSON or is oversize.
        """
        if self._tasks:
            logger.error(
                "%s: %s/%s", ENQUEUE_AND_COMPLETE_ERROR, self.workflow_name, self.instance_name
            )
            return Decision(DecisionKind.FAIL, error=ENQUEUE_AND_COMPLETE_ERROR)
        encoded = values.encode(result, where="complete", max_bytes=self._max_value_bytes)
        return Decision(DecisionKind.COMPLETE, result=encoded)

    def continue_(self, payload: Any = None) -> Decision:
        """Keep running with ``payload``; the tasks buffered so far are enqueued with it.

        Raises:
            TypeError / ValueError: the payload is not JSON or is oversize.
        """
        encoded = values.encode(payload, where="continue_", max_bytes=self._max_value_bytes)
        return Decision(DecisionKind.CONTINUE, payload=encoded, tasks=tuple(self._tasks))

    def fail(self, error: BaseException | str | None) -> Decision:
        """Finish the instance with an error (``None`` gives a generic text); tasks are dropped."""
        if isinstance(error, BaseException):
            details = failure_details(error)
            return Decision(
                DecisionKind.FAIL,
                error=error_text(error),
                error_type=details.error_type,
                error_traceback=details.error_traceback,
            )
        return Decision(DecisionKind.FAIL, error=error_text(error))

    def total_enqueued_tasks(self) -> int:
        """Stored enqueued count plus the tasks buffered by this callback."""
        return self._enqueued_before + len(self._tasks)

    def total_completed_tasks(self) -> int:
        """Completed count, this event's task included."""
        return self._completed


class ImmutableWorkflowInstance:
    """A read-only snapshot of an instance, returned by ``get_workflow_instance``."""

    def __init__(self, data: WorkflowInstanceData) -> None:
        self._data = data
        self.workflow_name = data.workflow_name
        self.instance_name = data.instance_name

    @property
    def data(self) -> WorkflowInstanceData:
        """The stored record behind this snapshot."""
        return self._data

    def get_payload(self, type: type[T] | None = None) -> Any:
        """The payload while running (``None`` once finished)."""
        return self._data.get_payload(type)

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The parameters the instance was enqueued with."""
        return self._data.get_parameters(type)

    def is_running(self) -> bool:
        """True while the instance is live."""
        return self._data.is_running()

    def get_result(self, type: type[T] | None = None) -> Any:
        """The result.

        Raises:
            WorkflowNotCompleteError: while running.
            WorkflowFailedError: the instance failed or was killed.
        """
        return self._data.get_result(type)

    def err(self) -> Exception | None:
        """The failure of a failed instance, else ``None``."""
        if self._data.err is None:
            return None
        return errors.WorkflowFailedError(self._data.err)

    def __repr__(self) -> str:
        return (
            f"ImmutableWorkflowInstance({self.workflow_name!r}, {self.instance_name!r}, "
            f"status={self._data.status.value!r})"
        )
