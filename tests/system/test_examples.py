"""Every example script runs to completion (exit 0) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED: dict[str, str | tuple[str, ...]] = {
    "01_hello_workflow.py": "hello/first finished: Hello, world!",
    "02_task_results.py": "task divide(10/0) failed: division by zero",
    "03_chain_and_parallel.py": "parallel 'ap' failed: region unavailable",
    "04_schedules.py": "the schedule ran 2 times",
    "05_cancel_and_kill.py": "long-job/doomed failed: killed",
    "06_sync_vs_async_executors.py": "async-fanout result: [0, 1, 4, 9]",
    "07_flow_control.py": (
        "triage order: urgent-0, urgent-1, urgent-2, bulk-0, bulk-1, bulk-2",
        "signup finished: 3 tasks, welcome mails sent: 1",
        "onboarding: 4 runs finished, the limit of 2 started at once held",
    ),
}


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXAMPLES.parent,
        check=False,
    )


def assert_printed(script: str, stdout: str) -> None:
    """Every line ``script`` promises is a line of its output."""
    promised = EXPECTED[script]
    for line in (promised,) if isinstance(promised, str) else promised:
        assert line in stdout.splitlines(), stdout


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_on_memory(script: str) -> None:
    done = run(script)

    assert done.returncode == 0, done.stderr
    assert_printed(script, done.stdout)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_on_sqlite(script: str, tmp_path: Path) -> None:
    done = run(script, "--db", f"sqlite:///{tmp_path / 'examples.db'}")

    assert done.returncode == 0, done.stderr
    assert_printed(script, done.stdout)
