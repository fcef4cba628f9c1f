#!/usr/bin/env python3
"""Run the crash suite: ``python3 bench/crash.py [--rounds N] [--seed S] [--json]``.

Kills workers mid-task and mid-decision, crashes PostgreSQL and ``cereal
serve``, over thousands of workflows, then prints how many workflows were
lost, task results applied twice and instances stuck (see
``bench/crash_suite.py`` and docs/crash-suite.md). Needs ``initdb`` and
``pg_ctl``: the suite crashes a private cluster, never a server you run.

Runs in any interpreter that can import cereal, psycopg and grpc, else in the
project's ``.venv`` (bootstrapped as ``python3 scripts/dev.py test`` does).
This launcher uses only the standard library until it has that interpreter.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _can_run() -> bool:
    try:
        import psycopg  # noqa: F401

        import cereal  # noqa: F401
        import grpc  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    """Pick the interpreter, then run the suite in it."""
    if not _can_run():
        sys.path.insert(0, str(ROOT / "scripts"))
        import dev

        dev.ensure_venv(dev.DEV)
        python = str(dev.DEV.python)
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.path.insert(0, str(ROOT))
    from bench import crash_suite

    sys.exit(crash_suite.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
