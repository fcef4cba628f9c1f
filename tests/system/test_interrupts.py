"""Ctrl+C on the demo, directly and through ``scripts/dev.py``: one line, no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.system._cereal_process import COMMAND_TIMEOUT, cereal, cli_env, default_sigint

ROOT = Path(__file__).resolve().parents[2]


def wait_until_the_demo_batch_exists(db: str, cwd: Path) -> None:
    """The demo is inside its event loop once its batch instance is stored."""
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while time.monotonic() < deadline:
        listed = cereal("--db", db, "workflows", "list", "--json", cwd=cwd)
        if listed.returncode == 0 and json.loads(listed.stdout):
            return
        time.sleep(0.2)
    raise AssertionError("the demo never stored its batch")


def interrupt_like_a_terminal(command: list[str], db: str, cwd: Path) -> tuple[int, str]:
    """Run ``command`` in its own process group, Ctrl+C the group once the demo runs."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    try:
        wait_until_the_demo_batch_exists(db, cwd)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl+C does
        _, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr


def test_ctrl_c_on_the_demo_ends_with_one_line_after_the_progress_bar(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    command = [sys.executable, "-m", "cereal", "--db", db, "demo", "--items", "20000"]

    status, stderr = interrupt_like_a_terminal(command, db, tmp_path)

    assert status == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1] == "error: interrupted", stderr  # the bar is not drawn again after it
    assert "Traceback" not in stderr


def test_ctrl_c_on_dev_py_demo_prints_no_traceback(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    # scripts/dev.py demo, with this interpreter instead of .venv-demo's and a test database
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path

        sys.path.insert(0, {str(ROOT / "scripts")!r})
        import dev

        dev.DEMO_PYTHON = Path(sys.executable)
        sys.exit(dev.cmd_demo(["--items", "20000", "--db", {db!r}]))
        """
    )

    status, stderr = interrupt_like_a_terminal([sys.executable, "-c", script], db, tmp_path)

    assert status == 130, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1] == "error: interrupted", stderr
