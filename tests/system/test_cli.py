"""The real ``cereal`` command line, run in subprocesses against a SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests._poisoned import lose_a_task_to_a_bad_policy

COMMAND_TIMEOUT = 90


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CEREAL_DATABASE_URL", None)
    env["COLUMNS"] = "200"
    env["NO_COLOR"] = "1"
    return env


class Cli:
    """Runs ``python -m cereal --db <url> ...`` in ``cwd`` and returns the finished process."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.url = url
        self.cwd = cwd

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "cereal", "--db", self.url, *args],
            cwd=self.cwd,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"cereal {' '.join(args)} exited {done.returncode}\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in done.stderr
    return lines[0]


def test_migrate_applies_then_reports_up_to_date(cli: Cli) -> None:
    first = cli("migrate")
    assert "applied 0001_initial" in first.stdout
    second = cli("migrate")
    assert "up to date" in second.stdout


def test_workflows_enqueue_list_show_cancel_kill(cli: Cli) -> None:
    # Given two enqueued instances (no worker runs them, so they stay live)
    cli("workflows", "enqueue", "orders", "first", "--parameters", '{"n": 3, "tags": ["a"]}')
    cli("workflows", "enqueue", "orders", "second")

    # When listed and shown
    listed = cli.json("workflows", "list")
    shown = cli.json("workflows", "show", "orders", "first")

    # Then both are running with their parameters
    assert sorted(item["instance_name"] for item in listed) == ["first", "second"]
    assert all(item["is_running"] for item in listed)
    assert shown["parameters"] == {"n": 3, "tags": ["a"]}
    assert shown["workflow_name"] == "orders"
    assert cli.json("workflows", "list", "--instance-name", "second")[0]["parameters"] is None
    assert cli.json("workflows", "list", "--finished") == []
    assert len(cli.json("workflows", "list", "--workflow-name", "orders", "--running")) == 2

    # A second enqueue of a live instance is refused
    again = cli("workflows", "enqueue", "orders", "first", check=False)
    assert "exists" in _one_error_line(again)

    # Killing ends the instance with the error "killed"
    cli("workflows", "kill", "orders", "first")
    killed = cli.json("workflows", "show", "orders", "first")
    assert killed["is_running"] is False
    assert killed["error"] == "killed"
    assert [i["instance_name"] for i in cli.json("workflows", "list", "--finished")] == ["first"]

    # Cancelling is accepted for a live instance (on_cancel runs in a worker later)
    cli("workflows", "cancel", "orders", "second")

    # Human output renders too
    assert "orders" in cli("workflows", "list").stdout
    assert "killed" in cli("workflows", "show", "orders", "first").stdout


def test_workflows_errors_are_one_red_line(cli: Cli) -> None:
    bad_json = cli("workflows", "enqueue", "orders", "x", "--parameters", "{nope", check=False)
    assert "--parameters is not valid JSON" in _one_error_line(bad_json)

    missing = cli("workflows", "show", "orders", "missing", check=False)
    assert "not found" in _one_error_line(missing)

    for command in ("cancel", "kill"):
        done = cli("workflows", command, "orders", "missing", check=False)
        assert "not found" in _one_error_line(done)


def test_parameters_that_json_refuses_are_one_line_errors_naming_the_option(cli: Cli) -> None:
    for text in ("NaN", '{"a": Infinity}', '"\\ud800"'):
        done = cli("workflows", "enqueue", "orders", "x", "--parameters", text, check=False)
        assert "--parameters is not valid JSON" in _one_error_line(done), text
    assert cli.json("workflows", "list") == []


def test_bad_names_are_one_line_errors_without_exception_class_names(cli: Cli) -> None:
    for name, expected in [("", "must not be empty"), ("x" * 300, "limit is 255")]:
        line = _one_error_line(cli("workflows", "enqueue", "orders", name, check=False))
        assert expected in line
        assert "ValueError" not in line


def test_schedules_lifecycle(cli: Cli) -> None:
    # Given a schedule created disabled
    cli(
        "schedules", "create", "report", "nightly",
        "--rrule", "FREQ=DAILY;BYHOUR=3", "--parameters", '{"full": true}', "--disabled",
    )  # fmt: skip

    # Then it lists and shows as created
    listed = cli.json("schedules", "list")
    assert [(s["workflow_name"], s["instance_name"]) for s in listed] == [("report", "nightly")]
    shown = cli.json("schedules", "show", "report", "nightly")
    assert shown["enabled"] is False
    assert shown["parameters"] == {"full": True}
    assert "FREQ=DAILY" in shown["recurrence"]

    # Enable / disable flip the flag
    cli("schedules", "enable", "report", "nightly")
    assert cli.json("schedules", "show", "report", "nightly")["enabled"] is True
    cli("schedules", "disable", "report", "nightly")
    assert cli.json("schedules", "show", "report", "nightly")["enabled"] is False

    # Update changes rule and parameters together
    cli(
        "schedules", "update", "report", "nightly",
        "--rrule", "FREQ=HOURLY;INTERVAL=6", "--parameters", '{"full": false}',
    )  # fmt: skip
    updated = cli.json("schedules", "show", "report", "nightly")
    assert "FREQ=HOURLY" in updated["recurrence"]
    assert "INTERVAL=6" in updated["recurrence"]
    assert updated["parameters"] == {"full": False}

    # A duplicate is refused; human output renders
    duplicate = cli(
        "schedules", "create", "report", "nightly", "--rrule", "FREQ=DAILY", check=False
    )
    assert "exists" in _one_error_line(duplicate)
    assert "nightly" in cli("schedules", "list").stdout
    assert "FREQ=HOURLY" in cli("schedules", "show", "report", "nightly").stdout

    # Delete removes it; a second delete and a show fail cleanly
    cli("schedules", "delete", "report", "nightly")
    assert cli.json("schedules", "list") == []
    assert "not found" in _one_error_line(
        cli("schedules", "delete", "report", "nightly", check=False)
    )
    assert "not found" in _one_error_line(
        cli("schedules", "show", "report", "nightly", check=False)
    )


def test_schedules_bad_input(cli: Cli) -> None:
    bad_rule = cli("schedules", "create", "report", "x", "--rrule", "FREQ=SOMETIMES", check=False)
    line = _one_error_line(bad_rule)
    assert "FREQ=SOMETIMES" in line or "not valid" in line
    assert cli.json("schedules", "list") == []

    bad_json = cli(
        "schedules", "create", "report", "x", "--rrule", "FREQ=DAILY", "--parameters", "[1,",
        check=False,
    )  # fmt: skip
    assert "--parameters is not valid JSON" in _one_error_line(bad_json)

    cli("schedules", "create", "report", "x", "--rrule", "FREQ=DAILY")
    bad_update = cli("schedules", "update", "report", "x", "--rrule", "FREQ=WHENEVER", check=False)
    _one_error_line(bad_update)
    assert "FREQ=DAILY" in cli.json("schedules", "show", "report", "x")["recurrence"]
    nothing = cli("schedules", "update", "report", "x", check=False)
    assert "nothing to update" in _one_error_line(nothing)


def test_schedules_overlap_catch_up_window_and_trigger(cli: Cli) -> None:
    rule = "DTSTART:20990101T000000Z\nRRULE:FREQ=DAILY"
    # Given a schedule created with an overlap policy and a catch-up window
    cli(
        "schedules", "create", "report", "nightly", "--rrule", rule,
        "--overlap", "buffer_one", "--catch-up-window", "90",
    )  # fmt: skip
    shown = cli.json("schedules", "show", "report", "nightly")
    assert (shown["overlap"], shown["catch_up_window"], shown["run_pending"]) == (
        "buffer_one",
        90.0,
        False,
    )
    assert "buffer_one" in cli("schedules", "list").stdout
    detail = cli("schedules", "show", "report", "nightly").stdout
    assert "catch-up window" in detail and "90 s" in detail

    # When it is triggered (no worker runs, so the run stays live), then triggered again
    first = cli("schedules", "trigger", "report", "nightly")
    second = cli("schedules", "trigger", "report", "nightly")

    # Then the first started a run and the second is buffered behind it
    assert "started a run" in first.stdout
    assert "waits for the live one" in second.stdout
    shown = cli.json("schedules", "show", "report", "nightly")
    assert shown["run_pending"] is True
    assert shown["next_due_at"].startswith("2099-01-01")  # a trigger does not move it
    assert "a run waits" in cli("schedules", "show", "report", "nightly").stdout
    assert [i["instance_name"] for i in cli.json("workflows", "list", "--running")] == ["nightly"]

    # When the policy and window change together, a trigger replaces the live run
    cli(
        "schedules", "update", "report", "nightly",
        "--overlap", "terminate_other", "--catch-up-window", "0",
    )  # fmt: skip
    shown = cli.json("schedules", "show", "report", "nightly")
    assert (shown["overlap"], shown["catch_up_window"]) == ("terminate_other", 0.0)
    replaced = cli("schedules", "trigger", "report", "nightly")
    assert "killed the live run" in replaced.stdout
    assert cli.json("workflows", "show", "report", "nightly")["is_running"] is True

    # and skip reports the dropped run
    cli("schedules", "update", "report", "nightly", "--overlap", "skip")
    assert "skipped" in cli("schedules", "trigger", "report", "nightly").stdout


def test_schedules_overlap_bad_input_is_one_line_and_stores_nothing(cli: Cli) -> None:
    bad = cli(
        "schedules", "create", "report", "x", "--rrule", "FREQ=DAILY", "--overlap", "often",
        check=False,
    )  # fmt: skip
    line = _one_error_line(bad)
    assert "'often'" in line and "'buffer_one'" in line and "'terminate_other'" in line
    negative = cli(
        "schedules", "create", "report", "x", "--rrule", "FREQ=DAILY",
        "--catch-up-window", "-5", check=False,
    )  # fmt: skip
    assert "catch_up_window" in _one_error_line(negative)
    not_a_number = cli(
        "schedules", "create", "report", "x", "--rrule", "FREQ=DAILY",
        "--catch-up-window", "soon", check=False,
    )  # fmt: skip
    assert not_a_number.returncode != 0
    assert cli.json("schedules", "list") == []

    cli("schedules", "create", "report", "x", "--rrule", "FREQ=DAILY", "--overlap", "skip")
    bad_update = cli("schedules", "update", "report", "x", "--overlap", "never", check=False)
    assert "'never'" in _one_error_line(bad_update)
    assert cli.json("schedules", "show", "report", "x")["overlap"] == "skip"
    missing = cli("schedules", "trigger", "report", "missing", check=False)
    assert "not found" in _one_error_line(missing)


def test_verbose_errors_show_the_traceback(cli: Cli, db_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cereal", "-v", "--db", db_url, "workflows", "show", "a", "b"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert done.returncode == 1
    assert "error: " in done.stderr
    assert "Traceback" in done.stderr


def test_database_url_from_environment(tmp_path: Path) -> None:
    env = {**_env(), "CEREAL_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}"}
    args = [sys.executable, "-m", "cereal", "workflows", "enqueue", "w", "i"]
    subprocess.run(args, cwd=tmp_path, env=env, check=True, timeout=COMMAND_TIMEOUT)
    assert (tmp_path / "env.db").exists()


def test_demo_runs_twice_on_the_same_database(cli: Cli) -> None:
    for _ in range(2):
        done = cli("demo", "--items", "40")
        assert "cereal demo results" in done.stdout
        lines = {
            cells[0]: cells[1]
            for cells in (
                [part.strip() for part in line.strip("│┃ ").split("│")]
                for line in done.stdout.splitlines()
            )
            if len(cells) == 2
        }
        assert lines["items"] == "40"
        assert lines["succeeded"] == "40"  # items 17 and 34 fail once, then succeed
        assert lines["retried (items)"] == "2"
        assert lines["permanently failed"] == "0"
        assert int(lines["schedule runs (heartbeat)"]) >= 1
    assert cli.json("schedules", "list") == []
    batches = cli.json("workflows", "list", "--workflow-name", "demo-order-batch")
    assert len(batches) == 2
    assert all(b["result"]["succeeded"] == 40 for b in batches)


APP_MODULE = """
from __future__ import annotations

from cereal import Manager, open_driver


class Greeter:
    def on_start(self, w, ev):
        w.enqueue_task("greet", w.get_parameters())
        return w.continue_()

    def on_task_complete(self, w, ev):
        return w.complete(ev.result.get())

    def on_cancel(self, w, ev):
        return w.fail("cancelled")


async def greet(task):
    return "hello " + task.get_parameters()["name"]


def build() -> Manager:
    made = Manager(open_driver({url!r}), task_poll_interval=0.1, workflow_poll_interval=0.1)
    made.register_workflow_executor("greeter", Greeter())
    made.register_task_executor("greet", greet, workers=2)
    return made


manager = build()
"""


@pytest.mark.parametrize("target", ["greeter_app:manager", "greeter_app:build"])
def test_worker_runs_until_sigterm(cli: Cli, db_url: str, tmp_path: Path, target: str) -> None:
    # Given an app module exposing a Manager (or a factory) on the test database
    (tmp_path / "greeter_app.py").write_text(textwrap.dedent(APP_MODULE.format(url=db_url)))
    worker = subprocess.Popen(
        [sys.executable, "-m", "cereal", "worker", target],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # When a workflow is enqueued through the CLI
        cli("workflows", "enqueue", "greeter", "one", "--parameters", '{"name": "cereal"}')

        # Then the worker runs it to completion
        deadline = time.monotonic() + 60
        shown = cli.json("workflows", "show", "greeter", "one")
        while shown["is_running"] and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
            shown = cli.json("workflows", "show", "greeter", "one")
        assert shown["result"] == "hello cereal", shown

        # And SIGTERM stops it gracefully with exit status 0
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
        assert "SIGTERM" in stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def test_worker_target_errors(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "not_a_manager.py").write_text("thing = 42\n")
    (tmp_path / "broken_on_import.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "broken_on_import_syntax.py").write_text("def (:\n")
    (tmp_path / "needs_arguments.py").write_text("def factory(x):\n    return x\n")
    for target, expected in [
        ("no_colon", "must look like"),
        ("missing_module_xyz:manager", "cannot import"),
        ("not_a_manager:other", "no attribute"),
        ("not_a_manager:thing", "not a cereal.Manager"),
        ("broken_on_import:manager", "importing module 'broken_on_import' failed: RuntimeError"),
        ("broken_on_import_syntax:manager", "SyntaxError"),
        ("needs_arguments:factory", "zero-argument factory"),
    ]:
        assert expected in _one_error_line(cli("worker", target, check=False))
    bad_grace = cli("worker", "not_a_manager:thing", "--grace-period", "-1", check=False)
    assert bad_grace.returncode == 2
    assert "--grace-period" in bad_grace.stderr


LONG_TASK_APP = """
from __future__ import annotations

import asyncio
from pathlib import Path

from cereal import Manager, open_driver


class Waits:
    def on_start(self, w, ev):
        w.enqueue_task("long", None)
        return w.continue_()

    def on_task_complete(self, w, ev):
        return w.complete(str(ev.result.status))

    def on_cancel(self, w, ev):
        return w.fail("cancelled")


async def long(task):
    Path("long-started").write_text(task.metadata.task_id)
    await asyncio.Event().wait()  # runs until the worker stops


def build() -> Manager:
    # a lease that never expires in this test: only a hand-back at stop moves the task on
    made = Manager(
        open_driver({url!r}), task_poll_interval=0.1, workflow_poll_interval=0.1, task_expiry=3600
    )
    made.register_workflow_executor("waits", Waits())
    made.register_task_executor("long", long)
    return made
"""


def _start_worker(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cereal", "worker", *args],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_worker_sigterm_hands_running_tasks_back_with_a_warning(
    cli: Cli, db_url: str, tmp_path: Path
) -> None:
    # Given a worker running a task that would run for ever
    (tmp_path / "long_app.py").write_text(textwrap.dedent(LONG_TASK_APP.format(url=db_url)))
    started = tmp_path / "long-started"
    worker = _start_worker(tmp_path, "long_app:build", "--grace-period", "0")
    try:
        cli("workflows", "enqueue", "waits", "one")
        deadline = time.monotonic() + 60
        while not started.exists() and worker.poll() is None:
            assert time.monotonic() < deadline, "the long task never started"
            time.sleep(0.05)
        task_id = started.read_text()

        # When SIGTERM stops the worker
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)

        # Then it exits cleanly and its log names the task handed back
        assert worker.returncode == 0, stderr
        assert "WARNING" in stderr and f"long (id {task_id})" in stderr, stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

    # And the next worker runs the same task again without waiting for its expiry
    started.unlink()
    again = _start_worker(tmp_path, "long_app:build")
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and again.poll() is None:
            assert time.monotonic() < deadline, "the task handed back never started again"
            time.sleep(0.05)
        assert started.read_text() == task_id
        assert cli.json("workflows", "show", "waits", "one")["is_running"]
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=60)


def test_worker_second_signal_ends_the_grace_period_and_hands_tasks_back(
    cli: Cli, db_url: str, tmp_path: Path
) -> None:
    # Given a worker with a 600 s grace period running a task that would run for ever
    (tmp_path / "long_app.py").write_text(textwrap.dedent(LONG_TASK_APP.format(url=db_url)))
    started = tmp_path / "long-started"
    stderr_path = tmp_path / "worker.stderr"
    with stderr_path.open("w") as stderr_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "cereal", "worker", "long_app:build", "--grace-period", "600"],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            text=True,
        )
    try:
        cli("workflows", "enqueue", "waits", "one")
        deadline = time.monotonic() + 60
        while not started.exists() and worker.poll() is None:
            assert time.monotonic() < deadline, "the long task never started"
            time.sleep(0.05)
        task_id = started.read_text()

        # When a first SIGTERM starts the stop, which says how long the tasks may take
        worker.send_signal(signal.SIGTERM)
        while "600 s left" not in stderr_path.read_text() and worker.poll() is None:
            assert time.monotonic() < deadline + 60, stderr_path.read_text()
            time.sleep(0.05)
        # and a second signal (Ctrl+C) arrives during the grace period
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=60)

        # Then the worker ended the grace period at once, handed the task back, and exited
        stderr = stderr_path.read_text()
        assert worker.returncode == 0, stderr
        assert "SIGINT received again: grace period ended" in stderr, stderr
        assert "handed back" in stderr and f"long (id {task_id})" in stderr, stderr
        # and the workflow still waits for the task: it was not reported LOST
        shown = cli.json("workflows", "show", "waits", "one")
        assert shown["is_running"], shown
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_workflows_events_shows_a_task_lost_to_an_invalid_retry_policy(
    cli: Cli, tmp_path: Path
) -> None:
    # Given a task a sweep reported LOST because its stored retry policy was invalid
    await lose_a_task_to_a_bad_policy(str(tmp_path / "cli.db"), "orders", "o-1")

    # When its instance's events are listed
    shown = cli("workflows", "events", "orders", "o-1").stdout
    listed = cli.json("workflows", "events", "orders", "o-1")

    # Then the LOST outcome says why
    assert "lost: invalid retry policy: max_attempts must be an int, got float" in shown
    assert [(each["type"], each["task_status"]) for each in listed] == [
        ("start", None),
        ("task_complete", "lost"),
    ]
    assert listed[1]["error_text"].startswith("invalid retry policy: max_attempts")
    assert listed[1]["pending"] is True
    # and the history keeps when the task was enqueued and how many attempts it took
    assert listed[0]["task_enqueued_at"] is None and listed[0]["task_attempts"] is None
    assert listed[1]["task_attempts"] == 1
    assert listed[1]["task_enqueued_at"] <= listed[1]["enqueued_at"]


async def _seed_history(db_url: str, *, completed: int, left: int) -> None:
    """wf/big: ``completed`` task completions in its history and ``left`` tasks still queued."""
    from cereal.drivers import open_driver
    from cereal.models import NewTask

    driver = open_driver(db_url)
    await driver.init()
    try:
        await driver.enqueue_workflow("wf", "big", None)
        _, decision = await driver.dequeue_workflow(["wf"])
        async with decision:
            done = [NewTask("t", None) for _ in range(completed)]
            await decision.continue_(None, [*done, *(NewTask("later", None) for _ in range(left))])
        while batch := await driver.dequeue_tasks("t", 100):
            for _, lease in batch:
                await lease.succeed(None)
    finally:
        await driver.close()


async def test_workflows_show_pages_events_and_tasks_newest_first(cli: Cli, db_url: str) -> None:
    await _seed_history(db_url, completed=25, left=5)

    first = cli.json("workflows", "show", "wf", "big", "--limit", "10")
    seqs = [event["seq"] for event in first["events"]]
    assert len(seqs) == 10 and seqs == sorted(seqs, reverse=True)
    assert first["events"][0]["type"] == "task_complete"
    assert first["older_events"] == seqs[-1]
    walked = list(seqs)
    cursor = first["older_events"]
    while cursor is not None:
        page = cli.json(
            "workflows", "show", "wf", "big", "-n", "10", "--events-before", str(cursor)
        )
        walked.extend(event["seq"] for event in page["events"])
        cursor = page["older_events"]
    assert len(walked) == len(set(walked)) == 26  # the start and 25 completions
    assert walked == sorted(walked, reverse=True)

    tasks = cli.json("workflows", "show", "wf", "big", "--limit", "3")
    assert [task["task_name"] for task in tasks["tasks"]] == ["later"] * 3
    ids = [int(task["task_id"]) for task in tasks["tasks"]]
    assert ids == sorted(ids, reverse=True)
    rest = cli.json(
        "workflows", "show", "wf", "big", "-n", "3", "--tasks-before", tasks["older_tasks"]
    )
    assert len(rest["tasks"]) == 2 and rest["older_tasks"] is None
    assert max(int(task["task_id"]) for task in rest["tasks"]) < min(ids)

    text = cli("workflows", "show", "wf", "big", "--limit", "4").stdout
    assert "4 event(s), newest first" in text
    assert f"--events-before {seqs[3]} shows the next page" in text
    assert "4 task(s), newest first" in text
    bad = cli("workflows", "show", "wf", "big", "--tasks-before", "nope", check=False)
    assert "before must be a task id" in _one_error_line(bad)


async def test_workflows_events_pages_back_through_a_long_history(cli: Cli, db_url: str) -> None:
    await _seed_history(db_url, completed=25, left=0)

    first = cli.json("workflows", "events", "wf", "big", "--limit", "10")
    seqs = [event["seq"] for event in first]
    assert len(seqs) == 10 and seqs == sorted(seqs)  # the newest ten, listed oldest first
    walked = list(seqs)
    text = cli("workflows", "events", "wf", "big", "-n", "10").stdout
    assert f"--before {seqs[0]} shows the next page" in text
    cursor = seqs[0]
    while True:
        page = cli.json("workflows", "events", "wf", "big", "-n", "10", "--before", str(cursor))
        assert all(event["seq"] < cursor for event in page)
        walked.extend(event["seq"] for event in page)
        if len(page) < 10:
            break
        cursor = page[0]["seq"]
    assert len(walked) == len(set(walked)) == 26  # the start and 25 completions
