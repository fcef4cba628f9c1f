#!/usr/bin/env python3
"""Bootstrap the development environment, then run a project command in it.

Run with the system Python (3.11+, standard library only):

    python3 scripts/dev.py demo [cereal demo options]   # run the demo
    python3 scripts/dev.py test [pytest options]        # ruff, ruff format, mypy, import-linter, pytest
    python3 scripts/dev.py lock                         # refresh constraints.txt from the venv

``test`` and ``lock`` use ``.venv``: created when missing, and the project
(re)installed with ``pip install -e '.[dev]' -c constraints.txt`` whenever
pyproject.toml or constraints.txt changed since the last install (a stamp
file in the environment records their hash). ``demo`` needs only the
project's own three dependencies, so it uses ``.venv-demo`` the same way
with ``pip install -e . -c constraints.txt`` (a few MB, not the test
tools). pip shows its own progress while it installs. Exit codes of the
steps are propagated. Ctrl+C reaches the running step too (same process
group); this script then waits for the step to end and exits with its
status, without a traceback of its own.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Environment:
    """A virtual environment with the project installed (editable) and some extras."""

    path: Path
    requirement: str  # what pip installs: "." or ".[dev]"
    what: str  # said while installing

    @property
    def bin(self) -> Path:
        return self.path / ("Scripts" if os.name == "nt" else "bin")

    @property
    def python(self) -> Path:
        return self.bin / ("python.exe" if os.name == "nt" else "python")

    @property
    def stamp(self) -> Path:
        return self.path / ".cereal-dev-install"


DEV = Environment(ROOT / ".venv", ".[dev]", "the project and its dev dependencies")
DEMO = Environment(ROOT / ".venv-demo", ".", "the project (the demo needs nothing more)")
VENV = DEV.path
BIN = DEV.bin
PYTHON = DEV.python
DEMO_PYTHON = DEMO.python
INPUTS = ("pyproject.toml", "constraints.txt")
LOCK_HEADER = """\
# Pinned versions of every dependency of the dev environment (the lock).
# scripts/dev.py installs with: pip install -e '.[dev]' -c constraints.txt
# Refresh after changing dependencies in pyproject.toml:
#     python3 scripts/dev.py lock
# (that is: .venv/bin/pip install -U -e '.[dev]' && .venv/bin/pip freeze --exclude-editable)
"""
PYTEST_NO_TESTS = 5
INTERRUPTED = 130


def say(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


def run(command: Sequence[str | Path]) -> int:
    say("$ " + " ".join(str(part) for part in command))
    process = subprocess.Popen([str(part) for part in command], cwd=ROOT)
    try:
        return process.wait()
    except KeyboardInterrupt:
        pass  # the step got the same Ctrl+C: let it finish on its own
    try:
        return process.wait()
    except KeyboardInterrupt:  # a second Ctrl+C: do not wait any longer
        process.kill()
        process.wait()
        return INTERRUPTED


def inputs_digest() -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        path = ROOT / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()


def ensure_venv(env: Environment = DEV) -> None:
    """Create ``env`` if needed and install the project when its inputs changed."""
    if sys.version_info < (3, 11):
        sys.exit(f"[dev] Python 3.11+ is required, this is {sys.version.split()[0]}")
    if not env.python.exists():
        say(f"creating virtualenv {env.path}")
        venv.EnvBuilder(with_pip=True).create(env.path)
    wanted = inputs_digest()
    installed = env.stamp.read_text().strip() if env.stamp.exists() else ""
    if installed == wanted and (env.bin / "cereal").exists():
        return
    say(f"installing {env.what} (first run, or the dependencies changed)")
    command: list[str | Path] = [
        env.python, "-m", "pip", "install", "--disable-pip-version-check", "-e", env.requirement
    ]  # fmt: skip
    if (ROOT / "constraints.txt").exists():
        command += ["-c", "constraints.txt"]
    code = run(command)
    if code != 0:
        sys.exit(f"[dev] pip install failed with exit code {code}")
    env.stamp.write_text(wanted + "\n")


def cmd_demo(args: Sequence[str]) -> int:
    return run([DEMO_PYTHON, "-m", "cereal", "demo", *args])


def cmd_test(args: Sequence[str]) -> int:
    steps: list[tuple[str, list[str | Path]]] = [
        ("ruff check", [BIN / "ruff", "check", "src", "tests"]),
        ("ruff format --check", [BIN / "ruff", "format", "--check", "src", "tests"]),
        ("mypy --strict", [BIN / "mypy", "--strict"]),
        ("import-linter (layers)", [BIN / "lint-imports"]),
        ("pytest", [BIN / "pytest", *args]),
    ]
    for name, command in steps:
        code = run(command)
        if name == "pytest" and code == PYTEST_NO_TESTS:
            say("FAILED: pytest collected no tests (exit code 5)")
            return code
        if code != 0:
            say(f"FAILED: {name} (exit code {code})")
            return code
        say(f"ok: {name}")
    say("all checks passed")
    return 0


def cmd_lock(args: Sequence[str]) -> int:
    code = run([PYTHON, "-m", "pip", "install", "-q", "-U", "-e", ".[dev]"])
    if code != 0:
        return code
    frozen = subprocess.run(
        [str(PYTHON), "-m", "pip", "freeze", "--exclude-editable"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (ROOT / "constraints.txt").write_text(LOCK_HEADER + frozen)
    DEV.stamp.write_text(inputs_digest() + "\n")
    say("constraints.txt refreshed")
    return 0


COMMANDS = {"demo": cmd_demo, "test": cmd_test, "lock": cmd_lock}
ENVIRONMENTS = {"demo": DEMO, "test": DEV, "lock": DEV}


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        ensure_venv(ENVIRONMENTS[argv[0]])
        return COMMANDS[argv[0]](argv[1:])
    except KeyboardInterrupt:  # between steps
        say("interrupted")
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
