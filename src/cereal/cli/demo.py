"""``cereal demo``: run the order-batch demo with a live progress bar and a results table."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Iterator
from typing import Annotated

import typer
from rich.progress import Progress

from cereal import demo as demo_workflows
from cereal.cli import _render
from cereal.cli._common import run, state
from cereal.demo import DemoReport


def demo(
    ctx: typer.Context,
    items: Annotated[
        int, typer.Option("--items", "-n", min=1, help="Items in the order batch.")
    ] = 300,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Concurrent item tasks in this process.")
    ] = 8,
    heartbeat_every: Annotated[
        int,
        typer.Option("--heartbeat-every", min=1, help="Seconds between heartbeat schedule runs."),
    ] = 1,
) -> None:
    """Run an order batch: one task per item, retries decided by the workflow, a schedule.

    Items divisible by 17 fail once and are retried; items divisible by 97
    fail every attempt and are given up after 3. A heartbeat schedule fires
    while the batch runs and is deleted at the end. Safe to run repeatedly
    on the same database.
    """
    url = state(ctx).database_url
    _render.note(f"cereal demo on {_render.safe_url(url)}: {items} items, {workers} task workers")
    progress, on_progress = _render.demo_progress(items)

    async def go() -> DemoReport:
        return await demo_workflows.run_demo(
            url,
            items=items,
            workers=workers,
            heartbeat_every=heartbeat_every,
            on_progress=on_progress,
        )

    quiet = contextlib.nullcontext() if state(ctx).verbose else _expected_failures_unlogged()
    with quiet, progress:
        report = run(ctx, _then_stop(progress, go()))
    _render.demo_report(report)


class _DropTaskFailures(logging.Filter):
    """Drops the per-task failure WARNINGs: the demo fails items on purpose and counts them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "event", None) != "task_failed"


@contextlib.contextmanager
def _expected_failures_unlogged() -> Iterator[None]:
    """Keep the deliberate item failures' tracebacks out of the progress display (-v shows them)."""
    drop = _DropTaskFailures()
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


async def _then_stop(progress: Progress, demo: Awaitable[DemoReport]) -> DemoReport:
    """Run the demo, then take the progress bar down, before any error or result is printed.

    On Ctrl+C the error line must be the last thing shown, not followed by a
    final redraw of the bar.
    """
    try:
        return await demo
    finally:
        progress.stop()
