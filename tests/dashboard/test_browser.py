"""The dashboard end to end in headless Chromium, on a real SQLite and a real PostgreSQL store.

A real worker (a started Manager) runs the workflows, the dashboard runs in
real uvicorn, and Playwright clicks through every page: list, detail, cancel,
kill, enable and disable (and trigger, when the Manager can), checking both
what the page shows (updated live by htmx polling) and what the store holds.
A screenshot of each page lands in test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cereal import Decision, Manager, WorkflowInstance, errors
from tests.dashboard.conftest import TOKEN, StoreFactory, build_store, run_with_completions
from tests.plugins.manager import eventually

expect: Any = pytest.importorskip("playwright.async_api").expect
expect.set_options(timeout=15_000)

# first due far ahead, so the worker's scheduler never starts it by itself
FAR_DAILY = "DTSTART:20990101T000000Z\nRRULE:FREQ=DAILY"
ODD = 'quote\'s "double" <script>window.__pwned = 1</script> ünï/cødé ✓'


class Orders:
    """Starts one task that no worker runs, so the instance stays live; fails when cancelled."""

    def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("pack", {"box": w.get_parameters()})
        return w.continue_({"stage": "packing"})

    def on_task_complete(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.continue_(w.get_payload())

    def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled from the dashboard")


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return build_store(request.param, tmp_path, request)


async def _started(manager: Manager, name: str) -> bool:
    return bool(await manager.list_instance_tasks("orders", name))


async def test_dashboard_end_to_end(
    request: pytest.FixtureRequest,
    serve: Any,
    seed: Manager,
    worker_factory: Callable[..., Manager],
    browser: Any,
    screenshot_dir: Path,
) -> None:
    kind = request.node.callspec.params["store_factory"]
    worker = worker_factory()
    worker.register_workflow_executor("orders", Orders())
    await worker.start()
    for number, name in enumerate(["o-1", "o-2", ODD]):
        await seed.enqueue_workflow("orders", name, number)
        await eventually(lambda name=name: _started(seed, name), what=f"{name} started")
    await seed.create_workflow_schedule("orders", "nightly", {"from": "schedule"}, FAR_DAILY)

    with serve() as base:
        page = await browser.new_page(base_url=base)
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        # console errors include Content-Security-Policy violations (e.g. an inline style)
        page.on(
            "console",
            lambda message: message.type == "error" and page_errors.append(message.text),
        )

        async def shot(name: str) -> None:
            await page.screenshot(path=str(screenshot_dir / f"{kind}-{name}.png"), full_page=True)

        # the listing, live: an instance enqueued now shows up without a reload
        await page.goto("/instances")
        await expect(page.get_by_role("link", name="o-1", exact=True)).to_be_visible()
        assert await page.locator("[data-action]").count() == 0, "buttons before logging in"
        await seed.enqueue_workflow("orders", "o-3", 3)
        await expect(page.get_by_role("link", name="o-3", exact=True)).to_be_visible()
        await shot("instances")

        # log in once with the token
        await page.goto("/login")
        await shot("login")
        await page.fill("input[name=token]", TOKEN)
        await page.click("#login-form button")
        await expect(page.locator("#flash")).to_have_text("logged in")
        await expect(page.locator("[data-action=instance-kill]").first).to_be_visible()

        # detail, then cancel: the worker's on_cancel fails it, and the page shows it live
        await page.get_by_role("link", name="o-1", exact=True).click()
        await expect(page.locator("#instance-name")).to_have_text("o-1")
        await expect(page.locator("#tasks")).to_contain_text("pack")
        await expect(page.locator("#payload")).to_contain_text('"stage": "packing"')
        await expect(page.locator("#parameters")).to_have_text("0")
        # the start event stays in the history once the workflow handled it
        start_row = page.locator("#events tbody tr").first
        await expect(start_row).to_contain_text("start")
        await expect(start_row).to_contain_text("handled")
        await shot("instance")
        await page.click("[data-action=instance-cancel]")
        await expect(page.locator("#flash")).to_have_text("cancel requested for orders/o-1")
        await expect(page.locator("#error")).to_have_text("cancelled from the dashboard")
        await expect(page.locator("#tasks")).to_contain_text("No queued or running tasks")
        # the finished run's history, newest first: the cancel, then the start, both handled
        await expect(page.locator("#events tbody tr")).to_have_count(2)
        await expect(page.locator("#events tbody tr").first).to_contain_text("cancel")
        await expect(page.locator("#events tbody tr").first).to_contain_text("handled")
        await expect(page.locator("#events tbody tr").nth(1)).to_contain_text("start")
        await expect(page.locator("[data-action]")).to_have_count(0)
        with pytest.raises(errors.WorkflowFailedError, match="cancelled from the dashboard"):
            (await seed.get_workflow_instance("orders", "o-1")).get_result()

        # kill from the listing
        await page.goto("/instances?workflow=orders&status=running")
        row = page.locator("tr", has=page.get_by_role("link", name="o-2", exact=True))
        await row.locator("[data-action=instance-kill]").click()
        await expect(page.locator("#flash")).to_have_text("killed orders/o-2")
        await expect(page.get_by_role("link", name="o-2", exact=True)).to_have_count(0)
        with pytest.raises(errors.WorkflowFailedError, match="killed"):
            (await seed.get_workflow_instance("orders", "o-2")).get_result()

        # a name with quotes, markup and unicode: shown as text, and its link works
        await page.get_by_role("link", name=ODD, exact=True).click()
        await expect(page.locator("#instance-name")).to_have_text(ODD)
        assert await page.evaluate("window.__pwned === undefined"), "the name ran as script"

        # schedules: disable, enable (and trigger when the Manager can)
        await page.goto("/schedules")
        schedule = page.locator('tr[data-schedule="orders/nightly"]')
        await expect(schedule.locator(".enabled")).to_have_text("yes")
        await expect(schedule).to_contain_text("2099-01-01 00:00:00Z")
        await schedule.locator("[data-action=schedule-disable]").click()
        await expect(page.locator("#flash")).to_have_text("disabled orders/nightly")
        await expect(schedule.locator(".enabled")).to_have_text("no")
        assert not (await seed.get_workflow_schedule("orders", "nightly")).enabled
        await schedule.locator("[data-action=schedule-enable]").click()
        await expect(schedule.locator(".enabled")).to_have_text("yes")
        assert (await seed.get_workflow_schedule("orders", "nightly")).enabled
        trigger = schedule.locator("[data-action=schedule-trigger]")
        assert not await _started(seed, "nightly")
        await trigger.click()
        await expect(page.locator("#flash")).to_have_text("triggered orders/nightly")
        await eventually(lambda: _started(seed, "nightly"), what="triggered run started")
        await shot("schedules")

        # task queues: o-3's and the odd instance's "pack" tasks wait (nobody runs them)
        await page.goto("/tasks")
        pack = page.locator("#queues tr", has_text="pack")
        await expect(pack).to_contain_text("ago")
        stats = {s.task_name: s for s in await seed.task_queue_stats()}
        await expect(pack.locator("td").nth(1)).to_have_text(str(stats["pack"].queued))
        await shot("tasks")

        await page.goto("/workers")
        await expect(page.locator("#workers")).to_be_visible()
        live = await seed.list_workers()
        assert live, "the test's worker is started and registered"
        await expect(page.locator("#workers tbody")).to_contain_text(str(live[0].pid))
        await shot("workers")

        # logging out hides the buttons again
        await page.goto("/instances")
        await page.click("#logout")
        await expect(page.locator("#login-link")).to_be_visible()
        await expect(page.locator("[data-action]")).to_have_count(0)
        await page.close()
    assert page_errors == []


async def test_older_links_page_back_through_a_long_history(
    serve: Any, store_factory: StoreFactory, browser: Any
) -> None:
    await run_with_completions(store_factory, completed=70, left=0)
    with serve(token=None) as base:
        page = await browser.new_page(base_url=base)
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.on(
            "console",
            lambda message: message.type == "error" and page_errors.append(message.text),
        )
        await page.goto("/instances/wf/big")
        rows = page.locator("#events tbody tr")
        await expect(rows).to_have_count(50)  # of 71, newest first
        newest = int(await rows.first.locator("td").first.inner_text())
        await page.click("#events-older")
        await expect(page).to_have_url(
            f"{base}/instances/wf/big?tasks_before=&events_before={newest - 49}"
        )
        await expect(rows).to_have_count(21)
        await expect(rows.first.locator("td").first).to_have_text(str(newest - 50))
        await expect(page.locator("#events-older")).to_have_count(0)
        # the live poll now refreshes this older page (50 rows at most), not the history
        async with page.expect_request(
            lambda sent: sent.headers.get("hx-request") == "true" and "events_before=" in sent.url,
            timeout=15_000,
        ):
            pass
        await expect(rows).to_have_count(21)
        await page.click("#events-newest")
        await expect(rows).to_have_count(50)
        await page.close()
    assert page_errors == []
