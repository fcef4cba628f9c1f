"""Prometheus metrics scraped over real HTTP while work runs (issue 10), on every driver."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cereal import Decision, Task, WorkflowInstance
from cereal.metrics import CONTENT_TYPE, MetricsServer, PrometheusMetrics, render, serve
from tests.conformance._executors import INST, WF, Flow, collect_results, enqueue, register
from tests.plugins.manager import MakeManager, wait_finished


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def _scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    def get() -> tuple[str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30) as r:
            return r.headers["Content-Type"], r.read().decode()

    content_type, body = await asyncio.to_thread(get)
    assert content_type.startswith("text/plain")
    return _samples(body)


@pytest.fixture
async def metrics_server(make_manager: MakeManager) -> AsyncIterator[tuple[Any, MetricsServer]]:
    metrics = PrometheusMetrics()
    manager = make_manager(observers=[metrics])
    server = serve(metrics, manager.driver, 0, loop=asyncio.get_running_loop(), addr="127.0.0.1")
    try:
        yield manager, server
    finally:
        server.close()


def _task(workflow: str, task: str) -> tuple[tuple[str, str], ...]:
    return (("task", task), ("workflow", workflow))


async def test_counters_move_as_work_runs(metrics_server: tuple[Any, MetricsServer]) -> None:
    manager, server = metrics_server

    def explode(task: Task) -> None:
        raise RuntimeError("boom")

    def fail_on_error(w: WorkflowInstance, ev: Any) -> Decision:
        if ev.result.err() is not None:
            return w.fail(ev.result.err())
        return collect_results(w, ev)

    register(
        manager,
        {WF: Flow(enqueue(("ok", 1), ("ok", 2)), fail_on_error),
         "wf-bad": Flow(enqueue(("bad", None)), fail_on_error)},
        {"ok": lambda task: task.get_parameters(), "bad": explode},
    )  # fmt: skip
    before = await _scrape(server)
    assert before.get(("cereal_tasks_started_total", _task(WF, "ok")), 0) == 0

    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    await manager.enqueue_workflow("wf-bad", INST)
    await wait_finished(manager, WF, INST)
    await wait_finished(manager, "wf-bad", INST)

    after = await _scrape(server)
    assert after[("cereal_tasks_started_total", _task(WF, "ok"))] == 2
    assert after[("cereal_tasks_completed_total", _task(WF, "ok"))] == 2
    assert after[("cereal_tasks_started_total", _task("wf-bad", "bad"))] == 1
    assert after[("cereal_tasks_failed_total", _task("wf-bad", "bad"))] == 1
    assert after[("cereal_workflows_started_total", (("workflow", WF),))] == 1
    assert after[("cereal_workflows_completed_total", (("workflow", WF),))] == 1
    assert after[("cereal_workflows_failed_total", (("workflow", "wf-bad"),))] == 1
    assert ("cereal_tasks_lost_total", _task(WF, "ok")) not in after
    duration_labels = tuple(sorted((*_task(WF, "ok"), ("outcome", "success"))))
    assert after[("cereal_task_duration_seconds_count", duration_labels)] == 2
    callbacks = ("cereal_callback_duration_seconds_count",
                 (("callback", "on_task_complete"), ("workflow", WF)))  # fmt: skip
    assert after[callbacks] == 2


async def test_queue_depth_gauge_follows_the_store(
    metrics_server: tuple[Any, MetricsServer],
) -> None:
    manager, server = metrics_server
    # Given work queued in the store, with no Manager running it
    await manager.enqueue_workflow(WF, "a")
    await manager.enqueue_workflow(WF, "b")

    scraped = await _scrape(server)

    # Then the scrape reads the queue from the store
    assert scraped[("cereal_workflow_queue_depth", (("workflow", WF),))] == 2
    assert scraped[("cereal_workflow_queue_oldest_age_seconds", (("workflow", WF),))] >= 0
    assert ("cereal_task_queue_depth", (("task", "t"),)) not in scraped

    # and render() gives the same exposition for another server (the dashboard)
    body = (await render(manager.driver)).decode()
    assert 'cereal_workflow_queue_depth{workflow="wf"} 2.0' in body
    assert CONTENT_TYPE.startswith("text/plain")


async def test_lost_and_retried_counters(make_manager: MakeManager) -> None:
    # Given a task that a stopping Manager abandons (its workflow sees LOST)
    metrics = PrometheusMetrics()
    manager = make_manager(observers=[metrics], stop_grace_period=0.0)
    started = asyncio.Event()

    async def hang(task: Task) -> None:
        started.set()
        await asyncio.Event().wait()

    register(manager, {WF: Flow(enqueue(("hang", None)), collect_results)}, {"hang": hang})
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    await started.wait()
    await manager.stop()
    # When a second Manager delivers the LOST result
    second = register(make_manager(driver=manager.driver, observers=[metrics]),
                      {WF: Flow(enqueue(("hang", None)), collect_results)}, {})  # fmt: skip
    await second.start()
    await wait_finished(second, WF, INST)

    body = (await render(second.driver, metrics)).decode()
    assert 'cereal_tasks_lost_total{task="hang",workflow="wf"} 1.0' in body
    # and the retry hook a retry feature calls moves its counter
    from cereal.observe import note_task_retried

    note_task_retried(second.observer, WF, "hang")
    body = (await render(second.driver, metrics)).decode()
    assert 'cereal_tasks_retried_total{task="hang",workflow="wf"} 1.0' in body
