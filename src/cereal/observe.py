"""The one interface instrumentation plugs into: metrics and tracing are observers.

The runners hold ``Observer | None``; with no observer they skip every hook
after one ``None`` check, so an uninstrumented Manager pays nothing per task.
:class:`Observer` gives a no-op default for every hook, so an observer (the
Prometheus metrics of :mod:`cereal.metrics`, the OpenTelemetry spans of
:mod:`cereal.tracing`, or a user's own) overrides only what it needs;
:class:`Observers` fans the hooks out to several of them.

Hooks are called on the event loop's thread, except
:meth:`Observer.workflow_callback` (and so :meth:`Observer.callback`), which
a batch of plain callbacks enters on the worker thread running them.
Hooks must be cheap and must not raise; :class:`Observers` logs and ignores
a plain hook that does. A retry feature reports each retry through
:func:`note_task_retried`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cereal.models import TaskMetadata, TaskStatus

logger = logging.getLogger(__name__)


@dataclass
class TaskObservation:
    """How one observed task run ended, filled in by the task runner before the hook exits.

    ``status`` stays ``None`` when the outcome was dropped (the lease was lost).
    """

    status: TaskStatus | None = None
    error_type: str | None = None
    error: str | None = None
    traceparent: str | None = None
    """The run's own span (set by a tracing observer); stored with the task's result."""


@dataclass
class CallbackObservation:
    """One observed callback; a tracing observer sets ``traceparent`` for its tasks.

    ``decision`` is filled in by the runner when the callback returned:
    ``continue``, ``complete`` or ``fail`` (``None`` when it raised).
    """

    traceparent: str | None = None
    decision: str | None = None


@dataclass
class EnqueueObservation:
    """One observed enqueue; a tracing observer sets ``traceparent``, stored with the run."""

    traceparent: str | None = None


class Observer:
    """Instrumentation hooks of a Manager; every default does nothing."""

    @contextlib.contextmanager
    def enqueue(
        self, workflow_name: str, instance_name: str
    ) -> Iterator[EnqueueObservation | None]:
        """Around ``Manager.enqueue_workflow``'s write.

        What it yields may carry a ``traceparent``: the run is stored with it
        and its callbacks descend from it (yielding ``None`` is fine too).
        """
        yield EnqueueObservation()

    @contextlib.contextmanager
    def callback(
        self, workflow_name: str, instance_name: str, callback_name: str
    ) -> Iterator[CallbackObservation]:
        """Around one workflow callback; tasks it enqueues carry ``traceparent``."""
        yield CallbackObservation()

    @contextlib.contextmanager
    def workflow_callback(
        self,
        workflow_name: str,
        instance_name: str,
        callback_name: str,
        *,
        parent_traceparent: str | None,
    ) -> Iterator[CallbackObservation]:
        """What the runner enters around a callback: :meth:`callback`, with the run's context.

        ``parent_traceparent`` is the stored span the callback follows from:
        the run's enqueue for ``on_start`` and ``on_cancel``, the task run that
        reported the result for ``on_task_complete`` (``None`` when untraced).
        This default ignores it, so an observer overriding only
        :meth:`callback` keeps working.
        """
        with self.callback(workflow_name, instance_name, callback_name) as observation:
            yield observation

    @contextlib.contextmanager
    def task(self, metadata: TaskMetadata) -> Iterator[TaskObservation]:
        """Around one task run, from its start to its recorded outcome."""
        yield TaskObservation()

    def workflow_started(self, workflow_name: str) -> None:
        """An instance's start event was decided."""

    def workflow_finished(self, workflow_name: str, *, failed: bool, seconds: float) -> None:
        """An instance completed or failed, ``seconds`` after it started."""

    def task_lost(self, workflow_name: str, task_name: str) -> None:
        """A workflow received a ``LOST`` result for a task."""

    def task_retried(self, workflow_name: str, task_name: str) -> None:
        """A failed or lost task was queued again for another attempt."""

    def schedule_fired(
        self, workflow_name: str, instance_name: str, *, lateness: float, enqueued: bool
    ) -> None:
        """A due schedule was processed ``lateness`` seconds after its due time.

        ``enqueued`` is False for a skipped run (the previous one still runs).
        """


class Observers(Observer):
    """Several observers as one: each hook calls each of them in order."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._observers = tuple(observers)

    @contextlib.contextmanager
    def enqueue(
        self, workflow_name: str, instance_name: str
    ) -> Iterator[EnqueueObservation | None]:
        """Every observer's :meth:`Observer.enqueue`, nested; the first traceparent wins."""
        with contextlib.ExitStack() as stack:
            inner = [
                stack.enter_context(observer.enqueue(workflow_name, instance_name))
                for observer in self._observers
            ]
            yield EnqueueObservation(traceparent=first_traceparent(inner))

    @contextlib.contextmanager
    def callback(
        self, workflow_name: str, instance_name: str, callback_name: str
    ) -> Iterator[CallbackObservation]:
        """Every observer's :meth:`Observer.callback`, nested (no run context)."""
        with self.workflow_callback(
            workflow_name, instance_name, callback_name, parent_traceparent=None
        ) as merged:
            yield merged

    @contextlib.contextmanager
    def workflow_callback(
        self,
        workflow_name: str,
        instance_name: str,
        callback_name: str,
        *,
        parent_traceparent: str | None,
    ) -> Iterator[CallbackObservation]:
        """Every observer's :meth:`Observer.workflow_callback`, nested; the first traceparent wins.

        The decision the runner notes is copied to each when the callback ends.
        """
        with contextlib.ExitStack() as stack:
            inner = [
                stack.enter_context(
                    observer.workflow_callback(
                        workflow_name,
                        instance_name,
                        callback_name,
                        parent_traceparent=parent_traceparent,
                    )
                )
                for observer in self._observers
            ]
            merged = CallbackObservation(traceparent=first_traceparent(inner))
            try:
                yield merged
            finally:
                for observation in inner:
                    observation.decision = merged.decision

    @contextlib.contextmanager
    def task(self, metadata: TaskMetadata) -> Iterator[TaskObservation]:
        """Every observer's :meth:`Observer.task`, nested; the outcome is copied to each."""
        with contextlib.ExitStack() as stack:
            inner = [stack.enter_context(observer.task(metadata)) for observer in self._observers]
            merged = TaskObservation(traceparent=first_traceparent(inner))
            try:
                yield merged
            finally:
                for observation in inner:
                    observation.status = merged.status
                    observation.error_type = merged.error_type
                    observation.error = merged.error

    def workflow_started(self, workflow_name: str) -> None:
        """Tell every observer."""
        for observer in self._observers:
            _safely(observer.workflow_started, workflow_name)

    def workflow_finished(self, workflow_name: str, *, failed: bool, seconds: float) -> None:
        """Tell every observer."""
        for observer in self._observers:
            _safely(observer.workflow_finished, workflow_name, failed=failed, seconds=seconds)

    def task_lost(self, workflow_name: str, task_name: str) -> None:
        """Tell every observer."""
        for observer in self._observers:
            _safely(observer.task_lost, workflow_name, task_name)

    def task_retried(self, workflow_name: str, task_name: str) -> None:
        """Tell every observer."""
        for observer in self._observers:
            _safely(observer.task_retried, workflow_name, task_name)

    def schedule_fired(
        self, workflow_name: str, instance_name: str, *, lateness: float, enqueued: bool
    ) -> None:
        """Tell every observer."""
        for observer in self._observers:
            _safely(
                observer.schedule_fired,
                workflow_name,
                instance_name,
                lateness=lateness,
                enqueued=enqueued,
            )


def combine(observers: Sequence[Observer]) -> Observer | None:
    """``None`` for no observers (the runners then skip every hook), else one observer."""
    if not observers:
        return None
    for observer in observers:
        if not isinstance(observer, Observer):
            raise TypeError(f"observers must be cereal Observers, got {type(observer).__name__}")
    if len(observers) == 1:
        return observers[0]
    return Observers(observers)


def first_traceparent(observations: Sequence[object]) -> str | None:
    """The first ``traceparent`` any of ``observations`` carries (``None`` if none does)."""
    for observation in observations:
        # an observer written before trace contexts may yield anything from enqueue
        traceparent = getattr(observation, "traceparent", None)
        if traceparent:
            return str(traceparent)
    return None


def note_task_retried(observer: Observer | None, workflow_name: str, task_name: str) -> None:
    """Report a retried task to ``observer`` (nothing when it is ``None``)."""
    if observer is not None:
        _safely(observer.task_retried, workflow_name, task_name)


def _safely(hook: object, *args: object, **kwargs: object) -> None:
    try:
        hook(*args, **kwargs)  # type: ignore[operator]
    except Exception:
        logger.exception("an observer hook failed; ignored")
