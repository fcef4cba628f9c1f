"""User executors: the protocols they follow and how the engine calls them.

Executors may be plain or ``async def``. Async ones run on the event loop;
plain ones run in a thread so they never block it. A plain task executor
cannot be interrupted: it sees :meth:`Task.is_cancelled` turn true instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from cereal import values
from cereal.instance import CancelEvent, Decision, StartEvent, TaskCompleteEvent, WorkflowInstance
from cereal.models import TaskData, TaskMetadata
from cereal.task_threads import TASK_THREADS

T = TypeVar("T")


@runtime_checkable
class WorkflowExecutor(Protocol):
    """Reacts to an instance's events with decisions; methods may be plain or async."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision | Awaitable[Decision]:
        """The instance was enqueued."""

    def on_task_complete(
        self, w: WorkflowInstance, ev: TaskCompleteEvent
    ) -> Decision | Awaitable[Decision]:
        """One of its tasks ended (success, failure or lost)."""

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision | Awaitable[Decision]:
        """Someone asked to cancel it."""


@runtime_checkable
class TaskExecutor(Protocol):
    """Runs one task; raise to fail it. Should be idempotent: delivery is at-least-once."""

    def run(self, task: Task) -> Any:
        """Do the work and return a JSON-encodable result (or an awaitable of one)."""


class Task:
    """A claimed task as its executor sees it."""

    def __init__(self, data: TaskData) -> None:
        self._data = data
        self._cancelled = threading.Event()

    @property
    def metadata(self) -> TaskMetadata:
        """When it was enqueued, by which workflow instance, which attempt."""
        return self._data.metadata

    @property
    def name(self) -> str:
        """The task's name."""
        return self._data.name

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The task's parameters, decoded."""
        return values.decode(self._data.parameters, type)

    def is_cancelled(self) -> bool:
        """True once the task should stop: its workflow ended, it timed out or was lost."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Mark the task cancelled (the engine calls this; plain executors poll it)."""
        self._cancelled.set()

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, task_id={self.metadata.task_id!r})"


TaskFunction = Callable[[Task], Any]


def task_callable(executor: TaskExecutor | TaskFunction) -> TaskFunction:
    """The function to call for a task executor: its ``run`` method, or the callable itself.

    Raises:
        TypeError: ``executor`` has no ``run`` method and is not callable.
    """
    run = getattr(executor, "run", None)
    if callable(run):
        return run  # type: ignore[no-any-return]
    if callable(executor):
        return executor
    raise TypeError(
        f"task executor must have a run(task) method or be callable, got {type(executor).__name__}"
    )


def check_workflow_executor(executor: object) -> None:
    """Refuse an object that lacks one of the three callbacks.

    Raises:
        TypeError: naming the missing callback.
    """
    for method in ("on_start", "on_task_complete", "on_cancel"):
        if not callable(getattr(executor, method, None)):
            raise TypeError(
                f"workflow executor {type(executor).__name__} has no callable {method}(w, ev)"
            )


def is_async_callable(function: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, methods and objects with an async ``__call__``."""
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - we need the attribute itself
    return call is not None and inspect.iscoroutinefunction(call)


async def call_plain_or_async(function: Callable[..., Any], *args: Any) -> Any:
    """Await an async callable; run a plain one in a worker thread.

    A plain callable that returns an awaitable (e.g. a lambda around a
    coroutine function) has that awaitable awaited too.
    """
    if is_async_callable(function):
        return await function(*args)
    result = await asyncio.to_thread(function, *args)
    if inspect.isawaitable(result):
        return await result
    return result


def start_in_thread(
    function: TaskFunction,
    task: Task,
    *,
    name: str,
    on_exit: Callable[[], None] | None = None,
) -> asyncio.Future[Any]:
    """Run a plain task executor on a thread of its own; returns a future of its outcome.

    Its own thread (never a slot in a fixed pool, see :mod:`cereal.task_threads`),
    so that a timed-out or lost executor, which cannot be interrupted, never
    holds a slot other tasks need. ``on_exit`` is called on the loop once the
    executor has returned, even when nobody waits for the outcome any more.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    # the caller's context variables (e.g. the task's trace span) carry into the thread
    context = contextvars.copy_context()

    def job() -> None:
        failure: BaseException | None = None
        outcome: Any = None
        try:
            outcome = context.run(function, task)
        except BaseException as exc:  # the executor's failure is the task's outcome
            failure = exc

        def finish() -> None:  # one wakeup of the loop per task: outcome and exit together
            if not future.done():
                if failure is not None:
                    future.set_exception(failure)
                else:
                    future.set_result(outcome)
            if on_exit is not None:
                on_exit()

        with contextlib.suppress(RuntimeError):  # the loop closed while the thread still ran
            loop.call_soon_threadsafe(finish)

    TASK_THREADS.run(job, name)
    return future
