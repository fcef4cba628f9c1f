"""Machinery shared by the chain and parallel patterns.

A composite workflow runs several *sub-workflows* inside one real instance.
Each sub-workflow's state is a :class:`WorkflowState` kept in the parent's
payload (and, at the end, its result) with the original's JSON keys. A
sub-workflow's callbacks get a :class:`SubWorkflowInstance`: a real
:class:`~cereal.instance.LiveWorkflowInstance` over its own slice of the
parameters and its own payload, so its decision is evaluated on its own
(``complete()`` after ``enqueue_task()`` fails that sub-workflow only, as the
engine fails a workflow). Tasks it enqueues carry a routing key merged into
their parameters (``__idx`` for chain, ``__key`` for parallel) so their
completions find their way back; the key is reserved and task executors see it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from cereal import errors, values
from cereal.checks import names
from cereal.engine import callbacks
from cereal.instance import (
    Decision,
    DecisionKind,
    ImmutableWorkflowInstance,
    LiveWorkflowInstance,
    TaskCompleteEvent,
    TaskResult,
    WorkflowInstance,
)
from cereal.models import (
    NewTask,
    TaskResultData,
    TaskStatus,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
)
from cereal.rate_limit import RateLimit
from cereal.retry import RetryPolicy

logger = logging.getLogger(__name__)

T = TypeVar("T")

_UNLIMITED = 2**62
"""Size limit for values re-encoded here: the Manager checked them against its own limit."""


def task_parameters_object(parameters: Any, *, where: str) -> dict[str, Any]:
    """The task parameters as a JSON object, ready to take a routing key.

    Objects are dicts, dataclass instances, pydantic models and ``None`` (an
    empty object).

    Raises:
        TypeError: anything else (lists, strings, numbers...).
    """
    if parameters is None:
        return {}
    if isinstance(parameters, Mapping):
        return dict(parameters)
    if dataclasses.is_dataclass(parameters) and not isinstance(parameters, type):
        return dataclasses.asdict(parameters)
    dump = getattr(parameters, "model_dump", None)
    if callable(dump) and not isinstance(parameters, type):
        dumped = dump(mode="json")
        if isinstance(dumped, dict):
            return dumped
    raise TypeError(
        f"{where}: task parameters of a sub-workflow must be an object (dict, dataclass or "
        f"pydantic model) or None, got {type(parameters).__name__}"
    )


@dataclass
class WorkflowState:
    """One sub-workflow's state, stored in the composite's payload and result."""

    payload: Any = None
    result: Any = None
    err: str | None = None
    enqueued_tasks: int = 0
    completed_tasks: int = 0
    is_finished: bool = False

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON object with the original's keys."""
        return {
            "Payload": self.payload,
            "Result": self.result,
            "Err": self.err or "",
            "EnqueuedTasks": self.enqueued_tasks,
            "CompletedTasks": self.completed_tasks,
            "IsFinished": self.is_finished,
        }

    @classmethod
    def from_json(cls, raw: Any) -> WorkflowState:
        """Read a state written by :meth:`to_json`.

        Raises:
            ValueError: ``raw`` is not such an object.
        """
        if not isinstance(raw, dict):
            raise ValueError(f"sub-workflow state must be an object, got {type(raw).__name__}")
        try:
            return cls(
                payload=raw.get("Payload"),
                result=raw.get("Result"),
                err=raw.get("Err") or None,
                enqueued_tasks=int(raw.get("EnqueuedTasks", 0)),
                completed_tasks=int(raw.get("CompletedTasks", 0)),
                is_finished=bool(raw.get("IsFinished", False)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed sub-workflow state: {exc}") from exc

    def record(self, decision: Decision, parent: WorkflowInstance) -> None:
        """Apply a sub-workflow's ``decision``: forward its tasks to ``parent`` if it continues.

        Continue keeps it running with the new payload; complete and fail
        finish it (their tasks are dropped and not counted).
        """
        if decision.kind is DecisionKind.CONTINUE:
            for task in decision.tasks:
                forward_task(task, parent)
            self.payload = values.decode(decision.payload)
            self.enqueued_tasks += len(decision.tasks)
        elif decision.kind is DecisionKind.COMPLETE:
            self.result = values.decode(decision.result)
            self.is_finished = True
        else:
            self.err = decision.error or "failed"
            self.is_finished = True

    def view(self, parent: ImmutableWorkflowInstance, parameters: Any) -> ImmutableWorkflowInstance:
        """A read-only view of this sub-workflow, shaped like any finished or running instance."""
        data = WorkflowInstanceData(
            workflow_name=parent.workflow_name,
            instance_name=parent.instance_name,
            status=WorkflowInstanceStatus.COMPLETED
            if self.is_finished
            else WorkflowInstanceStatus.RUNNING,
            parameters=values.encode(
                parameters, where="sub-workflow parameters", max_bytes=_UNLIMITED
            ),
            payload=values.encode(self.payload, where="sub-workflow payload", max_bytes=_UNLIMITED),
            result=values.encode(self.result, where="sub-workflow result", max_bytes=_UNLIMITED),
            err=self.err,
        )
        return ImmutableWorkflowInstance(data)


def forward_task(task: NewTask, parent: WorkflowInstance) -> None:
    """Enqueue a sub-workflow's task on ``parent`` with every field it was enqueued with.

    A parent that is not a :class:`LiveWorkflowInstance` (a hand-written
    one) gets it through ``enqueue_task``, without the task's own retry policy.
    """
    if isinstance(parent, LiveWorkflowInstance):
        parent.enqueue_new_task(task)
        return
    starts, seconds = task.rate_limit_starts, task.rate_limit_seconds
    parent.enqueue_task(
        task.task_name,
        values.decode(task.parameters),
        start_after=task.start_after,
        concurrency_key=task.concurrency_key,
        concurrency_limit=task.concurrency_limit,
        rate_limit=None if starts is None or seconds is None else RateLimit(starts, seconds),
        priority=task.priority,
        idempotency_key=task.idempotency_key,
    )


class SubWorkflowInstance(LiveWorkflowInstance):
    """What a sub-workflow's callbacks see: its own parameters, payload and counts.

    It is a real live instance, so its decisions follow the engine's rules;
    :meth:`enqueue_task` merges the routing key into the task's parameters.
    """

    def __init__(
        self,
        parent: WorkflowInstance,
        state: WorkflowState,
        parameters: Any,
        *,
        routing_key: str,
        routing_value: int | str,
    ) -> None:
        super().__init__(
            parent.workflow_name,
            parent.instance_name,
            parameters=values.encode(
                parameters, where="sub-workflow parameters", max_bytes=_UNLIMITED
            ),
            payload=values.encode(
                state.payload, where="sub-workflow payload", max_bytes=_UNLIMITED
            ),
            enqueued_tasks=state.enqueued_tasks,
            completed_tasks=state.completed_tasks,
            max_value_bytes=_UNLIMITED,
            # its keys carry its routing prefix (see enqueue_task), so the parent
            # run's held keys are its own where they match
            held_keys=parent.held_keys if isinstance(parent, LiveWorkflowInstance) else frozenset(),
        )
        self._routing_key = routing_key
        self._routing_value = routing_value

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
        """Buffer a task whose parameters carry this sub-workflow's routing key.

        Raises:
            TypeError: the parameters are not an object (dict, dataclass,
                pydantic model) or ``None``, or are not JSON.
            ValueError: they already hold the reserved routing key, or a bad
                task name or naive ``start_after``.

        An ``idempotency_key`` belongs to this sub-workflow: it is stored
        behind its routing key and value (``{routing_key}={value}/{key}``), so
        the whole must keep within the 255 characters of a name.
        """
        merged = task_parameters_object(parameters, where="enqueue_task")
        if self._routing_key in merged:
            raise ValueError(
                f"enqueue_task: the key {self._routing_key!r} is reserved for routing tasks "
                "to sub-workflows; rename it in the task parameters"
            )
        merged[self._routing_key] = self._routing_value
        if idempotency_key is not None:
            names.check_name(idempotency_key, what="enqueue_task idempotency_key")
            # a key space per sub-workflow: another sub-workflow may use the same key
            idempotency_key = f"{self._routing_key}={self._routing_value}/{idempotency_key}"
        super().enqueue_task(
            task_name,
            merged,
            start_after=start_after,
            retry=retry,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            rate_limit=rate_limit,
            priority=priority,
            idempotency_key=idempotency_key,
        )


def strip_routing(event: TaskCompleteEvent, routing_key: str) -> TaskCompleteEvent:
    """The event as the sub-workflow should see it: task parameters without the routing key."""
    result = event.result
    parameters = result.get_parameters()
    if isinstance(parameters, dict):
        parameters = {key: value for key, value in parameters.items() if key != routing_key}
    failure = result.err()
    text = "" if failure is None or result.status is TaskStatus.LOST else str(failure)
    data = TaskResultData(
        task_name=result.task_name,
        status=result.status,
        parameters=values.encode(parameters or None, where="task parameters", max_bytes=_UNLIMITED),
        error_text=text,
        result=None
        if failure is not None
        else values.encode(result.get(), where="task result", max_bytes=_UNLIMITED),
        error_type=result.error_type,
        error_traceback=result.error_traceback,
        attempts=result.attempts,
    )
    return TaskCompleteEvent(event.task_name, TaskResult(data), event.enqueued_at)


def routing_value(event: TaskCompleteEvent, routing_key: str) -> Any:
    """The routing key's value in the completed task's parameters (``None`` if absent)."""
    try:
        parameters = event.result.get_parameters()
    except ValueError:
        return None
    if not isinstance(parameters, dict):
        return None
    return parameters.get(routing_key)


async def run_sub_callback(
    executor: object,
    callback_name: str,
    instance: SubWorkflowInstance,
    event: object,
) -> Decision:
    """Run one sub-workflow callback with the engine's rules (a raise fails that sub-workflow)."""
    return await callbacks.decide(executor, callback_name, instance, event)


def decode_composite(parent: WorkflowInstance, what: str) -> dict[str, Any]:
    """The composite's payload object ({} before the first continue).

    Raises:
        ValueError: the stored payload is not an object.
    """
    payload = parent.get_payload()
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ValueError(f"{what} payload must be an object, got {type(payload).__name__}")
    return payload


def bug(parent: WorkflowInstance, message: str) -> Decision:
    """Fail the composite for a broken internal invariant (``BUG: <message>``)."""
    logger.error(
        "workflow %s/%s: BUG: %s",
        parent.workflow_name,
        parent.instance_name,
        message,
        extra={"event": "pattern_bug", "workflow_name": parent.workflow_name},
    )
    return parent.fail(f"BUG: {message}")


def composite_state(instance: ImmutableWorkflowInstance) -> dict[str, Any]:
    """The stored composite object of a running (payload) or finished (result) instance.

    A failed composite has neither, so it gives ``{}``.
    """
    if instance.is_running():
        raw = instance.get_payload()
    elif instance.err() is not None:
        raw = None
    else:
        raw = instance.get_result()
    return raw if isinstance(raw, dict) else {}


def not_found(what: str) -> errors.WorkflowInstanceNotFoundError:
    """The error of a sub-workflow lookup that found nothing."""
    return errors.WorkflowInstanceNotFoundError(f"sub-workflow {what} not found")


class CompositeInstance:
    """What the chain and parallel readers share: the composite instance itself."""

    def __init__(self, instance: ImmutableWorkflowInstance) -> None:
        self._instance = instance
        self.workflow_name = instance.workflow_name
        self.instance_name = instance.instance_name

    @property
    def instance(self) -> ImmutableWorkflowInstance:
        """The underlying instance."""
        return self._instance

    def is_running(self) -> bool:
        """True while the composite instance runs."""
        return self._instance.is_running()

    def get_payload(self, type: type[T] | None = None) -> Any:
        """The composite's stored payload (its sub-workflows' states) while running."""
        return self._instance.get_payload(type)

    def get_result(self, type: type[T] | None = None) -> Any:
        """The composite's stored result (its sub-workflows' states) once finished.

        Raises:
            WorkflowNotCompleteError: while running.
            WorkflowFailedError: the composite itself failed (structural error, killed).
        """
        return self._instance.get_result(type)

    def err(self) -> Exception | None:
        """The composite's own failure (a failed sub-workflow is in its view's ``err()``)."""
        return self._instance.err()
