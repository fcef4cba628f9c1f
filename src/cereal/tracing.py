"""OpenTelemetry spans for a Manager (the optional extra ``cereal-workflows[otel]``).

:class:`OpenTelemetryTracing` is an :class:`~cereal.observe.Observer`: pass it
to ``Manager(driver, observers=[tracing])``. One workflow run is one trace,
whichever processes take part, joined through W3C ``traceparent`` values
stored with the run, its tasks and their results:

* ``cereal.enqueue_workflow`` around ``Manager.enqueue_workflow`` (a child of
  the caller's current span, if any): the run's root. Its context is stored
  with the run.
* ``cereal.callback on_start`` and ``cereal.callback on_cancel``: children
  of the run's root.
* ``cereal.task <task>`` around each task run (each attempt, each run after
  a hand-back or a lost lease): a child of the callback span that enqueued
  the task (stored with the task). It is current while the executor runs
  (plain executors too: their thread starts in the runner's context), so
  spans the executor makes nest under it.
* ``cereal.callback on_task_complete``: a child of the task run that
  reported the result (stored with the result); for a result no traced run
  reported (a lost lease), of the callback that enqueued the task.
* the run's end: the callback span that returned ``complete`` or ``fail``
  carries ``cereal.decision`` (every callback span does) and a
  ``cereal.workflow_completed`` or ``cereal.workflow_failed`` event; a
  ``fail`` sets the span's status to error.

A run stored without a context (enqueued by an untraced Manager, by a
schedule, or requeued) starts its trace at its first callback. Every span
carries ``cereal.workflow_name`` and ``cereal.instance_name``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cereal.models import TaskMetadata, TaskStatus
from cereal.observe import CallbackObservation, EnqueueObservation, Observer, TaskObservation

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "cereal tracing needs opentelemetry-api: pip install 'cereal-workflows[otel]'"
    ) from exc

__all__ = ["OpenTelemetryTracing"]

WORKFLOW_NAME = "cereal.workflow_name"
INSTANCE_NAME = "cereal.instance_name"
TASK_NAME = "cereal.task_name"
CALLBACK = "cereal.callback"
DECISION = "cereal.decision"

_PROPAGATOR = TraceContextTextMapPropagator()


class OpenTelemetryTracing(Observer):
    """Spans for enqueues, callbacks and tasks.

    Args:
        tracer_provider: where spans go; the global provider by default.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("cereal", tracer_provider=tracer_provider)

    @contextlib.contextmanager
    def enqueue(self, workflow_name: str, instance_name: str) -> Iterator[EnqueueObservation]:
        """A producer span around the enqueue: the run's root, stored with the run."""
        attributes = {WORKFLOW_NAME: workflow_name, INSTANCE_NAME: instance_name}
        with self._tracer.start_as_current_span(
            "cereal.enqueue_workflow", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            yield EnqueueObservation(traceparent=_current_traceparent())

    @contextlib.contextmanager
    def callback(
        self, workflow_name: str, instance_name: str, callback_name: str
    ) -> Iterator[CallbackObservation]:
        """A span around the callback, in the current context."""
        with self.workflow_callback(
            workflow_name, instance_name, callback_name, parent_traceparent=None
        ) as observation:
            yield observation

    @contextlib.contextmanager
    def workflow_callback(
        self,
        workflow_name: str,
        instance_name: str,
        callback_name: str,
        *,
        parent_traceparent: str | None,
    ) -> Iterator[CallbackObservation]:
        """A span around the callback, the child of the stored span it follows from.

        Its traceparent goes with the tasks it enqueues; the decision it
        returned becomes an attribute (and the run's end an event).
        """
        attributes = {
            WORKFLOW_NAME: workflow_name,
            INSTANCE_NAME: instance_name,
            CALLBACK: callback_name,
        }
        with self._tracer.start_as_current_span(
            f"cereal.callback {callback_name}",
            context=_parent_context(parent_traceparent),
            attributes=attributes,
        ) as span:
            observation = CallbackObservation(traceparent=_current_traceparent())
            try:
                yield observation
            finally:
                _note_decision(span, observation.decision)

    @contextlib.contextmanager
    def task(self, metadata: TaskMetadata) -> Iterator[TaskObservation]:
        """A consumer span around the task run, the child of its enqueuing callback's span.

        Its own traceparent is stored with the result it reports, so the
        ``on_task_complete`` that follows nests under it.
        """
        parent = _parent_context(metadata.traceparent)
        attributes: dict[str, str | int] = {
            WORKFLOW_NAME: metadata.workflow_name,
            INSTANCE_NAME: metadata.instance_name,
            TASK_NAME: metadata.task_name,
            "cereal.task_id": metadata.task_id,
            "cereal.attempt": metadata.attempt,
        }
        with self._tracer.start_as_current_span(
            f"cereal.task {metadata.task_name}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            observation = TaskObservation(traceparent=_current_traceparent())
            try:
                yield observation
            finally:
                if observation.status is TaskStatus.FAILED:
                    if observation.error_type:
                        span.set_attribute("error.type", observation.error_type)
                    span.set_status(trace.Status(trace.StatusCode.ERROR, observation.error))
                elif observation.status is not None:
                    span.set_attribute("cereal.task_status", observation.status.value)


def _current_traceparent() -> str | None:
    """The current span's W3C ``traceparent`` (``None`` when nothing is recorded)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def _parent_context(traceparent: str | None) -> Context | None:
    """The context a stored ``traceparent`` names; ``None`` (the current one) without it."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def _note_decision(span: trace.Span, decision: str | None) -> None:
    """Mark a callback span with the decision it returned; a ``fail`` is an error."""
    if decision is None:
        return
    span.set_attribute(DECISION, decision)
    if decision == "complete":
        span.add_event("cereal.workflow_completed")
    elif decision == "fail":
        span.add_event("cereal.workflow_failed")
        span.set_status(trace.Status(trace.StatusCode.ERROR, "the workflow failed"))
