"""``cereal worker`` says which database it uses, and warns when ``--db`` names another."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.system._cereal_process import LiveProcess, cereal, live_cereal

APP = """
import cereal


class Noop:
    def on_start(self, w, ev):
        return w.complete(None)

    def on_task_complete(self, w, ev):
        return w.continue_(None)

    def on_cancel(self, w, ev):
        return w.fail("cancelled")


async def shout(task):
    return "!"


manager = cereal.Manager(cereal.open_driver({url!r}))
manager.register_workflow_executor("greet-all", Noop())
manager.register_workflow_executor("audit", Noop())
manager.register_task_executor("shout", shout)
"""


def run_worker_until_started(
    tmp_path: Path, url: str, *global_options: str, env: dict[str, str] | None = None
) -> str:
    """Start ``cereal [OPTIONS] worker app:manager``, stop it once started; its stderr."""
    (tmp_path / "db_app.py").write_text(textwrap.dedent(APP.format(url=url)))
    with live_cereal(*global_options, "worker", "db_app:manager", cwd=tmp_path, env=env) as worker:
        worker.wait_for_line("started")
        worker.process.send_signal(signal.SIGINT)
        status, stderr = worker.finish()
    assert status == 130, stderr
    return stderr


def test_start_line_names_the_managers_database_and_registrations(tmp_path: Path) -> None:
    stderr = run_worker_until_started(tmp_path, "sqlite:///app.db")

    started = next(line for line in stderr.splitlines() if "started" in line)
    assert f"on sqlite:///{tmp_path.resolve() / 'app.db'};" in started
    assert "workflows: greet-all, audit;" in started
    assert "tasks: shout;" in started
    assert "warning" not in stderr


def test_start_line_names_the_event_loop_and_the_variable_chooses_it(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")  # the dev environment installs the extra
    default = run_worker_until_started(tmp_path, "sqlite:///app.db")
    forced = run_worker_until_started(
        tmp_path, "sqlite:///app.db", env={"CEREAL_EVENT_LOOP": "asyncio"}
    )

    def started(stderr: str) -> str:
        return next(line for line in stderr.splitlines() if "started" in line)

    assert "; uvloop event loop;" in started(default)
    assert "; asyncio event loop;" in started(forced)


def test_an_unknown_event_loop_choice_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "db_app.py").write_text(textwrap.dedent(APP.format(url="sqlite:///app.db")))
    result = cereal("worker", "db_app:manager", cwd=tmp_path, env={"CEREAL_EVENT_LOOP": "trio"})

    assert result.returncode == 1
    assert "CEREAL_EVENT_LOOP='trio' is not one of auto, asyncio, uvloop" in result.stderr
    assert not (tmp_path / "app.db").exists()


def test_db_naming_another_database_is_reported_as_ignored(tmp_path: Path) -> None:
    stderr = run_worker_until_started(tmp_path, "sqlite:///app.db", "--db", "sqlite:///other.db")

    warning = next(line for line in stderr.splitlines() if line.startswith("warning:"))
    assert "ignored by 'cereal worker'" in warning
    assert f"it names sqlite:///{tmp_path.resolve() / 'other.db'}" in warning
    assert f"its Manager's database sqlite:///{tmp_path.resolve() / 'app.db'}" in warning


def test_db_naming_the_same_database_is_no_warning(tmp_path: Path) -> None:
    same = f"sqlite:///{tmp_path / 'app.db'}"  # absolute here, relative in the app
    stderr = run_worker_until_started(tmp_path, "sqlite:///app.db", "--db", same)
    assert "warning" not in stderr


def test_postgres_start_line_never_shows_the_password(tmp_path: Path, postgres_dsn: str) -> None:
    parts = urlsplit(postgres_dsn)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        pytest.skip("the test server's DSN is not a URL with a host")
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    # trust authentication ignores the password: the worker starts, and must not show it
    with_password = urlunsplit(parts._replace(netloc=f"{user}:s3cr3t-pw@{host}"))

    stderr = run_worker_until_started(tmp_path, with_password, "--db", "memory://")

    assert "s3cr3t-pw" not in stderr
    started = next(line for line in stderr.splitlines() if "started" in line)
    assert f"on postgresql://{user}@{parts.hostname}" in started
    assert "ignored by 'cereal worker'" in stderr


SLOW_APP = """
import asyncio
from pathlib import Path

import cereal


class OneTask:
    def on_start(self, w, ev):
        w.enqueue_task("slow", None)
        return w.continue_(None)

    def on_task_complete(self, w, ev):
        return w.complete(None)

    def on_cancel(self, w, ev):
        return w.fail("cancelled")


async def slow(task):
    Path("task-started").write_text("yes")
    await asyncio.sleep(600)


manager = cereal.Manager(
    cereal.open_driver({url!r}), task_poll_interval=0.1, workflow_poll_interval=0.1
)
manager.register_workflow_executor("wait", OneTask())
manager.register_task_executor("slow", slow)
"""


def _start_slow_task(tmp_path: Path, url: str, worker: LiveProcess) -> None:
    """Enqueue the one-task workflow through the CLI and wait until its task runs."""
    worker.wait_for_line("started")
    enqueued = cereal("--db", url, "workflows", "enqueue", "wait", "one", cwd=tmp_path)
    assert enqueued.returncode == 0, enqueued.stderr
    deadline = time.monotonic() + 60
    while not (tmp_path / "task-started").exists():
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)


def test_a_second_sigint_ends_the_grace_period_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    (tmp_path / "slow_app.py").write_text(textwrap.dedent(SLOW_APP.format(url=url)))
    with live_cereal("worker", "slow_app:manager", "--grace-period", "600", cwd=tmp_path) as worker:
        _start_slow_task(tmp_path, url, worker)

        # the first SIGINT starts a graceful stop that would wait 600 s for the task;
        # the second ends that wait: the task is handed back and the worker exits (130)
        worker.process.send_signal(signal.SIGINT)
        worker.wait_for_line("SIGINT received: stopping")
        worker.process.send_signal(signal.SIGINT)
        status, stderr = worker.finish(timeout=60)

    assert status == 130, stderr
    assert "SIGINT received again: grace period ended" in stderr
    assert "handed back" in stderr
    assert "Traceback" not in stderr


def test_a_third_sigint_ends_a_stop_stuck_handing_tasks_back(
    tmp_path: Path, postgres_dsn: str
) -> None:
    (tmp_path / "slow_app.py").write_text(textwrap.dedent(SLOW_APP.format(url=postgres_dsn)))
    with live_cereal("worker", "slow_app:manager", "--grace-period", "600", cwd=tmp_path) as worker:
        _start_slow_task(tmp_path, postgres_dsn, worker)
        # Given the running task's row locked by another transaction: a hand-back waits for it
        with psycopg.connect(postgres_dsn) as blocker:
            locked = blocker.execute(
                "SELECT id FROM cereal_tasks WHERE task_name = 'slow' FOR UPDATE"
            ).fetchall()
            assert len(locked) == 1

            # When a first SIGINT starts the stop, a second ends its grace period (the
            # hand-back now waits for the lock), and a third arrives
            worker.process.send_signal(signal.SIGINT)
            worker.wait_for_line("SIGINT received: stopping")
            worker.process.send_signal(signal.SIGINT)
            worker.wait_for_line("grace period ended")
            worker.process.send_signal(signal.SIGINT)

            # Then the command ends without waiting for the hand-back
            status, stderr = worker.finish(timeout=60)
            blocker.rollback()

    assert status == 130, stderr
    assert stderr.splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in stderr
    # and the task was not handed back: it returns by its lease's expiry
    with psycopg.connect(postgres_dsn) as conn:
        [(state,)] = conn.execute("SELECT state FROM cereal_tasks WHERE task_name = 'slow'")
    assert state == "running"


STUCK_STOP_APP = """
import asyncio

import cereal


class StuckStop(cereal.Manager):
    async def stop(self, *, grace_period=None):
        # a stop that never ends, whatever is cancelled: like a task hand-back that began
        # after its one cancellation was spent, waiting for a row lock nobody releases
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass


manager = StuckStop(cereal.open_driver({url!r}))
"""


def test_the_third_sigint_ends_the_command_whatever_the_stop_waits_for(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stuck.db'}"
    (tmp_path / "stuck_app.py").write_text(textwrap.dedent(STUCK_STOP_APP.format(url=url)))
    with live_cereal("worker", "stuck_app:manager", cwd=tmp_path) as worker:
        worker.wait_for_line("started")
        # Given a stop that cannot finish, its grace period ended by a second SIGINT
        worker.process.send_signal(signal.SIGINT)
        worker.wait_for_line("SIGINT received: stopping")
        worker.process.send_signal(signal.SIGINT)
        worker.wait_for_line("grace period ended")

        # When a third SIGINT arrives
        worker.process.send_signal(signal.SIGINT)

        # Then the command ends at once (asyncio.run's clean-up would wait for the stop)
        status, stderr = worker.finish(timeout=60)

    assert status == 130, stderr
    assert stderr.splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in stderr
