"""``cereal workflows show`` failure details and ``cereal worker --metrics-port`` (issue 10)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cereal import Decision, Manager, Task, WorkflowInstance, open_driver
from tests.system.test_cli import Cli, _env, _one_error_line


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'obs.db'}"


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path)


class Boom(Exception):
    pass


def _explode(task: Task) -> None:
    raise Boom("the disk is full")


class ReRaises:
    def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("explode", None)
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.complete(ev.result.get())  # type: ignore[attr-defined]  # raises the failure

    def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled")


async def _run_failing_workflow(url: str) -> None:
    manager = Manager(open_driver(url), task_poll_interval=0.05, workflow_poll_interval=0.05)
    manager.register_workflow_executor("reraise", ReRaises())
    manager.register_task_executor("explode", _explode)
    await manager.start()
    try:
        await manager.enqueue_workflow("reraise", "one")
        for _ in range(600):
            if not (await manager.get_workflow_instance("reraise", "one")).is_running():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the workflow never finished")
    finally:
        await manager.stop()


def test_show_names_the_task_failure_that_failed_the_workflow(cli: Cli, db_url: str) -> None:
    # Given a workflow failed by re-raising its task's failure
    asyncio.run(_run_failing_workflow(db_url))

    # When it is shown
    shown = cli.json("workflows", "show", "reraise", "one")
    text = cli("workflows", "show", "reraise", "one").stdout

    # Then the stored text is unchanged and the task's exception type and traceback show
    assert shown["error"] == "TaskFailedError: the disk is full"
    assert shown["error_type"] == f"{__name__}.Boom"
    assert "in _explode" in shown["error_traceback"]
    assert f"error type  {__name__}.Boom" in text
    assert "Traceback (most recent call last):" in text and "the disk is full" in text


METRICS_APP = """
from cereal import Manager, open_driver


class Echo:
    def on_start(self, w, ev):
        w.enqueue_task("echo", w.get_parameters())
        return w.continue_()

    def on_task_complete(self, w, ev):
        return w.complete(ev.result.get())

    def on_cancel(self, w, ev):
        return w.fail("cancelled")


manager = Manager(open_driver({url!r}), task_poll_interval=0.1, workflow_poll_interval=0.1)
manager.register_workflow_executor("echo", Echo())
manager.register_task_executor("echo", lambda task: task.get_parameters())
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, ConnectionError):
        return None


def test_worker_serves_metrics_that_move(cli: Cli, db_url: str, tmp_path: Path) -> None:
    (tmp_path / "metrics_app.py").write_text(textwrap.dedent(METRICS_APP.format(url=db_url)))
    port = _free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "cereal", "worker", "metrics_app:manager",
         "--metrics-port", str(port)],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 60
        while (body := _get(url)) is None:
            assert worker.poll() is None and time.monotonic() < deadline, worker.stderr
            time.sleep(0.1)
        assert 'cereal_tasks_completed_total{task="echo",workflow="echo"}' not in body

        cli("workflows", "enqueue", "echo", "one", "--parameters", "7")
        # the workflow's counter moves after its decision commits, which may be after the
        # task's: wait for both lines, not for the task's alone
        expected = [
            'cereal_tasks_completed_total{task="echo",workflow="echo"} 1.0',
            'cereal_workflows_completed_total{workflow="echo"} 1.0',
        ]
        while not all(line in (body := _get(url) or "") for line in expected):
            assert time.monotonic() < deadline, f"still waiting for {expected} in: {body}"
            time.sleep(0.1)

        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
        assert f"metrics on http://127.0.0.1:{port}/metrics (loopback only" in stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def _without_extras(tmp_path: Path) -> dict[str, str]:
    """An environment where prometheus_client and opentelemetry cannot be imported."""
    blocked = tmp_path / "blocked"
    (blocked / "opentelemetry").mkdir(parents=True)
    refuse = "raise ImportError('not installed (blocked by the test)')\n"
    (blocked / "prometheus_client.py").write_text(refuse)
    (blocked / "opentelemetry" / "__init__.py").write_text(refuse)
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), env.get("PYTHONPATH", "")])
    return env


def test_metrics_host_widens_where_metrics_are_served(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "metrics_app.py").write_text(textwrap.dedent(METRICS_APP.format(url=db_url)))
    port = _free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "cereal", "worker", "metrics_app:manager",
         "--metrics-port", str(port), "--metrics-host", "0.0.0.0"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _get(f"http://127.0.0.1:{port}/metrics") is None:
            assert worker.poll() is None and time.monotonic() < deadline, worker.stderr
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        assert f"metrics on http://0.0.0.0:{port}/metrics\n" in stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def test_metrics_port_without_the_extra_names_it(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "metrics_app.py").write_text(textwrap.dedent(METRICS_APP.format(url=db_url)))
    done = subprocess.run(
        [sys.executable, "-m", "cereal", "worker", "metrics_app:manager", "--metrics-port", "0"],
        cwd=tmp_path, env=_without_extras(tmp_path), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert "cereal-workflows[metrics]" in _one_error_line(done)


MANAGER_WITHOUT_EXTRAS = """
import asyncio
import sys

from cereal import Manager
from cereal.drivers.memory import MemoryDriver


class Echo:
    def on_start(self, w, ev):
        w.enqueue_task("echo", 5)
        return w.continue_()

    def on_task_complete(self, w, ev):
        return w.complete(ev.result.get())

    def on_cancel(self, w, ev):
        return w.fail("cancelled")


async def main():
    manager = Manager(MemoryDriver(), task_poll_interval=0.05, workflow_poll_interval=0.05)
    manager.register_workflow_executor("echo", Echo())
    manager.register_task_executor("echo", lambda task: task.get_parameters())
    await manager.start()
    await manager.enqueue_workflow("echo", "one")
    while (await manager.get_workflow_instance("echo", "one")).is_running():
        await asyncio.sleep(0.02)
    await manager.stop()
    print((await manager.get_workflow_instance("echo", "one")).get_result())
    assert "prometheus_client" not in sys.modules and "opentelemetry" not in sys.modules


asyncio.run(main())
"""


def test_manager_runs_without_the_extras(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MANAGER_WITHOUT_EXTRAS],
        cwd=tmp_path, env=_without_extras(tmp_path), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
