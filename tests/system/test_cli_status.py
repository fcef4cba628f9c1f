"""``--json`` shows the status the tables show, for every way a run can end, on each store.

The runs are made through the Python API on the store, then read by the real
``cereal`` command in a subprocess: ``workflows show`` and ``workflows list``,
as a table and as ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cereal import CancelEvent, Decision, Manager, StartEvent, TaskCompleteEvent, WorkflowInstance
from cereal.drivers import open_driver
from tests.plugins.manager import FAST_OPTIONS, eventually, wait_finished
from tests.system._cereal_process import cereal

WF = "status-wf"

EXPECTED = {
    "running": "running",
    "completed": "completed",
    "failed-by-error": "failed",
    "cancelled": "failed",
    "killed": "failed",
}
"""Instance name -> the status every output must show."""


class EndsAsTold:
    """The parameters say how the run goes: complete, fail, or wait (for a cancel)."""

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        how = w.get_parameters()
        if how == "complete":
            return w.complete({"ok": True})
        if how == "fail":
            return w.fail("boom")
        return w.continue_({"waiting": True})  # no task, no end: it waits

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        return w.continue_()

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


@pytest.fixture(params=["sqlite", "postgres", "grpc"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'status.db'}"
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_dsn"))
    server = request.getfixturevalue("grpc_server_factory")(f"sqlite:///{tmp_path / 'g.db'}")
    return str(server.url())


async def make_every_outcome(url: str) -> None:
    manager = Manager(open_driver(url), **FAST_OPTIONS)
    manager.register_workflow_executor(WF, EndsAsTold())
    async with manager:
        for name, how in [
            ("running", "wait"),
            ("completed", "complete"),
            ("failed-by-error", "fail"),
            ("cancelled", "wait"),
            ("killed", "wait"),
        ]:
            await manager.enqueue_workflow(WF, name, how)

        async def started(name: str) -> bool:
            found = await manager.get_workflow_instance(WF, name)
            return found.data.payload is not None or not found.is_running()

        for name in ("running", "cancelled", "killed"):
            await eventually(lambda name=name: started(name), what=f"{name} started")
        await manager.cancel_workflow(WF, "cancelled")
        await manager.kill_workflow(WF, "killed")
        for name in ("completed", "failed-by-error", "cancelled"):
            await wait_finished(manager, WF, name)


def run(url: str, cwd: Path, *args: str) -> str:
    done = cereal("--db", url, *args, cwd=cwd, env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def table_status(table: str, name: str) -> str:
    """The status cell of ``name``'s row in ``workflows list``'s table."""
    row = next(line for line in table.splitlines() if f" {name} " in f" {line} ")
    return next(cell for cell in EXPECTED.values() if f" {cell} " in f" {row} ")


async def test_json_and_tables_show_the_same_status_for_every_outcome(
    store_url: str, tmp_path: Path
) -> None:
    await make_every_outcome(store_url)

    listed: list[dict[str, Any]] = json.loads(
        run(store_url, tmp_path, "workflows", "list", "--workflow-name", WF, "--json")
    )
    table = run(store_url, tmp_path, "workflows", "list", "--workflow-name", WF)
    assert {row["instance_name"]: row["status"] for row in listed} == EXPECTED
    assert {name: table_status(table, name) for name in EXPECTED} == EXPECTED

    for name, status in EXPECTED.items():
        shown = json.loads(run(store_url, tmp_path, "workflows", "show", WF, name, "--json"))
        assert shown["status"] == status, name
        assert shown["is_running"] == (status == "running")
        page = run(store_url, tmp_path, "workflows", "show", WF, name)
        status_line = next(line for line in page.splitlines() if line.split()[:1] == ["status"])
        assert status_line.split()[1] == status, name
