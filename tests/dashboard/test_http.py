"""The dashboard over HTTP (real uvicorn, SQLite store): access rules, input, escaping, paging.

The browser tests (test_browser.py) cover the same pages in Chromium; these
check what a browser cannot easily show: status codes of refused requests.
"""

from __future__ import annotations

import asyncio
import html
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cereal import (
    Decision,
    Manager,
    RateLimit,
    RetryPolicy,
    Task,
    TaskCompleteEvent,
    WorkflowInstance,
    errors,
)
from cereal.dashboard._paths import segment
from cereal.models import HistoryRetention, WorkflowRetention
from tests._poisoned import lose_a_task_to_a_bad_policy
from tests._waiting import wait_until
from tests.dashboard.conftest import StoreFactory, build_store, run_with_completions

ODD = 'it\'s "odd" <script>alert(1)</script> & ünï/cødé 100% ✓'


@pytest.fixture
def store_factory(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    return build_store("sqlite", tmp_path, request)


class Visitor:
    """A cookie-keeping HTTP client that reads status codes instead of raising."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return self._send(urllib.request.Request(self.base + path, headers=headers or {}))

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        return self.post_raw(path, urllib.parse.urlencode(fields))

    def post_raw(self, path: str, body: str) -> tuple[int, str]:
        """POST an encoded form body as given (a field may repeat: ``id=1&id=2``)."""
        data = body.encode()
        return self._send(urllib.request.Request(self.base + path, data=data, method="POST"))

    def _send(self, request: urllib.request.Request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def csrf(self, path: str = "/login") -> str:
        status, page = self.get(path)
        assert status == 200, page
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, "no CSRF field on the page"
        return found.group(1)

    def log_in(self, token: str) -> tuple[int, str]:
        return self.post("/login", {"csrf": self.csrf(), "token": token})


def _instance_path(workflow: str, instance: str) -> str:
    return f"/instances/{segment(workflow)}/{segment(instance)}"


async def _is_live(manager: Manager, workflow: str, instance: str) -> bool:
    return (await manager.get_workflow_instance(workflow, instance)).is_running()


async def test_without_a_token_the_dashboard_is_read_only(serve: Any, seed: Manager) -> None:
    await seed.enqueue_workflow("wf", "one", None)
    await seed.create_workflow_schedule("wf", "nightly", None, "FREQ=DAILY")
    with serve(token=None) as base:
        visitor = Visitor(base)
        status, page = visitor.get("/instances")
        assert status == 200
        assert "one" in page and "read-only" in page
        assert "data-action" not in page
        assert "data-action" not in visitor.get("/schedules")[1]
        assert 'id="read-only-note"' in visitor.get("/login")[1]
        csrf = "no form shows one: nothing can be posted"
        for action in ("instance/cancel/wf/one", "instance/kill/wf/one"):
            status, page = visitor.post(f"/actions/{action}", {"csrf": csrf})
            assert status == 403
            assert "read-only" in page
        status, _ = visitor.post("/actions/schedule/disable/wf/nightly", {"csrf": csrf})
        assert status == 403
        assert visitor.post("/login", {"csrf": csrf, "token": ""})[0] == 403
    assert await _is_live(seed, "wf", "one")
    assert (await seed.get_workflow_schedule("wf", "nightly")).enabled


async def test_a_wrong_token_is_refused_and_grants_nothing(serve: Any, seed: Manager) -> None:
    await seed.enqueue_workflow("wf", "one", None)
    with serve() as base:
        visitor = Visitor(base)
        status, page = visitor.log_in("not-the-token")
        assert status == 403
        assert 'id="login-failed"' in page
        status, page = visitor.post("/actions/instance/kill/wf/one", {"csrf": visitor.csrf()})
        assert status == 403
        assert "log in" in page
        assert "data-action" not in visitor.get("/instances")[1]
    assert await _is_live(seed, "wf", "one")


async def test_actions_need_the_session_csrf_token(serve: Any, seed: Manager) -> None:
    await seed.enqueue_workflow("wf", "one", None)
    with serve() as base:
        visitor = Visitor(base)
        status, _ = visitor.log_in("s3cret-token")
        assert status == 200
        assert visitor.post("/actions/instance/kill/wf/one", {})[0] == 403
        assert visitor.post("/actions/instance/kill/wf/one", {"csrf": "forged"})[0] == 403
        # a login posted from elsewhere (no CSRF field) is refused too
        assert Visitor(base).post("/login", {"token": "s3cret-token"})[0] == 403
        assert await _is_live(seed, "wf", "one")

        status, page = visitor.post(
            "/actions/instance/kill/wf/one", {"csrf": visitor.csrf(), "next": "/instances"}
        )
        assert status == 200
        assert "killed wf/one" in page
    with pytest.raises(errors.WorkflowFailedError, match="killed"):
        (await seed.get_workflow_instance("wf", "one")).get_result()


async def test_an_action_that_fails_says_why_and_changes_nothing(serve: Any, seed: Manager) -> None:
    with serve() as base:
        visitor = Visitor(base)
        visitor.log_in("s3cret-token")
        status, page = visitor.post("/actions/instance/cancel/wf/ghost", {"csrf": visitor.csrf()})
        assert status == 200
        assert "instance/cancel wf/ghost failed" in page
        assert visitor.post("/actions/instance/explode/wf/x", {"csrf": visitor.csrf()})[0] == 404
        assert visitor.post("/actions/instance/kill/wf", {"csrf": visitor.csrf()})[0] == 404
        # an off-site "next" is ignored: the redirect stays on the dashboard
        for off_site in ("//evil.example/", "/\\evil.example/", "https://evil.example/"):
            status, page = visitor.post(
                "/actions/instance/cancel/wf/ghost", {"csrf": visitor.csrf(), "next": off_site}
            )
            assert status == 200 and 'id="instances"' in page, off_site
        status, page = visitor.post(
            "/actions/instance/cancel/wf/ghost", {"csrf": visitor.csrf(), "next": "/schedules"}
        )
        assert status == 200 and 'id="schedules"' in page


async def test_odd_names_are_escaped_and_round_trip_through_the_url(
    serve: Any, seed: Manager
) -> None:
    await seed.enqueue_workflow("w/f <b>", ODD, {"note": "<img src=x onerror=alert(1)>"})
    with serve() as base:
        visitor = Visitor(base)
        status, page = visitor.get("/instances")
        assert status == 200
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<b>" not in page
        link = _instance_path("w/f <b>", ODD)
        assert f'href="{link}"' in page

        status, page = visitor.get(link)
        assert status == 200
        assert "<script>alert(1)</script>" not in page
        assert "<img src=x" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
        assert "&#39;s &#34;odd&#34;" in page

        status, page = visitor.get(link, headers={"HX-Request": "true"})
        assert status == 200
        assert page.lstrip().startswith('<section id="instance">')  # the fragment alone


async def test_bad_input_gets_a_clear_error(serve: Any, seed: Manager) -> None:
    with serve() as base:
        visitor = Visitor(base)
        checks = {
            "/instances?status=bogus": "unknown status",
            "/instances?limit=0": "limit must be from 1 to 500",
            "/instances?offset=-3": "offset must be at least 0",
            "/instances?offset=ten": "offset must be a whole number",
            "/instances?workflow=%07bell": "control character",
            "/instances?window=month": "unknown window &#39;month&#39;: use hour, day or week",
        }
        for path, message in checks.items():
            status, page = visitor.get(path)
            assert status == 400, path
            assert message in page, (path, page)
        status, page = visitor.get(_instance_path("wf", "never-enqueued"))
        assert status == 404
        assert "no instance wf/never-enqueued" in page
        assert visitor.get("/instances/only-one-segment")[0] == 404
        assert visitor.get("/instances/wf/%FF%FE")[0] == 404


async def test_paging_and_filters_are_done_by_the_store(serve: Any, seed: Manager) -> None:
    for name in ("a", "b", "c"):
        await seed.enqueue_workflow("wf", name, None)
    await seed.enqueue_workflow("other", "z", None)
    await seed.kill_workflow("wf", "c")
    with serve() as base:
        visitor = Visitor(base)
        # newest first: by start time
        _, first = visitor.get("/instances?workflow=wf&limit=2")
        assert _names(first) == ["c", "b"]
        assert 'id="next-page"' in first
        _, second = visitor.get("/instances?workflow=wf&limit=2&offset=2")
        assert _names(second) == ["a"]
        assert 'id="next-page"' not in second and 'id="previous-page"' in second
        _, running = visitor.get("/instances?status=running")
        assert _names(running) == ["z", "b", "a"]
        _, finished = visitor.get("/instances?status=finished")
        assert _names(finished) == ["c"]


def _names(page: str) -> list[str]:
    return re.findall(r'class="instance-link"[^>]*>([^<]*)<', page)


async def test_live_workers_page_lists_none_when_no_manager_runs(serve: Any, seed: Manager) -> None:
    with serve() as base:
        status, page = Visitor(base).get("/workers")
    assert status == 200
    assert 'id="workers"' in page
    assert "No live workers." in page


async def test_static_htmx_is_served_from_the_package(serve: Any, seed: Manager) -> None:
    with serve() as base:
        status, script = Visitor(base).get("/static/htmx.min.js")
    assert status == 200
    assert script.startswith("/*! htmx 2.")
    assert "Zero-Clause BSD" in script.splitlines()[0]


async def test_metrics_show_the_store_queues(serve: Any, seed: Manager) -> None:
    # Given two instances of one workflow waiting (no worker runs here)
    await seed.enqueue_workflow("metered", "m-1", 1)
    await seed.enqueue_workflow("metered", "m-2", 2)
    # When Prometheus scrapes the dashboard
    with serve() as base:
        status, body = Visitor(base).get("/metrics")
    # Then the queue gauges come from the store
    assert status == 200
    depth = re.search(r'^cereal_workflow_queue_depth\{workflow="metered"\} (\S+)$', body, re.M)
    assert depth is not None, body
    assert float(depth.group(1)) == 2.0
    assert re.search(
        r'^cereal_workflow_queue_oldest_age_seconds\{workflow="metered"\} ', body, re.M
    )


class _FailsOnATask:
    """Runs one task that raises; the workflow fails with the task's error."""

    def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("explode")
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        ev.result.get()  # raises the task's failure: the callback's failure fails the run
        return w.complete()

    def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled")


def _explode(task: object) -> None:
    raise KeyError("no such shelf")


async def test_a_failed_run_shows_its_exception_type_and_traceback(
    serve: Any, seed: Manager, worker_factory: Any
) -> None:
    # Given a run failed by a task that raised
    worker = worker_factory()
    worker.register_workflow_executor("shelves", _FailsOnATask())
    worker.register_task_executor("explode", _explode)
    await worker.start()
    await seed.enqueue_workflow("shelves", "s-1")
    await wait_until(
        lambda: _is_finished(seed, "shelves", "s-1"), what="the run failed", timeout=30
    )
    # When its page is opened
    with serve() as base:
        status, page = Visitor(base).get(_instance_path("shelves", "s-1"))
    # Then the error, its type and its traceback are shown
    assert status == 200
    assert re.search(r'id="error-type">KeyError<', page), page
    traceback = re.search(r'id="error-traceback">(.*?)</pre>', page, re.S)
    assert traceback is not None
    assert "_explode" in traceback.group(1)
    assert "no such shelf" in traceback.group(1)
    # and the event history keeps the events the workflow handled, oldest first
    table = re.search(r'<table id="events">(.*?)</table>', page, re.S)
    assert table is not None
    rows = [
        [
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
        if "<td>" in row
    ]
    assert [row[1:4] + row[5:] for row in rows] == [  # newest first
        ["task_complete", "explode", "failed: 'no such shelf'", "handled"],
        ["start", "", "", "handled"],
    ], rows
    assert all(row[4] for row in rows), "an event without its enqueue time"


async def _is_finished(manager: Manager, workflow: str, instance: str) -> bool:
    return not (await manager.get_workflow_instance(workflow, instance)).is_running()


class _OneTask:
    """Runs one "flaky" task and completes with its result."""

    def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("flaky")
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        return w.complete(ev.result.get())

    def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled")


async def test_a_retried_task_shows_the_attempt_it_is_on(
    serve: Any, seed: Manager, worker_factory: Any
) -> None:
    # Given a task whose first attempt fails and whose second waits for the test
    second_attempt = asyncio.Event()
    release = asyncio.Event()

    async def flaky(task: Task) -> str:
        if task.metadata.attempt == 1:
            raise RuntimeError("first attempt fails")
        second_attempt.set()
        await release.wait()
        return "ok"

    worker = worker_factory()
    worker.register_workflow_executor("retrying", _OneTask())
    worker.register_task_executor(
        "flaky", flaky, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01)
    )
    await worker.start()
    await seed.enqueue_workflow("retrying", "r-1")
    await asyncio.wait_for(second_attempt.wait(), timeout=30)
    # When the instance's page is opened during the second attempt
    with serve() as base:
        status, page = await asyncio.to_thread(Visitor(base).get, _instance_path("retrying", "r-1"))
    release.set()
    # Then its task row shows it running as attempt 2
    assert status == 200
    row = re.search(r"<td>flaky</td><td>running</td>\s*<td>(\d+)</td>", page)
    assert row is not None, page
    assert row.group(1) == "2"
    await wait_until(
        lambda: _is_finished(seed, "retrying", "r-1"), what="the run ended", timeout=30
    )
    assert (await seed.get_workflow_instance("retrying", "r-1")).get_result() == "ok"


class _KeyedTasks:
    """Two "charge" tasks under one concurrency key (limit 1); no worker runs them."""

    def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        for n in range(2):
            w.enqueue_task("charge", n, concurrency_key="customer <7>", concurrency_limit=1)
        w.enqueue_task(
            "charge",
            2,
            concurrency_key="api",
            rate_limit=RateLimit(5, 60),
            priority=4,
            idempotency_key="charge <2>",
        )
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        return w.continue_()

    def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled")


async def test_an_instance_page_shows_each_tasks_concurrency_key(
    serve: Any, seed: Manager, worker_factory: Any
) -> None:
    worker = worker_factory()
    worker.register_workflow_executor("billing", _KeyedTasks())
    await worker.start()
    await seed.enqueue_workflow("billing", "b-1")

    async def enqueued() -> bool:
        return len(await seed.list_instance_tasks("billing", "b-1")) == 3

    await wait_until(enqueued, what="the keyed tasks enqueued", timeout=30)
    with serve() as base:
        status, page = await asyncio.to_thread(Visitor(base).get, _instance_path("billing", "b-1"))
    assert status == 200
    assert "<th>Concurrency key</th>" in page
    # escaped, with its limit
    assert page.count('customer &lt;7&gt; <span class="muted">(at most 1)</span>') == 2
    assert 'api <span class="muted">(5 starts per 60 s)</span>' in page
    assert "<th>Priority</th>" in page
    assert page.count('<td class="priority">4</td>') == 1
    assert page.count('<td class="priority">0</td>') == 2
    assert "<th>Idempotency key</th>" in page
    assert page.count('<td class="idempotency-key">charge &lt;2&gt;</td>') == 1
    assert page.count('<td class="idempotency-key">-</td>') == 2


async def test_a_task_lost_to_an_invalid_retry_policy_shows_why(serve: Any, tmp_path: Path) -> None:
    # Given a task a sweep reported LOST because its stored retry policy was invalid
    await lose_a_task_to_a_bad_policy(str(tmp_path / "cereal.db"), "orders", "o-1")
    # When its instance's page is opened
    with serve() as base:
        status, page = await asyncio.to_thread(Visitor(base).get, _instance_path("orders", "o-1"))
    # Then the event history shows the LOST outcome with the reason
    assert status == 200
    table = re.search(r'<table id="events">(.*?)</table>', page, re.S)
    assert table is not None, page
    assert "lost: invalid retry policy: max_attempts must be an int, got float" in html.unescape(
        table.group(1)
    )


async def test_a_request_for_another_host_name_is_refused_without_data(
    serve: Any, seed: Manager
) -> None:
    # DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as Host
    await seed.enqueue_workflow("wf", "secret-instance", None)
    with serve(token=None) as base:
        visitor = Visitor(base)
        port = base.rsplit(":", 1)[1]
        for path in ("/instances", "/instances/wf/secret-instance", "/metrics", "/login"):
            status, page = visitor.get(path, headers={"Host": f"attacker.example:{port}"})
            assert status == 400, path
            assert "secret-instance" not in page
        for name in ("127.0.0.1", "localhost", "[::1]", "LocalHost"):
            status, page = visitor.get("/instances", headers={"Host": f"{name}:{port}"})
            assert status == 200, name
            assert "secret-instance" in page


async def test_names_the_user_allows_pass_the_host_check(
    store_factory: StoreFactory, seed: Manager
) -> None:
    from tests.dashboard.conftest import serving

    await seed.enqueue_workflow("wf", "one", None)
    with serving(store_factory, token=None, allowed_hosts=["dash.example.org"]) as base:
        visitor = Visitor(base)
        assert visitor.get("/instances", headers={"Host": "dash.example.org"})[0] == 200
        assert visitor.get("/instances")[0] == 200  # the bound address still works
        assert visitor.get("/instances", headers={"Host": "evil.example.org"})[0] == 400


def _rows(page: str, table: str) -> list[str]:
    body = page.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    return re.findall(
        r"<tr(?: class=\"pending\")?>\s*<td>([^<]*)</td>", body.split("<tbody>", 1)[1]
    )


def _link(page: str, link_id: str) -> str | None:
    found = re.search(rf'<a id="{link_id}" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


async def test_an_instance_page_shows_a_bounded_newest_page_of_events_and_tasks(
    serve: Any, store_factory: StoreFactory
) -> None:
    await run_with_completions(store_factory, completed=4000, left=120)
    with serve(token=None) as base:
        visitor = Visitor(base)
        status, page = visitor.get("/instances/wf/big")
        assert status == 200
        events = _rows(page, "events")
        assert len(events) == 50  # of 4001: the start and 4000 completions
        assert [int(seq) for seq in events] == sorted((int(s) for s in events), reverse=True)
        assert len(_rows(page, "tasks")) == 50  # of 120 queued
        assert len(page) < 60_000, len(page)
        # the 2 s poll re-sends the same bounded page, not the history
        status, fragment = visitor.get("/instances/wf/big", headers={"HX-Request": "true"})
        assert status == 200
        assert _rows(fragment, "events") == events
        assert len(fragment) < 60_000

        # "older" walks back without skipping or repeating
        seen = list(events)
        older = _link(page, "events-older")
        pages = 1
        while older is not None and pages < 4:
            status, page = visitor.get(older)
            assert status == 200
            rows = _rows(page, "events")
            assert len(rows) == 50
            assert int(rows[0]) < int(seen[-1])
            seen.extend(rows)
            older = _link(page, "events-older")
            pages += 1
        assert len(set(seen)) == len(seen) == 200
        assert _link(page, "events-newest") is not None

        tasks = _rows(visitor.get("/instances/wf/big")[1], "tasks")
        status, page = visitor.get(_link(visitor.get("/instances/wf/big")[1], "tasks-older") or "")
        more = _rows(page, "tasks")
        assert len(more) == 50 and int(more[0]) < int(tasks[-1])
        status, page = visitor.get(_link(page, "tasks-older") or "")
        assert len(_rows(page, "tasks")) == 20
        assert _link(page, "tasks-older") is None
        assert visitor.get("/instances/wf/big?events_before=x")[0] == 400
        assert visitor.get("/instances/wf/big?tasks_before=x")[0] == 400


async def test_beyond_loopback_reads_need_the_login_too(
    store_factory: StoreFactory, seed: Manager
) -> None:
    from tests.dashboard.conftest import TOKEN, serving

    await seed.enqueue_workflow("wf", "secret-instance", None)
    with serving(store_factory, token=TOKEN, login_to_read=True) as base:
        visitor = Visitor(base)
        for path in ("/instances", "/instances/wf/secret-instance", "/tasks", "/metrics"):
            status, page = visitor.get(path)  # the redirect lands on the login page
            assert status == 200 and 'id="login-form"' in page, path
            assert "secret-instance" not in page
        status, page = visitor.get("/instances", headers={"HX-Request": "true"})
        assert status == 401 and "secret-instance" not in page
        assert visitor.get("/static/htmx.min.js")[0] == 200
        status, page = visitor.get("/instances", headers={"Authorization": "Bearer wrong"})
        assert "secret-instance" not in page
        status, page = visitor.get("/instances", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and "secret-instance" in page

        assert visitor.log_in(TOKEN)[0] == 200
        status, page = visitor.get("/instances/wf/secret-instance")
        assert status == 200 and "secret-instance" in page


def test_a_login_to_read_needs_a_token(seed: Manager) -> None:
    from cereal.dashboard import create_app

    with pytest.raises(ValueError, match="needs a token"):
        create_app(seed, token=None, login_to_read=True)


async def test_an_instance_page_names_the_idempotency_key_that_started_it(
    serve: Any, seed: Manager
) -> None:
    # Given a run started with an idempotency key (escaped on the page) and one without
    await seed.enqueue_workflow("orders", "o-1", None, idempotency_key="req <42>")
    await seed.enqueue_workflow("orders", "o-2", None)
    with serve() as base:
        visitor = Visitor(base)
        status, keyed = await asyncio.to_thread(visitor.get, _instance_path("orders", "o-1"))
        _, plain = await asyncio.to_thread(visitor.get, _instance_path("orders", "o-2"))
    assert status == 200
    assert '<dd class="start-key"><code>req &lt;42&gt;</code>' in keyed
    assert "Idempotency key" not in plain


async def test_an_instance_page_shows_its_workflow_concurrency_key(
    serve: Any, seed: Manager
) -> None:
    # Given two runs of one key with a limit of 1 (escaped on the page): the second waits
    for name in ("o-1", "o-2"):
        await seed.enqueue_workflow(
            "orders", name, None, concurrency_key="customer <7>", concurrency_limit=1
        )
    await seed.enqueue_workflow("orders", "o-3", None)
    with serve() as base:
        visitor = Visitor(base)
        status, started = await asyncio.to_thread(visitor.get, _instance_path("orders", "o-1"))
        _, waiting = await asyncio.to_thread(visitor.get, _instance_path("orders", "o-2"))
        _, plain = await asyncio.to_thread(visitor.get, _instance_path("orders", "o-3"))
    assert status == 200
    key = '<dd class="workflow-key"><code>customer &lt;7&gt;</code>'
    assert f'{key} <span class="muted">(at most 1 started at once)</span>' in started
    assert "(at most 1 started at once; waiting for a place)" in waiting
    assert "Concurrency key" not in plain


async def test_the_instances_page_shows_the_applied_retention(serve: Any, seed: Manager) -> None:
    with serve() as base:
        # Given no trim yet: the page says so
        _, before = await asyncio.to_thread(Visitor(base).get, "/instances")
        assert "no sweep has trimmed this store yet" in before
        # When a trim applies a retention with a rule for "reports"
        await seed.trim_history(
            HistoryRetention(
                max_rows=300,
                margin_rows=30,
                per_workflow={"reports": WorkflowRetention(max_age=7 * 86400)},
            )
        )
        status, after = await asyncio.to_thread(Visitor(base).get, "/instances")
    # Then the page shows each rule in words
    assert status == 200
    assert (
        '<span class="retention-rule">all workflows: at most 300 runs (trimmed to 270)</span>'
        in after
    )
    assert '<span class="retention-rule">reports: none older than 7 d</span>' in after
