"""Worker processes for the scenarios, and reading their CPU and memory from /proc."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0


@asynccontextmanager
async def workers(
    url: str,
    count: int,
    *,
    task_workers: int = 8,
    tasks: bool = True,
    wrap: Callable[[int], list[str]] | None = None,
    hold: bool = False,
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """``count`` worker processes on ``url``, each with its own Manager, started and READY.

    ``wrap(i)``, when given, is a command prefix for worker ``i`` (a profiler
    such as ``py-spy record ... --``); the Popen is then the wrapper's, see
    :func:`python_pid`. With ``hold`` the workers are READY but their
    Managers not started: :func:`release` starts them all at once.
    """
    command = [sys.executable, "-m", "bench.worker", url, "--task-workers", str(task_workers)]
    if not tasks:
        command.append("--no-tasks")
    if hold:
        command.append("--hold")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [*(wrap(i) if wrap else []), *command],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for i in range(count)
    ]
    try:
        for proc in procs:
            await asyncio.wait_for(asyncio.to_thread(_await_ready, proc), READY_TIMEOUT_S)
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
            if proc.stdout is not None:
                proc.stdout.close()


async def release(procs: list[subprocess.Popen[bytes]]) -> None:
    """Start the Managers of workers started with ``hold`` (one ``GO`` line each), all at once.

    Returns once every one says its Manager has started.
    """
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"GO\n")
        proc.stdin.flush()
    for proc in procs:
        await asyncio.wait_for(asyncio.to_thread(_await_line, proc, b"STARTED"), READY_TIMEOUT_S)


def _await_ready(proc: subprocess.Popen[bytes]) -> None:
    _await_line(proc, b"READY")


def _await_line(proc: subprocess.Popen[bytes], wanted: bytes) -> None:
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if line.strip() == wanted:
            return
        # a wrapper's own chatter (py-spy prints "py-spy> Sampling ...") comes first
    raise RuntimeError(f"bench worker did not say {wanted.decode()} (exit {proc.poll()})")


def python_pid(proc: subprocess.Popen[bytes]) -> int:
    """The worker's own pid: ``proc``'s, or its only child's when a wrapper started it."""
    children = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent_of(entry) == proc.pid
    ]
    return children[0] if len(children) == 1 else proc.pid


def _parent_of(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):  # the process has gone
        return None


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
