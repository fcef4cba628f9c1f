"""Prometheus metrics for a Manager (the optional extra ``cereal-workflows[metrics]``).

:class:`PrometheusMetrics` is an :class:`~cereal.observe.Observer`: pass it to
``Manager(driver, observers=[metrics])`` and it counts what that Manager runs.
Queue depths and the age of the oldest queued item are read from the store
when scraped (:meth:`~cereal.drivers.base.Driver.queue_depths`), so they
cover the work of every process sharing it. :func:`render` returns the
exposition for any HTTP server (the dashboard reuses it);
:func:`serve` runs prometheus-client's own server (``cereal worker
--metrics-port``).

Metric names (labels in braces)::

    cereal_workflows_started_total / _completed_total / _failed_total {workflow}
    cereal_workflow_duration_seconds                  {workflow, outcome}
    cereal_callback_duration_seconds                  {workflow, callback}
    cereal_tasks_started_total / _completed_total / _failed_total / _lost_total /
        _retried_total                                {workflow, task}
    cereal_task_duration_seconds                      {workflow, task, outcome}
    cereal_schedule_lateness_seconds                  {workflow, instance}
    cereal_schedule_runs_skipped_total                {workflow, instance}
    cereal_task_queue_depth, cereal_task_queue_oldest_age_seconds          {task}
    cereal_workflow_queue_depth, cereal_workflow_queue_oldest_age_seconds  {workflow}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from cereal.checks.times import utcnow
from cereal.models import QueueDepth, TaskMetadata, TaskStatus
from cereal.observe import CallbackObservation, Observer, TaskObservation

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
        start_http_server,
    )
    from prometheus_client.core import GaugeMetricFamily, Metric
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "cereal metrics need prometheus-client: pip install 'cereal-workflows[metrics]'"
    ) from exc

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from cereal.drivers.base import Driver

__all__ = ["CONTENT_TYPE", "MetricsServer", "PrometheusMetrics", "QueueSource", "render", "serve"]

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :func:`render`'s bytes."""

SCRAPE_TIMEOUT = 10.0
"""Seconds a scrape waits for the store's queue depths before answering without them."""

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class PrometheusMetrics(Observer):
    """Counters and histograms of one or more Managers, in their own registry.

    Args:
        registry: where the metrics are registered; a new one by default (so
            several instances, e.g. in tests, never clash).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.workflows_started = Counter(
            "cereal_workflows_started", "Workflow instances whose start was decided.",
            ["workflow"], registry=r,
        )  # fmt: skip
        self.workflows_completed = Counter(
            "cereal_workflows_completed", "Workflow instances that completed.",
            ["workflow"], registry=r,
        )  # fmt: skip
        self.workflows_failed = Counter(
            "cereal_workflows_failed", "Workflow instances that failed.",
            ["workflow"], registry=r,
        )  # fmt: skip
        self.workflow_duration = Histogram(
            "cereal_workflow_duration_seconds", "From enqueue to the end of an instance.",
            ["workflow", "outcome"], buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.callback_duration = Histogram(
            "cereal_callback_duration_seconds", "Duration of one workflow callback.",
            ["workflow", "callback"], buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        labels = ["workflow", "task"]
        self.tasks_started = Counter(
            "cereal_tasks_started", "Task runs started.", labels, registry=r
        )
        self.tasks_completed = Counter(
            "cereal_tasks_completed", "Task runs that succeeded.", labels, registry=r
        )
        self.tasks_failed = Counter(
            "cereal_tasks_failed", "Task runs that failed.", labels, registry=r
        )
        self.tasks_lost = Counter(
            "cereal_tasks_lost", "LOST task results delivered to workflows.", labels, registry=r
        )
        self.tasks_retried = Counter(
            "cereal_tasks_retried", "Tasks queued again for another attempt.", labels, registry=r
        )
        self.task_duration = Histogram(
            "cereal_task_duration_seconds", "Duration of one task run.",
            ["workflow", "task", "outcome"], buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.schedule_lateness = Histogram(
            "cereal_schedule_lateness_seconds", "How late a due schedule was processed.",
            ["workflow", "instance"], buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.schedule_skipped = Counter(
            "cereal_schedule_runs_skipped", "Scheduled runs skipped: the previous one still ran.",
            ["workflow", "instance"], registry=r,
        )  # fmt: skip

    @contextlib.contextmanager
    def callback(
        self, workflow_name: str, instance_name: str, callback_name: str
    ) -> Iterator[CallbackObservation]:
        """Time the callback."""
        began = time.perf_counter()
        try:
            yield CallbackObservation()
        finally:
            seconds = time.perf_counter() - began
            self.callback_duration.labels(workflow_name, callback_name).observe(seconds)

    @contextlib.contextmanager
    def task(self, metadata: TaskMetadata) -> Iterator[TaskObservation]:
        """Count the start; on exit, the outcome and the duration."""
        workflow, task = metadata.workflow_name, metadata.task_name
        self.tasks_started.labels(workflow, task).inc()
        began = time.perf_counter()
        observation = TaskObservation()
        try:
            yield observation
        finally:
            status = observation.status
            if status is TaskStatus.SUCCESS:
                self.tasks_completed.labels(workflow, task).inc()
            elif status is TaskStatus.FAILED:
                self.tasks_failed.labels(workflow, task).inc()
            outcome = "dropped" if status is None else status.value
            seconds = time.perf_counter() - began
            self.task_duration.labels(workflow, task, outcome).observe(seconds)

    def workflow_started(self, workflow_name: str) -> None:
        """Count a started instance."""
        self.workflows_started.labels(workflow_name).inc()

    def workflow_finished(self, workflow_name: str, *, failed: bool, seconds: float) -> None:
        """Count a finished instance and its duration."""
        counter = self.workflows_failed if failed else self.workflows_completed
        counter.labels(workflow_name).inc()
        outcome = "failed" if failed else "completed"
        self.workflow_duration.labels(workflow_name, outcome).observe(seconds)

    def task_lost(self, workflow_name: str, task_name: str) -> None:
        """Count a lost task."""
        self.tasks_lost.labels(workflow_name, task_name).inc()

    def task_retried(self, workflow_name: str, task_name: str) -> None:
        """Count a retried task."""
        self.tasks_retried.labels(workflow_name, task_name).inc()

    def schedule_fired(
        self, workflow_name: str, instance_name: str, *, lateness: float, enqueued: bool
    ) -> None:
        """Record a schedule's lateness; count a skipped run."""
        self.schedule_lateness.labels(workflow_name, instance_name).observe(max(0.0, lateness))
        if not enqueued:
            self.schedule_skipped.labels(workflow_name, instance_name).inc()


class _QueueCollector:
    """Queue depth gauges, read from the store whenever the registry is collected."""

    def __init__(self, fetch: Callable[[], list[QueueDepth] | None]) -> None:
        self._fetch = fetch

    def collect(self) -> Iterable[Metric]:
        depths = self._fetch()
        if depths is None:
            return []
        return queue_metrics(depths, utcnow())


def queue_metrics(depths: list[QueueDepth], now: datetime) -> list[Metric]:
    """The four queue gauge families for ``depths`` (ages measured to ``now``)."""
    families: dict[str, tuple[GaugeMetricFamily, GaugeMetricFamily]] = {}
    for kind in ("task", "workflow"):
        families[kind] = (
            GaugeMetricFamily(
                f"cereal_{kind}_queue_depth",
                f"Ready {kind} work waiting to be claimed.",
                labels=[kind],
            ),
            GaugeMetricFamily(
                f"cereal_{kind}_queue_oldest_age_seconds",
                f"Age of the oldest ready {kind} item waiting to be claimed.",
                labels=[kind],
            ),
        )
    for depth in depths:
        if depth.kind not in families:
            continue
        count, age = families[depth.kind]
        count.add_metric([depth.name], depth.depth)
        if depth.oldest_at is not None:
            age.add_metric([depth.name], max(0.0, (now - depth.oldest_at).total_seconds()))
    return [family for pair in families.values() for family in pair]


class _Union:
    """Collects a registry's metrics, then the queue gauges (a registry of registries)."""

    def __init__(self, *sources: object) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self._sources:
            yield from source.collect()  # type: ignore[attr-defined]


class QueueSource(Protocol):
    """Anything that reports the ready queues: a :class:`Driver` or a :class:`Manager`."""

    async def queue_depths(self) -> list[QueueDepth]:
        """The ready work per task name and per workflow name."""
        ...


async def render(source: QueueSource, metrics: PrometheusMetrics | None = None) -> bytes:
    """The Prometheus text exposition: ``metrics``' counters and the store's queue gauges.

    ``source`` is a Manager (initialised on first use) or an open driver.
    Call on the loop it runs on (e.g. from an async HTTP handler); serve the
    bytes with :data:`CONTENT_TYPE`.
    """
    depths = await source.queue_depths()
    registry = CollectorRegistry()
    sources: list[object] = [_QueueCollector(lambda: depths)]
    if metrics is not None:
        sources.insert(0, metrics.registry)
    registry.register(_Union(*sources))
    return generate_latest(registry)


class MetricsServer:
    """prometheus-client's HTTP server in a thread; queue gauges read on the driver's loop."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The port it listens on (useful when started on port 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and wait for the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(
    metrics: PrometheusMetrics,
    driver: Driver,
    port: int,
    *,
    loop: asyncio.AbstractEventLoop,
    addr: str = "127.0.0.1",
) -> MetricsServer:
    """Serve ``/metrics`` on ``addr:port`` until :meth:`MetricsServer.close`.

    Loopback by default, like the dashboard and ``cereal serve``: pass
    ``addr="0.0.0.0"`` (``cereal worker --metrics-host``) for a scraper on
    another host.

    Each scrape asks the store for queue depths on ``loop`` (the driver's),
    waiting up to :data:`SCRAPE_TIMEOUT`; if that fails the counters are
    served without the queue gauges and a WARNING is logged.
    """

    def fetch() -> list[QueueDepth] | None:
        future = asyncio.run_coroutine_threadsafe(driver.queue_depths(), loop)
        try:
            return future.result(timeout=SCRAPE_TIMEOUT)
        except Exception:
            future.cancel()
            logger.warning("reading queue depths for a metrics scrape failed", exc_info=True)
            return None

    registry = CollectorRegistry()
    registry.register(_Union(metrics.registry, _QueueCollector(fetch)))
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server, thread)
