"""Worker processes for the scenarios, and reading their CPU and memory from /proc."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0


@asynccontextmanager
async def workers(
    url: str, count: int, *, task_workers: int = 8, tasks: bool = True
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """``count`` worker processes on ``url``, each with its own Manager, started and READY."""
    command = [sys.executable, "-m", "bench.worker", url, "--task-workers", str(task_workers)]
    if not tasks:
        command.append("--no-tasks")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), READY_TIMEOUT_S)
            if line.strip() != b"READY":
                raise RuntimeError(f"bench worker did not start (exit {proc.poll()}): {line!r}")
        yield procs
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()  # EOF: the worker stops gracefully
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")
