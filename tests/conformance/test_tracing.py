"""OpenTelemetry spans of one workflow, checked with the SDK's in-memory exporter (issue 10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cereal import Decision, RetryPolicy, Task, WorkflowInstance
from cereal.drivers import Driver
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


class _FlakyOnce:
    """Fails its first attempt (retried), succeeds after."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, task: Task) -> str:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first attempt fails")
        return "ok"


def _children(spans: list[Any], parent: Any) -> list[Any]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_one_trace_per_run_across_managers_retries_and_a_lost_lease(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given one Manager that only enqueues and another that runs the workflow, each with
    # its own tracer provider (as two processes): their spans meet only through the store
    enqueuer_provider, enqueuer_spans = _traced()
    worker_provider, worker_spans = _traced()
    enqueuer = make_manager(observers=[OpenTelemetryTracing(enqueuer_provider)])
    worker = register(
        make_manager(
            observers=[OpenTelemetryTracing(worker_provider)],
            task_heartbeat_interval=0.1,
            task_expiry=2.0,
        ),
        {WF: Flow(enqueue(("flaky", None), ("silent", None)), collect_results)},
        {"flaky": _FlakyOnce()},
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=0.0),
    )
    await worker.start()
    # and a holder on the same store that claims "silent" and goes quiet (a crashed
    # process), so its lease expires and the sweep reports it LOST
    holder = driver_factory()
    await holder.init()
    try:
        request_tracer = enqueuer_provider.get_tracer("test")
        with request_tracer.start_as_current_span("request") as request:
            await enqueuer.enqueue_workflow(WF, INST)

        claimed: list[Any] = []

        async def claim() -> bool:
            claimed.extend(await holder.dequeue_tasks("silent", 1, task_expiry=0.2))
            return bool(claimed)

        await wait_until(claim, what="the silent task claimed")
        await wait_finished(worker, WF, INST, timeout=30)
    finally:
        await holder.close()
    await wait_until(
        lambda: (
            len([s for s in worker_spans.get_finished_spans() if "task_complete" in s.name]) == 2
        ),
        what="both on_task_complete spans ended",
    )
    await worker.stop()

    spans = [*enqueuer_spans.get_finished_spans(), *worker_spans.get_finished_spans()]
    cereal_spans = [s for s in spans if s.name.startswith("cereal.")]

    # Then every span of the run is in one trace: the caller's
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    # the enqueue is the caller's child; on_start follows from it (through the store)
    [enqueue_span] = _children(spans, request)
    assert enqueue_span.name == "cereal.enqueue_workflow"
    [start_span] = _children(spans, enqueue_span)
    assert start_span.name == "cereal.callback on_start"
    assert start_span.attributes["cereal.decision"] == "continue"
    # each task run (both attempts of flaky) is a child of on_start
    runs = [s for s in _children(spans, start_span) if s.name.startswith("cereal.task")]
    attempts = sorted((s.attributes["cereal.attempt"], s.status.status_code) for s in runs)
    assert [s.name for s in runs] == ["cereal.task flaky"] * 2
    assert attempts == [(1, StatusCode.ERROR), (2, StatusCode.UNSET)]
    second = next(s for s in runs if s.attributes["cereal.attempt"] == 2)
    # the result of the attempt that reported it is the parent of its on_task_complete
    [after_flaky] = _children(spans, second)
    assert after_flaky.name == "cereal.callback on_task_complete"
    # a LOST result no run reported follows from the callback that enqueued the task
    completes = [s for s in cereal_spans if s.name == "cereal.callback on_task_complete"]
    [after_lost] = [s for s in completes if s is not after_flaky]
    assert after_lost.parent is not None
    assert after_lost.parent.span_id == start_span.context.span_id
    # the callback that ended the run says so
    last = max(completes, key=lambda s: s.end_time or 0)
    assert last.attributes["cereal.decision"] == "complete"
    assert [event.name for event in last.events] == ["cereal.workflow_completed"]
    # and nothing of the run is left outside the tree
    assert len(cereal_spans) == 6


async def test_a_failing_run_marks_its_last_callback_span(make_manager: MakeManager) -> None:
    provider, exporter = _traced()

    def give_up(w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("no stock")

    manager = register(
        make_manager(observers=[OpenTelemetryTracing(provider)]),
        {WF: Flow(give_up, give_up)},
    )
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)
    await wait_until(
        lambda: any(s.name == "cereal.callback on_start" for s in exporter.get_finished_spans()),
        what="the on_start span ended",
    )
    await manager.stop()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    start = spans["cereal.callback on_start"]
    assert start.parent is not None
    assert start.parent.span_id == spans["cereal.enqueue_workflow"].context.span_id
    assert start.attributes["cereal.decision"] == "fail"
    assert start.status.status_code is StatusCode.ERROR
    assert [event.name for event in start.events] == ["cereal.workflow_failed"]
