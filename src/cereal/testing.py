"""Unit-test a workflow executor's callbacks with no driver (the Go ``cerealtest``).

Build an instance and an event, run one callback exactly as the engine would,
and assert on the decision::

    from cereal import testing

    async def test_greeter_enqueues_one_task():
        w = testing.make_instance(parameters={"name": "Ada"})
        decision = await testing.run_callback(Greeter(), "on_start", w, testing.start_event())
        testing.assert_continuing(decision)
        (task,) = testing.assert_tasks_enqueued(decision, "greet", 1)
        assert task.get_parameters() == {"name": "Ada"}

        w2 = testing.next_instance(w, decision, completed_tasks=1)
        done = await testing.run_callback(
            Greeter(), "on_task_complete", w2, task.complete_event(result="hello Ada")
        )
        assert testing.assert_complete(done) == "hello Ada"

Unlike Go's fake, the instance here is the real
:class:`~cereal.instance.LiveWorkflowInstance`, so what fails in production
fails in the test too: ``complete()`` after ``enqueue_task()`` in the same
callback gives a failed decision, and values that are not JSON raise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from cereal import values
from cereal.checks import times
from cereal.engine import callbacks
from cereal.instance import (
    CancelEvent,
    Decision,
    LiveWorkflowInstance,
    StartEvent,
    TaskCompleteEvent,
    TaskResult,
    WorkflowInstance,
    error_text,
)
from cereal.models import TaskResultData, TaskStatus

T = TypeVar("T")

__all__ = [
    "EnqueuedTask",
    "FunctionExecutor",
    "RecordingInstance",
    "assert_complete",
    "assert_continuing",
    "assert_failed",
    "assert_tasks_enqueued",
    "cancel_event",
    "enqueued_tasks",
    "make_executor",
    "make_instance",
    "next_instance",
    "run_callback",
    "start_event",
    "task_complete_event",
]


class RecordingInstance(LiveWorkflowInstance):
    """A real :class:`~cereal.instance.LiveWorkflowInstance` that also keeps its decisions.

    :attr:`decisions` lists every decision made through it, in order;
    :attr:`~cereal.instance.LiveWorkflowInstance.enqueued` the tasks buffered.
    """

    def __init__(self, workflow_name: str, instance_name: str, **kwargs: Any) -> None:
        super().__init__(workflow_name, instance_name, **kwargs)
        self.decisions: list[Decision] = []

    @property
    def decision(self) -> Decision:
        """The last decision made through this instance (``AssertionError`` if none)."""
        if not self.decisions:
            raise AssertionError("no decision was made on this instance")
        return self.decisions[-1]

    def complete(self, result: Any = None) -> Decision:
        """As the live instance (fails if tasks were enqueued), and record the decision."""
        return self._record(super().complete(result))

    def continue_(self, payload: Any = None) -> Decision:
        """As the live instance, and record the decision."""
        return self._record(super().continue_(payload))

    def fail(self, error: BaseException | str | None) -> Decision:
        """As the live instance, and record the decision."""
        return self._record(super().fail(error))

    def _record(self, decision: Decision) -> Decision:
        self.decisions.append(decision)
        return decision


Callback = Callable[[WorkflowInstance, Any], Any]


class FunctionExecutor:
    """A workflow executor made of functions (the Go ``cerealtest.NewWorkflowExecutor``).

    A callback left out raises ``AssertionError`` when called, which the
    engine (and :func:`run_callback`) turns into a failed decision.
    """

    def __init__(
        self,
        on_start: Callback | None = None,
        on_task_complete: Callback | None = None,
        on_cancel: Callback | None = None,
    ) -> None:
        """Use the given functions (plain or async) as the three callbacks."""
        self._callbacks = dict(
            zip(callbacks.CALLBACK_EVENTS, (on_start, on_task_complete, on_cancel), strict=True)
        )

    def _call(self, name: str, w: WorkflowInstance, ev: object) -> Any:
        callback = self._callbacks[name]
        if callback is None:
            raise AssertionError(f"unexpected {name} call")
        return callback(w, ev)

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Any:
        """Call the ``on_start`` function."""
        return self._call("on_start", w, ev)

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Any:
        """Call the ``on_task_complete`` function."""
        return self._call("on_task_complete", w, ev)

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Any:
        """Call the ``on_cancel`` function."""
        return self._call("on_cancel", w, ev)


def make_executor(
    on_start: Callback | None = None,
    on_task_complete: Callback | None = None,
    on_cancel: Callback | None = None,
) -> FunctionExecutor:
    """A workflow executor from functions; see :class:`FunctionExecutor`.

    Example::

        done_at_once = make_executor(on_start=lambda w, ev: w.complete("ok"))
    """
    return FunctionExecutor(on_start, on_task_complete, on_cancel)


def make_instance(
    workflow_name: str = "test",
    instance_name: str = "test",
    *,
    parameters: Any = None,
    payload: Any = None,
    enqueued_tasks: int = 0,
    completed_tasks: int = 0,
) -> RecordingInstance:
    """An instance as a callback would receive it.

    ``parameters`` and ``payload`` are any JSON values; ``enqueued_tasks`` counts
    the tasks earlier callbacks enqueued, ``completed_tasks`` those completed so
    far (the current event's included).

    Example::

        w = make_instance(parameters={"n": 3}, payload={"done": 1}, enqueued_tasks=3)

    Raises:
        TypeError: ``parameters`` or ``payload`` is not JSON.
    """
    return RecordingInstance(
        workflow_name,
        instance_name,
        parameters=values.encode(parameters, where="make_instance(parameters)"),
        payload=values.encode(payload, where="make_instance(payload)"),
        enqueued_tasks=enqueued_tasks,
        completed_tasks=completed_tasks,
    )


def next_instance(
    previous: WorkflowInstance, decision: Decision, *, completed_tasks: int = 0
) -> RecordingInstance:
    """The instance the engine would hand to the next callback after ``decision``.

    Keeps the names and parameters, takes the payload of the continuing
    ``decision``, adds its tasks to the enqueued count and ``completed_tasks``
    to the completed count (``1`` when the next event is a task completion),
    and holds the task idempotency keys the run holds after it (an enqueue
    with one is dropped, as the engine drops it).

    Example::

        w2 = next_instance(w, decision, completed_tasks=1)

    Raises:
        AssertionError: ``decision`` is not continuing (the instance ended).
    """
    assert_continuing(decision)
    enqueued_before = previous.total_enqueued_tasks()
    if isinstance(previous, LiveWorkflowInstance):
        enqueued_before -= len(previous.enqueued)
    # the run holds the keys it held, and those of the tasks the decision stores
    held = set(previous.held_keys) if isinstance(previous, LiveWorkflowInstance) else set()
    held.update(task.idempotency_key for task in decision.tasks if task.idempotency_key)
    return RecordingInstance(
        previous.workflow_name,
        previous.instance_name,
        parameters=values.encode(previous.get_parameters(), where="next_instance"),
        payload=decision.payload,
        enqueued_tasks=enqueued_before + len(decision.tasks),
        completed_tasks=previous.total_completed_tasks() + completed_tasks,
        held_keys=frozenset(held),
    )


def start_event(enqueued_at: datetime | None = None) -> StartEvent:
    """A :class:`~cereal.instance.StartEvent` (enqueued now unless given)."""
    return StartEvent(enqueued_at or times.utcnow())


def cancel_event(enqueued_at: datetime | None = None) -> CancelEvent:
    """A :class:`~cereal.instance.CancelEvent` (enqueued now unless given)."""
    return CancelEvent(enqueued_at or times.utcnow())


def task_complete_event(
    task_name: str,
    *,
    result: Any = None,
    error: BaseException | str | None = None,
    status: TaskStatus | None = None,
    parameters: Any = None,
    enqueued_at: datetime | None = None,
    attempts: int = 1,
) -> TaskCompleteEvent:
    """A :class:`~cereal.instance.TaskCompleteEvent` for a task that ended.

    ``result`` is what the executor returned (status ``SUCCESS``); ``error``
    what it raised (status ``FAILED``, stored as ``str(error)`` like the engine
    does); ``status`` forces one, e.g. ``LOST``; ``parameters`` are the task's;
    ``attempts`` is what :attr:`~cereal.TaskResult.attempts` says.

    Example::

        ev = task_complete_event("fetch", result={"bytes": 10}, parameters={"url": "x"})
        failed = task_complete_event("fetch", error=OSError("unreachable"))
        lost = task_complete_event("fetch", status=TaskStatus.LOST)

    Raises:
        TypeError: ``result`` or ``parameters`` is not JSON.
        ValueError: both ``result`` and ``error`` are given.
    """
    if result is not None and error is not None:
        raise ValueError("task_complete_event: give result or error, not both")
    if status is None:
        status = TaskStatus.FAILED if error is not None else TaskStatus.SUCCESS
    text = "" if error is None else str(error)
    data = TaskResultData(
        task_name=task_name,
        status=TaskStatus(status),
        parameters=values.encode(parameters, where="task_complete_event(parameters)"),
        error_text=text,
        result=values.encode(result, where="task_complete_event(result)"),
        attempts=attempts,
    )
    return TaskCompleteEvent(task_name, TaskResult(data), enqueued_at or times.utcnow())


async def run_callback(
    executor: object, callback_name: str, instance: WorkflowInstance, event: object
) -> Decision:
    """Call ``executor.<callback_name>(instance, event)`` as the engine does.

    Plain callbacks run in a worker thread and async ones are awaited. A
    callback that raises, or returns no Decision, gives the failed decision
    the engine would apply (``"<ExceptionType>: <message>"``) instead of raising.

    Example::

        decision = await run_callback(MyWorkflow(), "on_cancel", make_instance(), cancel_event())
        assert_failed(decision, "cancelled")

    Raises:
        ValueError: ``callback_name`` is not ``on_start``, ``on_task_complete``
            or ``on_cancel``.
        TypeError: ``event`` does not fit the callback, or the executor lacks it.
    """
    return await callbacks.decide(executor, callback_name, instance, event)


def _describe(decision: Decision) -> str:
    if decision.is_failed:
        return f"failed with {decision.error!r}"
    if decision.is_complete:
        return f"complete with result {decision.get_result()!r}"
    return f"continuing with payload {decision.get_payload()!r}"


def assert_complete(decision: Decision, type: type[T] | None = None) -> Any:
    """Assert the decision completes its instance; returns the result, decoded.

    Example: ``assert assert_complete(decision) == {"total": 3}``.

    Raises:
        AssertionError: the decision continues or fails.
    """
    if not decision.is_complete:
        raise AssertionError(f"expected a complete decision, got one {_describe(decision)}")
    return decision.get_result(type)


def assert_continuing(decision: Decision, type: type[T] | None = None) -> Any:
    """Assert the decision keeps its instance running; returns the payload, decoded.

    Example: ``assert assert_continuing(decision) == {"step": 2}``.

    Raises:
        AssertionError: the decision completes or fails.
    """
    if not decision.is_continuing:
        raise AssertionError(f"expected a continuing decision, got one {_describe(decision)}")
    return decision.get_payload(type)


def assert_failed(decision: Decision, error: BaseException | str | None = None) -> str:
    """Assert the decision fails its instance, with ``error``'s text if given; returns the text.

    Example: ``assert_failed(decision, "ValueError: bad input")``.

    Raises:
        AssertionError: the decision continues or completes, or its text differs.
    """
    if not decision.is_failed:
        raise AssertionError(f"expected a failed decision, got one {_describe(decision)}")
    text = decision.error or ""
    if error is not None:
        expected = error_text(error)
        if text != expected:
            raise AssertionError(f"expected failure {expected!r}, got {text!r}")
    return text


@dataclass(frozen=True)
class EnqueuedTask:
    """A task a decision enqueues, as a test sees it."""

    task_name: str
    """The task's name."""
    parameters: bytes | None
    """The encoded parameters (use :meth:`get_parameters`)."""
    start_after: datetime | None
    """When it may start (``None``: at once)."""
    retry_policy: str | None = None
    """The task's own retry policy as stored (compare with ``RetryPolicy(...).to_json()``);
    ``None``: the executor's applies."""

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The task's parameters, decoded."""
        return values.decode(self.parameters, type)

    def complete_event(
        self,
        *,
        result: Any = None,
        error: BaseException | str | None = None,
        status: TaskStatus | None = None,
    ) -> TaskCompleteEvent:
        """The event the workflow gets when this task ends, with this task's parameters."""
        return task_complete_event(
            self.task_name,
            result=result,
            error=error,
            status=status,
            parameters=self.get_parameters(),
        )


def enqueued_tasks(decision: Decision) -> list[EnqueuedTask]:
    """The tasks the decision enqueues, in order (none unless it continues)."""
    return [
        EnqueuedTask(t.task_name, t.parameters, t.start_after, t.retry_policy)
        for t in decision.tasks
    ]


def assert_tasks_enqueued(decision: Decision, task_name: str, count: int) -> Sequence[EnqueuedTask]:
    """Assert the continuing decision enqueues ``count`` tasks named ``task_name``; returns them.

    Example: ``(task,) = assert_tasks_enqueued(decision, "fetch", 1)``.

    Raises:
        AssertionError: the decision does not continue, or the count differs.
    """
    assert_continuing(decision)
    tasks = enqueued_tasks(decision)
    matching = [task for task in tasks if task.task_name == task_name]
    if len(matching) != count:
        names = [task.task_name for task in tasks]
        raise AssertionError(
            f"expected {count} task(s) named {task_name!r} enqueued, got {len(matching)} "
            f"(all enqueued: {names})"
        )
    return matching
