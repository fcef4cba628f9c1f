"""The dashboard's charts drawn in headless Chromium, on a real SQLite and PostgreSQL store.

A real worker finishes real runs (some completed, some failed, each after a
task), some tasks stay queued, and each page with a chart is loaded in the
browser: its chart's SVG must hold bars of non-zero size, and a screenshot of
the SVG alone must hold coloured pixels (the bars are green, red and blue; an
empty chart is white with grey text). Screenshots land in
test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cereal import Decision, Manager, WorkflowInstance
from tests.dashboard._png import coloured
from tests.dashboard.conftest import StoreFactory, build_store, run_with_completions
from tests.plugins.manager import wait_finished

expect: Any = pytest.importorskip("playwright.async_api").expect
expect.set_options(timeout=15_000)

MIN_COLOURED = 50
"""Coloured pixels a drawn chart has at least (a single bar is wider and taller than this)."""


class Shipping:
    """Ships one box as a task; completes with its result, or fails when the parameter says so."""

    def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("ship", {"box": w.get_parameters()})
        return w.continue_(None)

    def on_task_complete(self, w: WorkflowInstance, ev: object) -> Decision:
        if w.get_parameters() == "fail":
            return w.fail("the parcel was lost")
        return w.complete({"shipped": True})

    def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled")


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return build_store(request.param, tmp_path, request)


async def _chart_is_drawn(page: Any, name: str, shot: Path) -> None:
    """The chart ``name`` holds visible bars of non-zero size, and its screenshot shows them."""
    figure = page.locator(f"#chart-{name}")
    await expect(figure).to_have_attribute("data-empty", "false")
    bars = figure.locator("svg g.mark rect")
    assert await bars.count() > 0, f"the {name} chart has no bars"
    box = await bars.first.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, f"{name}: {box}"
    png = await figure.locator("svg").screenshot(path=str(shot))
    drawn = coloured(png)
    assert drawn >= MIN_COLOURED, f"the {name} chart shows {drawn} coloured pixels: not drawn"


async def test_charts_are_drawn(
    request: pytest.FixtureRequest,
    serve: Any,
    seed: Manager,
    worker_factory: Callable[..., Manager],
    store_factory: StoreFactory,
    browser: Any,
    screenshot_dir: Path,
) -> None:
    kind = request.node.callspec.params["store_factory"]
    worker = worker_factory()
    worker.register_workflow_executor("shipping", Shipping())
    worker.register_task_executor("ship", lambda task: "sent")
    await worker.start()
    outcomes = ["ok", "ok", "ok", "fail", "ok", "fail"]
    for number, outcome in enumerate(outcomes):
        await seed.enqueue_workflow("shipping", f"s-{number}", outcome)
    for number in range(len(outcomes)):
        await wait_finished(seed, "shipping", f"s-{number}")
    await run_with_completions(store_factory, completed=3, left=4)  # "later" tasks stay queued

    with serve() as base:
        page = await browser.new_page(base_url=base, viewport={"width": 1200, "height": 900})
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.on(
            "console",
            lambda message: message.type == "error" and page_errors.append(message.text),
        )

        await page.goto("/instances")
        throughput = page.locator("#chart-throughput")
        await expect(throughput.locator("svg desc")).to_have_text(
            "4 completed and 2 failed runs in the last hour."
        )
        assert await throughput.locator("g.mark").count() == 60, "one group per minute"
        assert await throughput.locator("rect.failed").count() >= 1
        await _chart_is_drawn(page, "throughput", screenshot_dir / f"{kind}-chart-throughput.png")
        # still drawn after htmx replaced the live fragment (it polls every 2 s)
        await page.evaluate("document.querySelector('#chart-throughput').dataset.stale = 'yes'")
        await expect(page.locator("#chart-throughput:not([data-stale])")).to_have_count(1)
        await _chart_is_drawn(page, "throughput", screenshot_dir / f"{kind}-chart-throughput.png")

        await page.click("a[data-window=day]")
        await expect(page.locator("#chart-throughput g.mark")).to_have_count(24)
        await _chart_is_drawn(page, "throughput", screenshot_dir / f"{kind}-chart-day.png")

        await page.goto("/tasks")
        later = page.locator('#chart-queues g.mark[data-key="later"]')
        await expect(later.locator("title")).to_have_text("later: 4 queued, 0 running")
        await _chart_is_drawn(page, "queues", screenshot_dir / f"{kind}-chart-queues.png")

        await page.goto("/instances/shipping/s-3")
        timeline = page.locator("#chart-timeline")
        await expect(timeline.locator('g.mark[data-key="run"] rect.failed')).to_have_count(1)
        await expect(timeline.locator('g.mark[data-key="ship"] rect.completed')).to_have_count(1)
        await expect(timeline.locator('g.mark[data-key="events"]')).to_have_count(2)
        # the finished task is a bar from its enqueue to its result, wider than an event's mark
        ship = timeline.locator('g.mark[data-key="ship"]')
        await expect(ship.locator("title")).to_contain_text("ship success after 1 attempt")
        ship_box = await ship.locator("rect").bounding_box()
        mark_box = await timeline.locator('g.mark[data-key="events"] rect').first.bounding_box()
        assert ship_box is not None and mark_box is not None
        assert ship_box["width"] > mark_box["width"], (ship_box, mark_box)
        # the last time label is drawn whole, inside the chart's right edge
        svg_box = await timeline.locator("svg").bounding_box()
        last_label = await timeline.locator("svg text.axis").last.bounding_box()
        assert svg_box is not None and last_label is not None
        assert last_label["x"] + last_label["width"] <= svg_box["x"] + svg_box["width"]
        await _chart_is_drawn(page, "timeline", screenshot_dir / f"{kind}-chart-timeline.png")

        await page.goto("/instances/wf/big")  # a live run: its queued tasks are bars up to now
        await expect(page.locator("#chart-timeline rect.queued")).to_have_count(4)
        await _chart_is_drawn(page, "timeline", screenshot_dir / f"{kind}-chart-live.png")
        await page.screenshot(
            path=str(screenshot_dir / f"{kind}-instance-live.png"), full_page=True
        )
        assert page_errors == []
