"""OpenTelemetry spans for a Manager (the optional extra ``cereal-workflows[otel]``).

:class:`OpenTelemetryTracing` is an :class:`~cereal.observe.Observer`: pass it
to ``Manager(driver, observers=[tracing])``. It makes

* ``cereal.enqueue_workflow`` around ``Manager.enqueue_workflow`` (a child of
  the caller's current span, if any);
* ``cereal.callback <callback>`` around each workflow callback;
* ``cereal.task <task>`` around each task run. Its parent is the callback
  span that enqueued the task: the callback's W3C ``traceparent`` is stored
  with the task (``NewTask.traceparent``, a column of the tasks table) and
  restored when the task runs, in whichever process runs it. The task span
  is current while the executor runs (plain executors too: their thread
  starts in the runner's context), so spans the executor makes nest under it.

Every span carries ``cereal.workflow_name`` and ``cereal.instance_name``, which
link the spans of one instance across its traces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cereal.models import TaskMetadata, TaskStatus
from cereal.observe import CallbackObservation, Observer, TaskObservation

try:
    from opentelemetry import trace
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

_PROPAGATOR = TraceContextTextMapPropagator()


class OpenTelemetryTracing(Observer):
    """Spans for enqueues, callbacks and tasks.

    Args:
        tracer_provider: where spans go; the global provider by default.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("cereal", tracer_provider=tracer_provider)

    @contextlib.contextmanager
    def enqueue(self, workflow_name: str, instance_name: str) -> Iterator[None]:
        """A producer span around the enqueue."""
        attributes = {WORKFLOW_NAME: workflow_name, INSTANCE_NAME: instance_name}
        with self._tracer.start_as_current_span(
            "cereal.enqueue_workflow", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            yield

    @contextlib.contextmanager
    def callback(
        self, workflow_name: str, instance_name: str, callback_name: str
    ) -> Iterator[CallbackObservation]:
        """A span around the callback; its traceparent goes with the tasks it enqueues."""
        attributes = {
            WORKFLOW_NAME: workflow_name,
            INSTANCE_NAME: instance_name,
            CALLBACK: callback_name,
        }
        with self._tracer.start_as_current_span(
            f"cereal.callback {callback_name}", attributes=attributes
        ):
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            yield CallbackObservation(traceparent=carrier.get("traceparent"))

    @contextlib.contextmanager
    def task(self, metadata: TaskMetadata) -> Iterator[TaskObservation]:
        """A consumer span around the task run, the child of its enqueuing callback's span."""
        parent = None
        if metadata.traceparent:
            parent = _PROPAGATOR.extract({"traceparent": metadata.traceparent})
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
            observation = TaskObservation()
            try:
                yield observation
            finally:
                if observation.status is TaskStatus.FAILED:
                    if observation.error_type:
                        span.set_attribute("error.type", observation.error_type)
                    span.set_status(trace.Status(trace.StatusCode.ERROR, observation.error))
                elif observation.status is not None:
                    span.set_attribute("cereal.task_status", observation.status.value)
