"""``cereal demo``: run the order-batch demo with a live progress bar and a results table."""

from __future__ import annotations

from typing import Annotated

import typer

from cereal import demo as demo_workflows
from cereal.cli import _render
from cereal.cli._common import run, state


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
    with progress:
        report = run(
            ctx,
            demo_workflows.run_demo(
                url,
                items=items,
                workers=workers,
                heartbeat_every=heartbeat_every,
                on_progress=on_progress,
            ),
        )
    _render.demo_report(report)
