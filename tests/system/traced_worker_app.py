"""A traced worker process: ``python -m tests.system.traced_worker_app URL DIR NAME MODE``.

Runs a Manager with OpenTelemetry tracing whose spans go, one JSON object per
line, to ``DIR/NAME.spans``. Its workflow ``traced`` enqueues one ``step``
task and completes when the task's result arrives. In MODE ``hold`` the step
writes ``DIR/NAME.running`` and waits forever (so a stop hands it back); in
MODE ``finish`` it returns at once. The process stops (handing back what
runs) when ``DIR/NAME.stop`` appears, flushes its spans and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from cereal import Manager, Task, open_driver
from cereal.instance import Decision, WorkflowInstance
from cereal.tracing import OpenTelemetryTracing


class JsonLinesExporter(SpanExporter):
    """Appends each finished span to a file as one line of JSON."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def export(self, spans: Any) -> SpanExportResult:
        with self._path.open("a") as out:
            for span in spans:
                assert isinstance(span, ReadableSpan)
                out.write(span.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS


class Traced:
    """One task, then complete with its result."""

    def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("step", None)
        return w.continue_(None)

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.complete(str(ev.result.status))

    def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled")


async def main(url: str, directory: Path, name: str, mode: str) -> None:
    """Run until the stop file appears."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(directory / f"{name}.spans")))

    async def step(task: Task) -> str:
        if mode == "hold":
            (directory / f"{name}.running").write_text("1")
            await asyncio.Event().wait()
        return "done"

    manager = Manager(
        open_driver(url),
        observers=[OpenTelemetryTracing(provider)],
        workflow_poll_interval=0.05,
        task_poll_interval=0.05,
    )
    manager.register_workflow_executor("traced", Traced())
    manager.register_task_executor("step", step)
    await manager.start()
    try:
        while not (directory / f"{name}.stop").exists():
            await asyncio.sleep(0.05)
    finally:
        await manager.stop(grace_period=0.2)  # a held step is handed back at once
        provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("directory", type=Path)
    parser.add_argument("name")
    parser.add_argument("mode", choices=["hold", "finish"])
    args = parser.parse_args()
    asyncio.run(main(args.url, args.directory, args.name, args.mode))
