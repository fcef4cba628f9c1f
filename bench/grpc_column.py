"""The grpc:// column: drain, single-task workflows and pickup through ``cereal serve``.

Each scenario gets a fresh PostgreSQL database served by its own ``cereal
serve`` process on a free loopback port; the client and the worker processes
open ``grpc://`` URLs. The ratios compare with the direct PostgreSQL column.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench import scenarios, stores

log = logging.getLogger("cereal.bench.grpc")

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0

# (ratio key, figure path in the grpc column, the same figure in the postgres column)
RATIOS: dict[str, tuple[str, str]] = {
    "grpc_drain_vs_postgres": ("drain", "tasks_per_s"),
    "grpc_single_vs_postgres": ("single", "workflows_per_s"),
    "grpc_pickup_task_p50_vs_postgres": ("pickup", "task_start_p50_ms"),
    "grpc_pickup_on_start_p50_vs_postgres": ("pickup", "on_start_p50_ms"),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    import grpc

    deadline = time.monotonic() + READY_TIMEOUT_S
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"cereal serve exited with {proc.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError("cereal serve did not become healthy in time")


@contextlib.asynccontextmanager
async def served(database_url: str) -> AsyncIterator[str]:
    """``cereal serve`` over ``database_url``; yields its grpc:// URL; SIGTERM at the end."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cereal", "--db", database_url, "serve", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    try:
        await asyncio.to_thread(_wait_healthy, port, proc)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_all(store: stores.PostgresStore, sizes: scenarios.Sizes) -> dict[str, Any]:
    """Drain, single and pickup through a server each; a failed scenario is reported."""
    steps: dict[str, Any] = {
        "drain": lambda url, pg: scenarios.drain(url, sizes, pg),
        "single": lambda url, pg: scenarios.single(url, sizes, pg),
        "pickup": lambda url, pg: scenarios.pickup(url, sizes),
    }
    out: dict[str, Any] = {}
    for name, step in steps.items():
        log.info("grpc: %s ...", name)
        database = store.fresh(f"grpc_{name}")
        try:
            async with served(database) as url:
                out[name] = await step(url, database)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            log.exception("grpc: %s failed", name)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        log.info("grpc: %s: %s", name, out[name])
    return out


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """Each grpc figure over the direct PostgreSQL one (None when either is missing)."""
    out: dict[str, float | None] = {}
    for key, (scenario, figure) in RATIOS.items():
        ours = result.get("grpc", {}).get(scenario, {}).get(figure)
        direct = result.get("postgres", {}).get(scenario, {}).get(figure)
        out[key] = round(ours / direct, 3) if ours and direct else None
    return out


def table(result: dict[str, Any]) -> str:
    """A small markdown table of the grpc column beside direct PostgreSQL."""
    lines = [
        "| grpc:// figure | through cereal serve | direct PostgreSQL | ratio |",
        "|---|---|---|---|",
    ]
    for key, (scenario, figure) in RATIOS.items():
        ours = result.get("grpc", {}).get(scenario, {}).get(figure)
        direct = result.get("postgres", {}).get(scenario, {}).get(figure)
        ratio = result.get("grpc_ratios", {}).get(key)
        lines.append(f"| {scenario} {figure} | {ours} | {direct} | {ratio} |")
    return "\n".join(lines)
