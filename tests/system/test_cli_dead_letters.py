"""Dead letters through the real ``cereal`` command, on SQLite: list, requeue, and the run goes on.

``cereal tasks dead`` / ``tasks requeue`` and ``cereal workflows failed`` /
``workflows requeue``; a Manager with fixed code then finishes what was requeued.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cereal import Decision, Manager, Task, WorkflowInstance
from cereal.drivers import open_driver
from tests.plugins.manager import FAST_OPTIONS, eventually, wait_finished
from tests.system._cereal_process import cereal, one_error_line


class Orders:
    """``pay`` runs one task ``charge`` and completes with its result; ``bad`` fails at start."""

    def __init__(self, fixed: bool) -> None:
        self.fixed = fixed

    def on_start(self, w: WorkflowInstance, ev: Any) -> Decision:
        if w.get_parameters().get("bad") and not self.fixed:
            return w.fail("the order was malformed")
        w.enqueue_task("charge", w.get_parameters())
        return w.continue_("charging")

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        if ev.result.err() is not None:
            return w.continue_("waiting for a requeue")
        return w.complete(ev.result.get())

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


def charge(fixed: bool) -> Any:
    def run(task: Task) -> str:
        if not fixed:
            raise ValueError("card declined")
        return f"charged {task.get_parameters()['amount']}"

    return run


def _manager(url: str, *, fixed: bool) -> Manager:
    manager = Manager(open_driver(url), **FAST_OPTIONS)
    manager.register_workflow_executor("orders", Orders(fixed))
    manager.register_task_executor("charge", charge(fixed))
    return manager


@pytest.fixture
async def broken(tmp_path: Path) -> str:
    """A store where orders/pay's charge task died, and orders/bad failed at its start."""
    url = f"sqlite:///{tmp_path / 'dead.db'}"
    async with _manager(url, fixed=False) as manager:
        await manager.enqueue_workflow("orders", "pay", {"amount": 12})
        await manager.enqueue_workflow("orders", "bad", {"amount": 3, "bad": True})

        async def settled() -> bool:
            dead = await manager.list_dead_tasks()
            failed = await manager.list_failed_runs()
            return len(dead) == 1 and len(failed) == 1

        await eventually(settled, what="one dead task and one failed run")
    return url


def _json(*args: str, cwd: Path) -> Any:
    done = cereal(*args, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_a_dead_task_listed_and_requeued_reaches_its_run(broken: str, tmp_path: Path) -> None:
    listed = _json("--db", broken, "tasks", "dead", cwd=tmp_path)
    [dead] = listed["dead_tasks"]
    assert (dead["task_name"], dead["workflow_name"], dead["instance_name"]) == (
        "charge",
        "orders",
        "pay",
    )
    assert (dead["status"], dead["error_type"], dead["error"]) == (
        "failed",
        "ValueError",
        "card declined",
    )
    assert "ValueError: card declined" in dead["error_traceback"]
    assert dead["run_live"] is True and dead["parameters"] == {"amount": 12}

    table = cereal("--db", broken, "tasks", "dead", "--traceback", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "1 dead task(s), newest first" in table.stdout
    assert "ValueError: card declined" in table.stdout
    assert "Traceback (most recent call last)" in table.stdout

    requeued = cereal("--db", broken, "tasks", "requeue", dead["task_id"], cwd=tmp_path)
    assert requeued.returncode == 0, requeued.stderr
    assert f"task {dead['task_id']}: requeued" in requeued.stdout
    again = cereal("--db", broken, "tasks", "requeue", dead["task_id"], cwd=tmp_path)
    assert again.returncode == 1
    assert "not found" in one_error_line(again)

    # the fixed code picks the requeued task up and the run completes with its result
    async with _manager(broken, fixed=True) as manager:
        done = await wait_finished(manager, "orders", "pay")
    assert done.get_result() == "charged 12"


async def test_a_failed_run_listed_and_requeued_starts_again(broken: str, tmp_path: Path) -> None:
    [run] = _json("--db", broken, "workflows", "failed", cwd=tmp_path)["failed_runs"]
    assert (run["workflow_name"], run["instance_name"], run["error"]) == (
        "orders",
        "bad",
        "the order was malformed",
    )
    assert run["parameters"] == {"amount": 3, "bad": True}
    table = cereal("--db", broken, "workflows", "failed", cwd=tmp_path)
    assert "1 failed run(s), newest first" in table.stdout

    outcome = _json("--db", broken, "workflows", "requeue", run["run_id"], cwd=tmp_path)
    assert outcome == {run["run_id"]: "requeued"}
    assert _json("--db", broken, "workflows", "failed", cwd=tmp_path)["failed_runs"] == []

    async with _manager(broken, fixed=True) as manager:
        await manager.requeue_dead_tasks(
            [d.task_id for d in await manager.list_dead_tasks()]
        )  # the other run's task too, so both complete under the fixed code
        done = await wait_finished(manager, "orders", "bad")
    assert done.get_result() == "charged 3"


def test_bad_requeue_input_is_refused_with_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    bad_id = cereal("--db", url, "tasks", "requeue", "x1", cwd=tmp_path)
    assert bad_id.returncode == 1
    assert "not a task id: 'x1'" in one_error_line(bad_id)
    bad_run = cereal("--db", url, "workflows", "requeue", "007", cwd=tmp_path)
    assert "not a run id: '007'" in one_error_line(bad_run)
    in_memory = cereal("--db", "memory://", "tasks", "requeue", "1", cwd=tmp_path)
    assert "memory://" in one_error_line(in_memory)
    bad_cursor = cereal("--db", url, "tasks", "dead", "--before", "x", cwd=tmp_path)
    assert "before" in one_error_line(bad_cursor)
    nothing = cereal("--db", url, "tasks", "dead", cwd=tmp_path)
    assert (nothing.returncode, nothing.stdout.strip()) == (0, "no dead tasks")
    unknown = cereal("--db", url, "tasks", "requeue", "41", "--json", cwd=tmp_path)
    assert (unknown.returncode, json.loads(unknown.stdout)) == (1, {"41": "not_found"})
