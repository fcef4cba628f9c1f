"""``cereal serve`` as a real process: kill -9 mid-run loses nothing; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from bench.pg_cluster import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

import grpc
from cereal import Decision, Manager, Task, TaskStatus, WorkflowInstance
from cereal.drivers.grpc import GrpcDriver
from tests.plugins.manager import FAST_OPTIONS, eventually, wait_finished

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TASKS_PER_RUN = 3


class ServeProcess:
    """``python -m cereal --db URL serve --port PORT`` in a child process."""

    def __init__(
        self, database_url: str, port: int, log: Path, extra_args: Sequence[str] = ()
    ) -> None:
        self.database_url, self.port, self.log = database_url, port, log
        self.extra_args = tuple(extra_args)  # more ``serve`` options
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "cereal", "--db", self.database_url, "serve"),
                    *("--port", str(self.port), "--task-expiry", "1"),
                    *self.extra_args,
                ],
                cwd=REPO,
                stderr=sink,
                stdout=sink,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "cereal serve did not become healthy"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[ServeProcess]:
    served = ServeProcess(f"sqlite:///{tmp_path / 'served.db'}", free_port(), tmp_path / "log")
    yield served
    if served.process is not None and served.process.poll() is None:
        served.process.kill()
        served.process.wait()


def _squares(gate: asyncio.Event, started: asyncio.Event) -> Any:
    async def square(task: Task) -> int:
        started.set()
        await gate.wait()
        value: int = task.get_parameters()
        return value * value

    return square


class SumOfSquares:
    """Square 1..N in tasks; a LOST task is enqueued again; complete with the sum."""

    def on_start(self, w: WorkflowInstance, ev: Any) -> Decision:
        for i in range(1, TASKS_PER_RUN + 1):
            w.enqueue_task("square", i)
        return w.continue_({"sum": 0, "done": 0})

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        state = w.get_payload()
        result = ev.result
        if result.status != TaskStatus.SUCCESS:
            w.enqueue_task("square", result.get_parameters())
            return w.continue_(state)
        state = {"sum": state["sum"] + result.get(), "done": state["done"] + 1}
        if state["done"] == TASKS_PER_RUN:
            return w.complete(state["sum"])
        return w.continue_(state)

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


async def test_kill_9_of_the_server_mid_run_loses_nothing(serve_process: ServeProcess) -> None:
    serve_process.start()
    gate, started = asyncio.Event(), asyncio.Event()
    driver = GrpcDriver(f"127.0.0.1:{serve_process.port}", call_timeout=60)
    manager = Manager(driver, **{**FAST_OPTIONS, "task_expiry": 1.0})
    manager.register_workflow_executor("squares", SumOfSquares())
    manager.register_task_executor("square", _squares(gate, started), workers=4)
    await manager.start()
    try:
        runs = [f"run-{i}" for i in range(4)]
        for run in runs:
            await manager.enqueue_workflow("squares", run)
        # When the server dies (SIGKILL) while tasks are running and events are queued
        await asyncio.wait_for(started.wait(), 30)
        serve_process.kill()
        gate.set()  # running tasks now try to report through a dead server
        serve_process.start()  # same port, same store

        # Then every workflow finishes with the right result
        expected = sum(i * i for i in range(1, TASKS_PER_RUN + 1))
        for run in runs:
            final = await wait_finished(manager, "squares", run, timeout=90)
            assert final.get_result() == expected
    finally:
        await manager.stop(grace_period=1.0)
    assert serve_process.terminate() == 0


async def test_sigterm_stops_gracefully_and_connections_are_logged(
    serve_process: ServeProcess,
) -> None:
    serve_process.start()
    driver = GrpcDriver(f"127.0.0.1:{serve_process.port}", domain="billing")
    await driver.init()
    await driver.enqueue_workflow("wf", "inst", None)
    await driver.close()
    await eventually(
        lambda: "client disconnected" in serve_process.log.read_text(), what="disconnect logged"
    )
    assert serve_process.terminate() == 0
    log = serve_process.log.read_text()
    assert log.count("client connected") == 1, log
    assert "domain=billing" in log
    assert "cereal serve stopped" in log
    # the domain's store is a file of its own next to the served one
    assert (
        Path(serve_process.database_url.removeprefix("sqlite:///")).parent / "served.billing.db"
    ).exists()


class ReportOnce:
    """Run one task; complete with how it ended (a LOST task is not enqueued again)."""

    def on_start(self, w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("square", 9)
        return w.continue_(None)

    def on_task_complete(self, w: WorkflowInstance, ev: Any) -> Decision:
        result = ev.result
        return w.complete(
            {"status": str(result.status), "attempts": result.attempts, "value": result.get()}
        )

    def on_cancel(self, w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("cancelled")


@pytest.mark.parametrize("restart", ["kill -9", "SIGTERM"])
async def test_a_task_finishing_after_a_server_restart_reports_success_once(
    serve_process: ServeProcess, restart: str
) -> None:
    serve_process.start()
    gate, started = asyncio.Event(), asyncio.Event()
    driver = GrpcDriver(f"127.0.0.1:{serve_process.port}", call_timeout=60)
    # the lease (30 s from its last heartbeat) outlives the restart
    manager = Manager(driver, **{**FAST_OPTIONS, "task_expiry": 30.0})
    manager.register_workflow_executor("once", ReportOnce())
    manager.register_task_executor("square", _squares(gate, started))
    await manager.start()
    try:
        await manager.enqueue_workflow("once", "run")
        await asyncio.wait_for(started.wait(), 30)

        # When the server restarts while the task runs
        if restart == "kill -9":
            serve_process.kill()
        else:
            assert serve_process.terminate() == 0
        serve_process.start()  # same port, same store
        gate.set()  # the task finishes once the new server is up

        # Then its workflow gets its result once: not LOST, not run again
        final = await wait_finished(manager, "once", "run", timeout=60)
        assert final.get_result() == {"status": "success", "attempts": 1, "value": 81}
    finally:
        await manager.stop(grace_period=1.0)
    assert serve_process.terminate() == 0
