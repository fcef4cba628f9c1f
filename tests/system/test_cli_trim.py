"""``cereal workflows trim`` through the real command, on SQLite: rules per workflow name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cereal import Decision, Manager, WorkflowInstance
from cereal.drivers import open_driver
from tests.plugins.manager import FAST_OPTIONS, wait_finished
from tests.system._cereal_process import cereal, one_error_line


class Done:
    """Completes at once."""

    def on_start(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.complete("done")

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.complete("done")

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


async def _finish(url: str, runs: dict[str, int]) -> None:
    manager = Manager(open_driver(url), **FAST_OPTIONS)
    for workflow_name in runs:
        manager.register_workflow_executor(workflow_name, Done())
    async with manager:
        for workflow_name, count in runs.items():
            for index in range(count):
                await manager.enqueue_workflow(workflow_name, f"r{index}")
                await wait_finished(manager, workflow_name, f"r{index}")


def _listed(db: str, cwd: Path) -> list[str]:
    listed = cereal("--db", db, "workflows", "list", "--json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return sorted(f"{r['workflow_name']}/{r['instance_name']}" for r in json.loads(listed.stdout))


async def test_keep_runs_trims_one_names_oldest_runs(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'trim.db'}"
    await _finish(db, {"reports": 4, "orders": 2})

    trimmed = cereal("--db", db, "workflows", "trim", "--keep-runs", "reports=1", cwd=tmp_path)
    assert trimmed.returncode == 0, trimmed.stderr
    assert trimmed.stdout.strip() == "ok trimmed 3 finished runs"
    assert _listed(db, tmp_path) == ["orders/r0", "orders/r1", "reports/r3"]

    again = cereal(
        "--db", db, "workflows", "trim", "--keep-runs", "reports=1", "--json", cwd=tmp_path
    )
    assert json.loads(again.stdout) == {"trimmed": 0, "skipped": False}


def test_a_bad_rule_is_one_error_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'trim.db'}"
    for rule, says in [
        ("reports", "error: --keep-runs takes WORKFLOW=NUMBER, got 'reports'"),
        ("reports=-1", "error: bad retention: max_runs must be between 0 and 2147483647, got -1"),
        ("reports=x", "error: bad retention: invalid literal for int() with base 10: 'x'"),
    ]:
        bad = cereal("--db", db, "workflows", "trim", "--keep-runs", rule, cwd=tmp_path)
        assert one_error_line(bad) == says
    memory = cereal("--db", "memory://", "workflows", "trim", cwd=tmp_path)
    assert "memory:// keeps nothing" in one_error_line(memory)
