"""The project builds into a wheel that installs and runs in a clean virtualenv."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT = 600


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("CEREAL_DATABASE_URL", None)
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(STEP_TIMEOUT * 3)
def test_built_wheel_installs_in_a_clean_venv_and_runs(tmp_path: Path) -> None:
    # Given a wheel built the documented way
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT], cwd=tmp_path)
    wheels = list(dist.glob("cereal_workflows-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())

    # When it is installed into a new virtualenv (no access to this checkout's packages)
    clean = tmp_path / "clean"
    venv.EnvBuilder(with_pip=True).create(clean)
    bin_dir = clean / ("Scripts" if os.name == "nt" else "bin")
    run(
        [
            bin_dir / "python",
            "-m",
            "pip",
            "install",
            "-q",
            wheels[0],
            "-c",
            ROOT / "constraints.txt",
        ],
        cwd=tmp_path,
    )

    # Then the cereal command runs from it, with the package data (migrations) inside
    help_text = run([bin_dir / "cereal", "--help"], cwd=tmp_path).stdout
    assert "workflows" in help_text and "schedules" in help_text
    assert run([bin_dir / "cereal", "--version"], cwd=tmp_path).stdout.startswith("cereal ")
    migrated = run([bin_dir / "cereal", "--db", "sqlite:///installed.db", "migrate"], cwd=tmp_path)
    assert "applied 0001_initial" in migrated.stdout
    imported = run(
        [bin_dir / "python", "-c", "import cereal, sys; print(cereal.__file__)"], cwd=tmp_path
    )
    assert str(clean) in imported.stdout  # the installed copy, not this checkout
