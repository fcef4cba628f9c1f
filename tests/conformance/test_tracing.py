"""OpenTelemetry spans of one workflow, checked with the SDK's in-memory exporter (issue 10)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cereal import Decision, Task, WorkflowInstance
from cereal.tracing import OpenTelemetryTracing
from tests._waiting import wait_until
from tests.conformance._executors import INST, WF, Flow, collect_results, enqueue, register
from tests.plugins.manager import MakeManager, wait_finished


def _traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_one_workflow_span_tree(make_manager: MakeManager) -> None:
    # Given a traced Manager whose workflow enqueues a plain and a failing async task
    provider, exporter = _traced()
    tracer = provider.get_tracer("test")

    def plain(task: Task) -> str:
        with tracer.start_as_current_span("inside the executor"):
            return "ok"

    async def failing(task: Task) -> None:
        raise KeyError("nope")

    def finish(w: WorkflowInstance, ev: Any) -> Decision:
        return collect_results(w, ev)

    manager = register(
        make_manager(observers=[OpenTelemetryTracing(provider)]),
        {WF: Flow(enqueue(("plain", None), ("failing", None)), finish)},
        {"plain": plain, "failing": failing},
    )
    await manager.start()

    # When one instance runs to its end
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)
    await manager.stop()

    spans = exporter.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    # Then: an enqueue span, one span per callback, one per task
    [enqueue_span] = by_name["cereal.enqueue_workflow"]
    assert enqueue_span.kind is SpanKind.PRODUCER
    [start_span] = by_name["cereal.callback on_start"]
    assert len(by_name["cereal.callback on_task_complete"]) == 2
    [plain_span] = by_name["cereal.task plain"]
    [failing_span] = by_name["cereal.task failing"]

    # each task span is a child of the callback span that enqueued it (through the store)
    for task_span in (plain_span, failing_span):
        assert task_span.parent is not None
        assert task_span.parent.span_id == start_span.context.span_id
        assert task_span.context.trace_id == start_span.context.trace_id
        assert task_span.kind is SpanKind.CONSUMER
    # spans made by a plain executor (in its own thread) nest under its task span
    [inner] = by_name["inside the executor"]
    assert inner.parent is not None and inner.parent.span_id == plain_span.context.span_id
    # a failed task's span is an error naming the exception type
    assert failing_span.status.status_code is StatusCode.ERROR
    assert failing_span.attributes["error.type"] == "KeyError"
    assert plain_span.status.status_code is not StatusCode.ERROR
    # every cereal span names the workflow instance
    for span in spans:
        if span.name.startswith("cereal."):
            assert span.attributes["cereal.workflow_name"] == WF
            assert span.attributes["cereal.instance_name"] == INST


async def test_enqueue_span_is_a_child_of_the_callers_span(make_manager: MakeManager) -> None:
    provider, exporter = _traced()
    manager = make_manager(observers=[OpenTelemetryTracing(provider)])

    with provider.get_tracer("test").start_as_current_span("request") as request:
        await manager.enqueue_workflow(WF, INST)

    [span] = [s for s in exporter.get_finished_spans() if s.name == "cereal.enqueue_workflow"]
    assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id


async def test_metrics_and_tracing_together(make_manager: MakeManager) -> None:
    # Given both observers on one Manager (they are combined into one)
    from cereal.metrics import PrometheusMetrics, render

    provider, exporter = _traced()
    metrics = PrometheusMetrics()
    manager = register(
        make_manager(observers=[metrics, OpenTelemetryTracing(provider)]),
        {WF: Flow(enqueue(("plain", None)), collect_results)},
        {"plain": lambda task: "ok"},
    )
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)

    # Then the metrics count the task and its span ends; both after its result was stored
    # (the workflow may finish first), so wait for them, not for the instance
    async def counted() -> bool:
        body = (await render(manager.driver, metrics)).decode()
        return 'cereal_tasks_completed_total{task="plain",workflow="wf"} 1.0' in body

    await wait_until(counted, what="the task's completion counted")
    await wait_until(
        lambda: any(s.name == "cereal.task plain" for s in exporter.get_finished_spans()),
        what="the task span ended",
    )
    # and the task span still descends from its callback's span
    spans = {span.name: span for span in exporter.get_finished_spans()}
    task_span = spans["cereal.task plain"]
    assert task_span.parent is not None
    assert task_span.parent.span_id == spans["cereal.callback on_start"].context.span_id
