"""``cereal tasks list`` and ``cereal tasks stats`` through the real command, on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cereal import (
    CancelEvent,
    Decision,
    Manager,
    RateLimit,
    StartEvent,
    TaskCompleteEvent,
    WorkflowInstance,
)
from cereal.drivers import open_driver
from tests.plugins.manager import FAST_OPTIONS, eventually
from tests.system._cereal_process import cereal, one_error_line


class EnqueuesThree:
    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        for n in range(3):
            w.enqueue_task("resize", n)
        return w.continue_({"enqueued": 3})

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        return w.continue_()

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


@pytest.fixture
async def six_queued(tmp_path: Path) -> str:
    """A store with two runs of wf (a, then b), each with three queued resize tasks."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    manager = Manager(open_driver(url), **FAST_OPTIONS)
    manager.register_workflow_executor("wf", EnqueuesThree())
    async with manager:
        for name in ("a", "b"):
            await manager.enqueue_workflow("wf", name, None)

            async def decided(name: str = name) -> bool:
                found = await manager.get_workflow_instance("wf", name)
                return found.data.payload is not None

            await eventually(decided, what=f"wf/{name}'s tasks enqueued")
    return url


def test_tasks_list_pages_newest_first_naming_each_run(six_queued: str, tmp_path: Path) -> None:
    first = cereal("--db", six_queued, "tasks", "list", "resize", "-n", "4", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    page = json.loads(first.stdout)
    tasks = page["tasks"]
    assert [(t["instance_name"], t["parameters"]) for t in tasks] == [
        ("b", 2), ("b", 1), ("b", 0), ("a", 2)
    ]  # fmt: skip
    assert all(t["workflow_name"] == "wf" and t["state"] == "queued" for t in tasks)
    assert page["older_tasks"] == tasks[-1]["task_id"]

    rest = cereal(
        "--db", six_queued, "tasks", "list", "resize", "--before", page["older_tasks"], "--json",
        cwd=tmp_path,
    )  # fmt: skip
    older = json.loads(rest.stdout)
    assert [(t["instance_name"], t["parameters"]) for t in older["tasks"]] == [("a", 1), ("a", 0)]
    assert older["older_tasks"] is None

    table = cereal("--db", six_queued, "tasks", "list", "resize", "-n", "4", cwd=tmp_path)
    assert "4 task(s), newest first" in table.stdout
    assert f"--before {page['older_tasks']} shows the next page" in table.stdout


def test_tasks_stats_counts_each_queue(six_queued: str, tmp_path: Path) -> None:
    done = cereal("--db", six_queued, "tasks", "stats", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)
    assert (entry["task_name"], entry["queued"], entry["running"]) == ("resize", 6, 0)
    assert entry["oldest_queued_at"] is not None
    table = cereal("--db", six_queued, "tasks", "stats", cwd=tmp_path)
    assert "resize" in table.stdout


def test_tasks_list_refuses_a_bad_name_and_a_bad_cursor(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    bad_name = one_error_line(cereal("--db", url, "tasks", "list", "", cwd=tmp_path))
    assert "name" in bad_name
    bad_cursor = cereal("--db", url, "tasks", "list", "resize", "--before", "x", cwd=tmp_path)
    assert "before" in one_error_line(bad_cursor)
    empty = cereal("--db", url, "tasks", "list", "resize", cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert "no queued or running tasks" in empty.stdout


class EnqueuesKeyed:
    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        w.enqueue_task("charge", 1, concurrency_key="customer-7", concurrency_limit=2)
        w.enqueue_task("charge", 2)
        w.enqueue_task("charge", 3, concurrency_key="api", rate_limit=RateLimit(10, 1.5))
        w.enqueue_task("charge", 4, priority=7, idempotency_key="[/] charge-4")
        return w.continue_({"enqueued": 4})

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        return w.continue_()

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


async def test_tasks_list_and_workflows_show_name_each_tasks_concurrency_key(
    tmp_path: Path,
) -> None:
    # Given a run with one task under a concurrency key and one without
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    manager = Manager(open_driver(url), **FAST_OPTIONS)
    manager.register_workflow_executor("billing", EnqueuesKeyed())
    async with manager:
        await manager.enqueue_workflow("billing", "run-1", None)

        async def decided() -> bool:
            found = await manager.get_workflow_instance("billing", "run-1")
            return found.data.payload is not None

        await eventually(decided, what="billing/run-1's tasks enqueued")

    # When its tasks are listed
    listed = cereal("--db", url, "tasks", "list", "charge", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    keys = {
        t["parameters"]: (
            t["concurrency_key"],
            t["concurrency_limit"],
            t["rate_limit_starts"],
            t["rate_limit_seconds"],
            t["priority"],
            t["idempotency_key"],
        )
        for t in json.loads(listed.stdout)["tasks"]
    }

    # Then each carries its key and limits, or none, in --json and in the tables
    assert keys == {
        1: ("customer-7", 2, None, None, 0, None),
        2: (None, None, None, None, 0, None),
        3: ("api", None, 10, 1.5, 0, None),
        4: (None, None, None, None, 7, "[/] charge-4"),
    }
    table = cereal("--db", url, "tasks", "list", "charge", cwd=tmp_path).stdout
    assert "customer-7 (at most 2)" in table
    assert "api (10 starts per 1.5 s)" in table
    assert "priority" in table
    # the key is printed as given (rich markup syntax in it is no markup)
    assert "idempotency key" in table and "[/] charge-4" in table
    shown = cereal("--db", url, "workflows", "show", "billing", "run-1", cwd=tmp_path).stdout
    assert "customer-7 (at most 2)" in shown
    assert "api (10 starts per 1.5 s)" in shown
