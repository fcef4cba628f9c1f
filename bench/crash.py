#!/usr/bin/env python3
"""Run the crash suite: ``python3 bench/crash.py [--rounds N] [--seed S] [--json]``.

Kills workers mid-task and mid-decision, crashes PostgreSQL and ``cereal
serve``, over thousands of workflows, then prints how many workflows were
lost, task results applied twice and instances stuck (see
``bench/crash_suite.py`` and docs/crash-suite.md). Needs ``initdb`` and
``pg_ctl``: the suite crashes a private cluster, never a server you run.

Runs in any interpreter that can import cereal, psycopg and grpc, else in the
project's ``.venv`` (bootstrapped as ``python3 scripts/dev.py test`` does).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import project_venv  # standard library only: runs before the project imports


def main() -> None:
    """Pick the interpreter, then run the suite in it."""
    project_venv.ensure(__file__, ("cereal", "psycopg", "grpc"))
    from bench import crash_suite

    sys.exit(crash_suite.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
