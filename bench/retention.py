#!/usr/bin/env python3
"""Measure history trimming: ``python3 bench/retention.py [--runs N] [--rounds R] [--only STORE]``.

A million finished runs per store, trimmed by per-workflow rules while
workflows are enqueued (their latency timed), then a soak of fill-and-trim
rounds (the store's size after each). See ``bench/retention_bench.py`` and
docs/retention.md. PostgreSQL is reached through ``BENCH_DSN`` (default
``postgresql://root@127.0.0.1:5432/bench``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import project_venv  # standard library only: runs before the project imports


def main() -> None:
    """Pick the interpreter, then measure in it."""
    project_venv.ensure(__file__, ("cereal", "psycopg"))
    from bench import retention_bench

    sys.exit(retention_bench.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
