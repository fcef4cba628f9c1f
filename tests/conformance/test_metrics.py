"""Prometheus metrics scraped over real HTTP while work runs (issue 10), on every driver."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cereal import Decision, RetryPolicy, Task, WorkflowInstance
from cereal.drivers import Driver
from cereal.metrics import CONTENT_TYPE, MetricsServer, PrometheusMetrics, render, serve
from tests._waiting import wait_for_value
from tests.conformance._executors import INST, WF, Flow, collect_results, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished


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
    server = serve(metrics, manager.driver, 0, loop=asyncio.get_running_loop())
    assert server.host == "127.0.0.1"  # loopback unless asked otherwise
    try:
        yield manager, server
    finally:
        server.close()


def _task(workflow: str, task: str) -> tuple[tuple[str, str], ...]:
    return (("task", task), ("workflow", workflow))


async def _counter(
    driver: Driver, metrics: PrometheusMetrics, name: str, labels: tuple[tuple[str, str], ...]
) -> float | None:
    """One sample of the rendered exposition (``None`` while it is absent)."""
    return _samples((await render(driver, metrics)).decode()).get((name, labels))


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

    # The counters move after each commit (a task's after its result is stored, a
    # workflow's after its decision): wait for the scraped values themselves
    duration_labels = tuple(sorted((*_task(WF, "ok"), ("outcome", "success"))))
    callbacks = ("cereal_callback_duration_seconds_count",
                 (("callback", "on_task_complete"), ("workflow", WF)))  # fmt: skip
    expected = {
        ("cereal_tasks_started_total", _task(WF, "ok")): 2,
        ("cereal_tasks_completed_total", _task(WF, "ok")): 2,
        ("cereal_tasks_started_total", _task("wf-bad", "bad")): 1,
        ("cereal_tasks_failed_total", _task("wf-bad", "bad")): 1,
        ("cereal_workflows_started_total", (("workflow", WF),)): 1,
        ("cereal_workflows_completed_total", (("workflow", WF),)): 1,
        ("cereal_workflows_failed_total", (("workflow", "wf-bad"),)): 1,
        ("cereal_task_duration_seconds_count", duration_labels): 2,
        callbacks: 2,
    }
    scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    async def counted() -> dict[Any, float | None]:
        scraped.update(await _scrape(server))
        return {key: scraped.get(key) for key in expected}

    await wait_for_value(counted, expected, what="every counter moved")
    assert ("cereal_tasks_lost_total", _task(WF, "ok")) not in scraped


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


async def test_lost_counter_moves_when_a_workflow_receives_a_lost_result(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given a Manager running the workflow (not the task) and a holder that claims the
    # task with a 0.2 s lease and never heartbeats (it "dies")
    metrics = PrometheusMetrics()
    manager = register(make_manager(observers=[metrics]),
                       {WF: Flow(enqueue(("hang", None)), collect_results)})  # fmt: skip
    await manager.start()
    holder = driver_factory()
    await holder.init()
    try:
        await manager.enqueue_workflow(WF, INST)
        claimed: list[Any] = []

        async def claim() -> bool:
            claimed.extend(await holder.dequeue_tasks("hang", 1, task_expiry=0.2))
            return bool(claimed)

        await eventually(claim, what="the task claimed by the holder")
        # When the sweep reports the task LOST to its workflow
        await wait_finished(manager, WF, INST, timeout=30)
    finally:
        await holder.close()

    # Then the lost counter moved (after the workflow's decision committed: wait for it),
    # and nothing was retried
    await wait_for_value(
        lambda: _counter(manager.driver, metrics, "cereal_tasks_lost_total", _task(WF, "hang")),
        1,
        what="the lost task counted",
    )
    body = (await render(manager.driver, metrics)).decode()
    assert "cereal_tasks_retried_total{" not in body


async def test_retried_counter_moves_when_a_failed_attempt_is_tried_again(
    make_manager: MakeManager,
) -> None:
    # Given a task whose first attempt raises, under a policy of 2 attempts
    metrics = PrometheusMetrics()
    manager = make_manager(observers=[metrics])

    def flaky(task: Task) -> str:
        if task.metadata.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    register(manager, {WF: Flow(enqueue(("flaky", None)), collect_results)})
    manager.register_task_executor(
        "flaky", flaky, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01)
    )
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)

    # Then the retry was counted once: two runs, the first failed, the second succeeded
    # (each counted after its result was stored: wait for the counters themselves)
    expected = {
        "cereal_tasks_retried_total": 1,
        "cereal_tasks_started_total": 2,
        "cereal_tasks_failed_total": 1,
        "cereal_tasks_completed_total": 1,
    }
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    async def counted() -> dict[str, float | None]:
        after.update(_samples((await render(manager.driver, metrics)).decode()))
        return {name: after.get((name, _task(WF, "flaky"))) for name in expected}

    await wait_for_value(counted, expected, what="the retry and both attempts counted")
    assert ("cereal_tasks_lost_total", _task(WF, "flaky")) not in after


async def test_retried_counter_moves_when_a_sweep_retries_an_expired_lease(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given a sweeping Manager running the workflow of a task with 2 attempts, and a holder
    # that claims the task with a 0.2 s lease and never heartbeats (it "dies")
    metrics = PrometheusMetrics()
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.01)
    flow = Flow(enqueue(("hang", None), retry=policy), collect_results)
    manager = register(make_manager(observers=[metrics]), {WF: flow})
    await manager.start()
    holder = driver_factory()
    await holder.init()
    try:
        await manager.enqueue_workflow(WF, INST)
        claimed: list[Any] = []

        async def claim() -> bool:
            claimed.extend(await holder.dequeue_tasks("hang", 1, task_expiry=0.2))
            return bool(claimed)

        await eventually(claim, what="the task claimed by the holder")

        # When a sweep finds the lease expired with an attempt left
        async def retried() -> bool:
            body = (await render(manager.driver, metrics)).decode()
            return 'cereal_tasks_retried_total{task="hang",workflow="wf"} 1.0' in body

        # Then the retry is counted (the task waits for its second attempt, not LOST)
        await eventually(retried, timeout=30, what="the sweep's retry counted")
    finally:
        await holder.close()
    body = (await render(manager.driver, metrics)).decode()
    assert "cereal_tasks_lost_total{" not in body
    assert (await manager.get_workflow_instance(WF, INST)).is_running()
