"""The CLI's answers say what happened: a memory:// write is refused (it would vanish),
a finished run is named as finished, and not-found or already-exists errors name the
workflow and instance. Each through the real ``cereal`` command in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cereal import CancelEvent, Decision, Manager, StartEvent, TaskCompleteEvent, WorkflowInstance
from cereal.drivers import open_driver
from tests.plugins.manager import FAST_OPTIONS, wait_finished
from tests.system._cereal_process import cereal, one_error_line

WRITES = [
    ("workflows", "enqueue", "wf", "i"),
    ("workflows", "cancel", "wf", "i"),
    ("workflows", "kill", "wf", "i"),
    ("schedules", "create", "wf", "i", "--rrule", "FREQ=DAILY"),
    ("schedules", "update", "wf", "i", "--rrule", "FREQ=DAILY"),
    ("schedules", "enable", "wf", "i"),
    ("schedules", "disable", "wf", "i"),
    ("schedules", "trigger", "wf", "i"),
    ("schedules", "delete", "wf", "i"),
]


@pytest.mark.parametrize("command", WRITES, ids=[" ".join(c[:2]) for c in WRITES])
def test_a_write_to_memory_is_refused_because_it_would_vanish(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    line = one_error_line(cereal("--db", "memory://", *command, cwd=tmp_path))
    assert "memory:// keeps nothing once this command exits" in line
    assert "vanish" in line


def test_reading_memory_is_allowed(tmp_path: Path) -> None:
    done = cereal("--db", "memory://", "workflows", "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


class FailsAtOnce:
    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        return w.fail("boom")

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        return w.continue_()

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


@pytest.fixture
async def finished_run(tmp_path: Path) -> str:
    """A SQLite store holding wf/done, a run that failed; its URL."""
    url = f"sqlite:///{tmp_path / 'answers.db'}"
    manager = Manager(open_driver(url), **FAST_OPTIONS)
    manager.register_workflow_executor("wf", FailsAtOnce())
    async with manager:
        await manager.enqueue_workflow("wf", "done", None)
        await wait_finished(manager, "wf", "done")
    return url


@pytest.mark.parametrize("action", ["cancel", "kill"])
def test_cancel_or_kill_of_a_finished_run_says_it_has_finished(
    finished_run: str, action: str, tmp_path: Path
) -> None:
    line = one_error_line(
        cereal("--db", finished_run, "workflows", action, "wf", "done", cwd=tmp_path)
    )
    assert line == f"error: wf/done has already finished (failed): there is nothing to {action}"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("workflows", "show", "wf", "nope"), "error: workflow instance not found: wf/nope"),
        (("workflows", "cancel", "wf", "nope"), "error: workflow instance not found: wf/nope"),
        (("schedules", "show", "wf", "nope"), "error: workflow schedule not found: wf/nope"),
        (("schedules", "delete", "wf", "nope"), "error: workflow schedule not found: wf/nope"),
    ],
)
def test_not_found_errors_name_the_workflow_and_instance(
    finished_run: str, command: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    assert one_error_line(cereal("--db", finished_run, *command, cwd=tmp_path)) == expected


def test_already_exists_errors_name_the_workflow_and_instance(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'exists.db'}"
    create = ("schedules", "create", "wf", "daily", "--rrule", "FREQ=DAILY")
    assert cereal("--db", url, *create, cwd=tmp_path).returncode == 0
    line = one_error_line(cereal("--db", url, *create, cwd=tmp_path))
    assert line == "error: workflow schedule already exists: wf/daily"

    enqueue = ("workflows", "enqueue", "wf", "running")
    assert cereal("--db", url, *enqueue, cwd=tmp_path).returncode == 0
    line = one_error_line(cereal("--db", url, *enqueue, cwd=tmp_path))
    assert line == "error: workflow instance already exists: wf/running"


def _without_grpc_health(tmp_path: Path) -> dict[str, str]:
    """An environment where grpc_health cannot be imported (a plain install lacks it)."""
    blocked = tmp_path / "blocked" / "grpc_health"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ImportError('not installed (blocked by the test)')\n"
    )
    return {"PYTHONPATH": os.pathsep.join([str(blocked.parent), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize(
    "command",
    [("--db", "grpc://127.0.0.1:1", "workflows", "list"), ("serve", "--port", "0")],
    ids=["grpc-url", "serve"],
)
def test_without_the_grpc_extra_one_line_names_it(command: tuple[str, ...], tmp_path: Path) -> None:
    done = cereal(*command, cwd=tmp_path, env=_without_grpc_health(tmp_path))
    line = one_error_line(done)
    assert "pip install 'cereal-workflows[grpc]'" in line
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("command", "extra"),
    [("worker", "metrics"), ("serve", "grpc"), ("dashboard", "dashboard")],
)
def test_help_names_the_extra_a_command_needs(command: str, extra: str, tmp_path: Path) -> None:
    done = cereal(command, "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert f"cereal-workflows[{extra}]" in done.stdout


def test_schedule_create_and_update_say_when_the_first_run_is_due(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'due.db'}"
    # a rule without DTSTART starts now: FREQ=HOURLY is due at once, and the output says so
    hourly = cereal(
        "--db", url, "schedules", "create", "wf", "h", "--rrule", "FREQ=HOURLY", cwd=tmp_path
    )
    assert hourly.returncode == 0, hourly.stderr
    assert "first run due now (" in hourly.stdout
    assert "then as the rule says" in hourly.stdout
    # a rule pinned to a time of day is due at that time
    nine = cereal(
        "--db", url, "schedules", "create", "wf", "n", "--rrule", "0 9 * * *", cwd=tmp_path
    )
    assert nine.returncode == 0, nine.stderr
    assert " 09:00:00 UTC" in nine.stdout.split("first run due ", 1)[1]
    changed = cereal(
        "--db", url, "schedules", "update", "wf", "n", "--rrule", "FREQ=MINUTELY", cwd=tmp_path
    )
    assert changed.returncode == 0, changed.stderr
    assert "next run due now (" in changed.stdout
