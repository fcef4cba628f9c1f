"""The crash suite (``python3 bench/crash.py``): it runs, and its counts catch what they claim to.

The first test runs the real command over a small plan: real worker processes
killed with SIGKILL, a real PostgreSQL cluster crash-restarted, a real
``cereal serve`` killed and restarted. The second shows the read-back counts a
lost, a failed, a doubled, a twice-run and a stuck workflow, on a real store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.crash_suite import Report, read_back
from bench.pg_cluster import find_binaries

from cereal import Decision, Manager, StartEvent, WorkflowInstance, open_driver
from tests.plugins.manager import FAST_OPTIONS, wait_finished

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _need_binaries() -> None:
    if find_binaries() is not None:
        return
    message = "the crash suite needs initdb and pg_ctl"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


@pytest.mark.timeout(600)
def test_the_crash_suite_loses_doubles_and_strands_nothing() -> None:
    _need_binaries()
    plan = ["--rounds", "4", "--workflows", "300", "--seed", "11", "--settle", "60"]
    done = subprocess.run(
        [sys.executable, "bench/crash.py", *plan, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert (report["workflows_lost"], report["results_applied_twice"]) == (0, 0)
    assert report["stuck_instances"] == 0
    assert (report["rounds"], report["seed"], report["workflows_completed"]) == (4, 11, 300)
    assert report["actions"] == {
        "kill-task": 1,
        "kill-decision": 1,
        "restart-postgres": 1,
        "restart-serve": 1,
    }


class Scripted:
    """Finishes each run as its parameters say: complete with a result, fail, or stay running."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        plan: dict[str, Any] = w.get_parameters()
        if plan["end"] == "complete":
            return w.complete({"applied": plan["applied"], "reenqueued": 0})
        if plan["end"] == "fail":
            return w.fail("a step failed for good")
        return w.continue_(None)

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.continue_(None)

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


async def test_read_back_counts_lost_doubled_and_stuck_runs(postgres_dsn: str) -> None:
    manager = Manager(open_driver(postgres_dsn), **FAST_OPTIONS)
    manager.register_workflow_executor("crash", Scripted())
    runs = {
        "fine": {"end": "complete", "applied": [0, 1, 2]},
        "doubled": {"end": "complete", "applied": [0, 1, 1, 2]},
        "failed": {"end": "fail"},
        "twice": {"end": "complete", "applied": [0, 1, 2]},
        "stuck": {"end": "stay"},
    }
    async with manager:
        for name, plan in runs.items():
            await manager.enqueue_workflow("crash", name, plan)
        for name in ("fine", "doubled", "failed", "twice"):
            await wait_finished(manager, "crash", name)
        await manager.enqueue_workflow("crash", "twice", runs["twice"])  # the name runs again
        await wait_finished(manager, "crash", "twice")

        report = Report()
        await read_back(manager, postgres_dsn, [*runs, "never-stored"], report)

    assert report.workflows_lost == 2  # "failed" and "never-stored"
    assert report.workflows_failed == 1
    assert report.results_applied_twice == 2  # index 1 in "doubled", the second run of "twice"
    assert report.stuck_instances == 1
    assert report.workflows_completed == 3
    assert not report.ok
