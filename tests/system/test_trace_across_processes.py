"""One trace per run across real processes: the enqueuer, a worker stopped mid-task, another.

The test process enqueues under a span of its own; a first worker process
runs ``on_start`` and starts the task, then is stopped, so the task is handed
back; a second worker process runs the task and the ``on_task_complete`` that
ends the run. Each process exports its spans to a file; read together, they
form one tree, joined only through what the PostgreSQL store keeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cereal import Manager, open_driver
from cereal.tracing import OpenTelemetryTracing
from tests._waiting import wait_until, wait_until_sync
from tests.plugins.manager import wait_finished

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _spawn(dsn: str, directory: Path, name: str, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.system.traced_worker_app", dsn, str(directory), name, mode],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _stop(process: subprocess.Popen[bytes], directory: Path, name: str) -> None:
    (directory / f"{name}.stop").write_text("1")
    assert process.wait(timeout=60) == 0


def _read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def test_one_trace_through_a_hand_back_between_worker_processes(
    postgres_dsn: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    # Given a worker process whose task never ends by itself
    first = _spawn(postgres_dsn, tmp_path, "first", "hold")
    workers.append(first)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enqueuer = Manager(open_driver(postgres_dsn), observers=[OpenTelemetryTracing(provider)])

    # When this process enqueues a run under a span of its own
    with provider.get_tracer("test").start_as_current_span("request") as request:
        await enqueuer.enqueue_workflow("traced", "run-1")
    # and the first worker is stopped while the task runs (it hands the task back)
    wait_until_sync(lambda: (tmp_path / "first.running").exists(), what="the task started")
    _stop(first, tmp_path, "first")
    # and a second worker runs the task and ends the run
    second = _spawn(postgres_dsn, tmp_path, "second", "finish")
    workers.append(second)
    done = await wait_finished(enqueuer, "traced", "run-1", timeout=60)
    assert done.get_result() == "success"
    await wait_until(
        lambda: "on_task_complete" in (tmp_path / "second.spans").read_text(),
        what="the second worker's on_task_complete span",
    )
    _stop(second, tmp_path, "second")
    await enqueuer.stop()

    # Then the three processes' spans are one trace: the caller's
    spans = [
        *(json.loads(span.to_json(indent=None)) for span in exporter.get_finished_spans()),
        *_read_spans(tmp_path / "first.spans"),
        *_read_spans(tmp_path / "second.spans"),
    ]
    trace_id = f"0x{request.get_span_context().trace_id:032x}"
    assert {span["context"]["trace_id"] for span in spans} == {trace_id}
    by_id = {span["context"]["span_id"]: span for span in spans}

    def parent_name(span: dict[str, Any]) -> str:
        return str(by_id[span["parent_id"]]["name"])

    names = sorted(span["name"] for span in spans)
    assert names == [
        "cereal.callback on_start",
        "cereal.callback on_task_complete",
        "cereal.enqueue_workflow",
        "cereal.task step",
        "cereal.task step",
        "request",
    ]
    named = {span["name"]: span for span in spans}
    assert parent_name(named["cereal.enqueue_workflow"]) == "request"
    assert parent_name(named["cereal.callback on_start"]) == "cereal.enqueue_workflow"
    # the run handed back at the stop, and the one that finished, both follow on_start
    runs = [span for span in spans if span["name"] == "cereal.task step"]
    assert [parent_name(run) for run in runs] == ["cereal.callback on_start"] * 2
    finished = next(run for run in runs if run["attributes"].get("cereal.task_status"))
    assert finished["attributes"]["cereal.task_status"] == "success"
    # on_task_complete follows the run that reported the result, in the second process
    complete = named["cereal.callback on_task_complete"]
    assert complete["parent_id"] == finished["context"]["span_id"]
    assert complete["attributes"]["cereal.decision"] == "complete"
