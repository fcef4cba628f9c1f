"""The dashboard's dead letters page: over HTTP (access, CSRF, input) and in headless Chromium.

A real uvicorn serves a real store (SQLite, and PostgreSQL in the browser
test); a started Manager runs the requeued work, so the test sees a requeued
task reach its workflow and a requeued run complete.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cereal import Decision, Manager, Task, WorkflowInstance
from cereal.models import FailureDetails, NewTask
from tests.dashboard.conftest import TOKEN, StoreFactory, build_store
from tests.dashboard.test_http import Visitor
from tests.plugins.manager import eventually, wait_finished

ODD = 'it\'s <b>"odd"</b> ünï/cødé ✓'


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return build_store(request.param, tmp_path, request)


async def _seed(store_factory: StoreFactory, instance: str = "live") -> tuple[str, str]:
    """A live run ``orders/<instance>`` whose ``charge`` task died, and a failed run
    ``orders/bad``; their task id and run id."""
    driver = store_factory()
    await driver.init()
    try:
        await driver.enqueue_workflow("orders", instance, b'{"amount": 12}')
        _, decision = await driver.dequeue_workflow(["orders"])
        async with decision:
            await decision.continue_(None, [NewTask("charge", b'{"amount": 12}')])
        [(task, lease)] = await driver.dequeue_tasks("charge", 1, task_expiry=3600)
        await lease.fail_with_details(
            FailureDetails("card <declined>", "ValueError", "Traceback...\nValueError: card")
        )
        _, decision = await driver.dequeue_workflow(["orders"])
        async with decision:  # the failure reaches the run, which waits
            await decision.continue_(b'"waiting"', [])
        await driver.enqueue_workflow("orders", "bad", b'{"amount": 3}')
        _, decision = await driver.dequeue_workflow(["orders"])
        async with decision:
            await decision.fail("malformed order")
        [run] = await driver.list_failed_runs()
        return task.metadata.task_id, run.run_id
    finally:
        await driver.close()


class Orders:
    """Charges once at start; completes with the charge's result, waits after a failure."""

    def on_start(self, w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("charge", w.get_parameters())
        return w.continue_("charging")

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        if ev.result.err() is not None:
            return w.continue_("waiting")
        return w.complete(ev.result.get())

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


def charge(task: Task) -> str:
    return f"charged {task.get_parameters()['amount']}"


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
async def test_requeue_needs_a_login_and_the_csrf_token(
    serve: Any, seed: Manager, store_factory: StoreFactory
) -> None:
    task_id, run_id = await _seed(store_factory)
    with serve(token=None) as base:
        visitor = Visitor(base)
        status, page = visitor.get("/dead-letters")
        assert status == 200
        assert f'data-dead-task="{task_id}"' in page and f'data-failed-run="{run_id}"' in page
        assert "ValueError: card &lt;declined&gt;" in page  # escaped
        assert "data-action" not in page and 'type="checkbox"' not in page
        posted = visitor.post("/actions/requeue/dead-tasks", {"csrf": "x", "id": task_id})
        assert posted[0] == 403
    with serve() as base:
        visitor = Visitor(base)
        assert visitor.post("/actions/requeue/dead-tasks", {"id": task_id})[0] == 403
        visitor.log_in(TOKEN)
        assert (
            visitor.post("/actions/requeue/dead-tasks", {"id": task_id, "csrf": "forged"})[0] == 403
        )
        assert visitor.post("/actions/requeue/nothing", {"csrf": visitor.csrf()})[0] == 404
    # nothing was requeued by the refused posts
    assert [d.task_id for d in await seed.list_dead_tasks()] == [task_id]
    assert [r.run_id for r in await seed.list_failed_runs()] == [run_id]


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
async def test_requeue_many_says_what_happened_to_each(
    serve: Any, seed: Manager, store_factory: StoreFactory
) -> None:
    task_id, run_id = await _seed(store_factory)
    with serve() as base:
        visitor = Visitor(base)
        visitor.log_in(TOKEN)
        csrf = visitor.csrf("/dead-letters")
        body = f"csrf={csrf}&id={task_id}&id=424242&next=/dead-letters"
        status, page = visitor.post_raw("/actions/requeue/dead-tasks", body)
        assert status == 200
        assert "requeued 1 task(s); not requeued: 424242 (not_found)" in page
        status, page = visitor.post(
            "/actions/requeue/failed-runs", {"csrf": csrf, "id": run_id, "next": "/dead-letters"}
        )
        assert "requeued 1 run(s)" in page
        assert "No dead tasks." in page and "No failed runs." in page
        status, page = visitor.post("/actions/requeue/dead-tasks", {"csrf": csrf})
        assert "tick at least one task to requeue" in page
        status, page = visitor.post(
            "/actions/requeue/dead-tasks", {"csrf": csrf, "id": "not-an-id"}
        )
        assert "requeue failed: not a task id: 'not-an-id'" in html.unescape(page)
        assert visitor.get("/dead-letters?tasks_before=x")[0] == 400
        assert visitor.get("/dead-letters?task=%00")[0] == 400
    assert len(await seed.list_tasks("charge")) == 1


async def test_requeue_from_the_browser_finishes_the_runs(
    request: pytest.FixtureRequest,
    serve: Any,
    seed: Manager,
    store_factory: StoreFactory,
    worker_factory: Callable[..., Manager],
    browser: Any,
    screenshot_dir: Path,
) -> None:
    expect = pytest.importorskip("playwright.async_api").expect
    kind = request.node.callspec.params["store_factory"]
    task_id, run_id = await _seed(store_factory, ODD)
    with serve() as base:
        page = await browser.new_page(base_url=base)
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.on(
            "console",
            lambda message: message.type == "error" and page_errors.append(message.text),
        )
        await page.goto("/login")
        await page.fill("input[name=token]", TOKEN)
        await page.click("#login-form button")
        await page.get_by_role("link", name="Dead letters").click()
        dead_row = page.locator(f'tr[data-dead-task="{task_id}"]')
        await expect(dead_row).to_contain_text("ValueError: card <declined>")
        await expect(dead_row).to_contain_text(ODD)
        await dead_row.locator("summary").click()
        await expect(dead_row.locator("pre")).to_contain_text("ValueError: card")
        await page.screenshot(path=str(screenshot_dir / f"{kind}-dead-letters.png"), full_page=True)

        # start the fixed worker, then requeue the task and the run from the page
        worker = worker_factory()
        worker.register_workflow_executor("orders", Orders())
        worker.register_task_executor("charge", charge)
        await worker.start()
        await dead_row.get_by_role("checkbox").check()
        await page.click("[data-action=requeue-dead-tasks]")
        await expect(page.locator("#flash")).to_have_text("requeued 1 task(s)")
        await page.locator(f'tr[data-failed-run="{run_id}"]').get_by_role("checkbox").check()
        await page.click("[data-action=requeue-failed-runs]")
        await expect(page.locator("#flash")).to_have_text("requeued 1 run(s)")
        await expect(page.locator("#dead-tasks")).to_contain_text("No dead tasks.")
        await expect(page.locator("#failed-runs")).to_contain_text("No failed runs.")
        assert page_errors == []

    # the requeued task reached its waiting run, and the requeued run charged and completed
    assert (await wait_finished(seed, "orders", ODD)).get_result() == "charged 12"
    assert (await wait_finished(seed, "orders", "bad")).get_result() == "charged 3"

    async def no_dead_left() -> bool:
        return await seed.list_dead_tasks() == []

    await eventually(no_dead_left, what="no dead tasks")
