#!/usr/bin/env python3
"""Run the bench: ``python3 bench/run.py [--quick]`` (see bench/README.md).

``--scenario NAME`` runs one scenario alone (in any interpreter that can
import cereal and psycopg, like ``--quick``). ``--profile`` runs only the drain,
with py-spy recording the worker processes, and writes the profiles to
bench/results/.

Full mode runs in ``.venv-bench`` (created here when missing: the project plus
the peers' dependencies, pinned by bench/constraints.txt) and measures the
peers too. ``--quick`` (small sizes, no peers) runs in any interpreter that
can import cereal and psycopg, else in ``.venv-bench`` as well. This launcher
uses only the standard library until it has the right interpreter.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bench"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".cereal-bench-install"
INPUTS = (
    "pyproject.toml",
    "bench/run.py",
    "bench/requirements.txt",
    "bench/constraints.txt",
)


def _digest() -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        digest.update(name.encode() + (ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_bench_venv() -> Path:
    """Create .venv-bench if needed; (re)install when its inputs changed."""
    if not PYTHON.exists():
        print(f"[bench] creating {VENV}", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = _digest()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        print(
            "[bench] installing the project and the peers' dependencies",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(
            [
                str(PYTHON),
                "-m",
                "pip",
                "install",
                "-q",
                "-e",
                ".[postgres,grpc,uvloop]",
                "-r",
                "bench/requirements.txt",
                "-c",
                "bench/constraints.txt",
            ],
            cwd=ROOT,
            check=True,
        )
        STAMP.write_text(wanted + "\n")
    return PYTHON


def _can_run_quick() -> bool:
    try:
        import psycopg  # noqa: F401

        import cereal  # noqa: F401
    except ImportError:
        return False
    return True


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, no peers (under 60 s)")
    parser.add_argument(
        "--grpc",
        action="store_true",
        help="with --quick: add the grpc:// column (full mode always has it)",
    )
    parser.add_argument(
        "--large",
        type=int,
        default=None,
        help="tasks queued in the large-backlog drain (e); full default 1000000",
    )
    parser.add_argument("--no-peers", action="store_true", help="full sizes but skip the peers")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only the drain (a), each worker under py-spy; profiles to bench/results/",
    )
    parser.add_argument(
        "--only", choices=("postgres", "sqlite"), default=None, help="one store only"
    )
    parser.add_argument(
        "--scenario",
        choices=("delayed_claim",),
        default=None,
        help="run this one scenario alone (delayed_claim: a task claim behind 200 000"
        " delayed tasks vs none; see bench/delayed_claim.py)",
    )
    return parser.parse_args(argv)


def main() -> None:
    """Pick the interpreter, then run the bench in it."""
    args = parse_args(sys.argv[1:])
    in_bench_venv = Path(sys.prefix).resolve() == VENV.resolve()
    # --profile needs py-spy, which only the bench venv has
    light = (args.quick or args.scenario is not None) and not args.profile
    if not in_bench_venv and not (light and _can_run_quick()):
        python = ensure_bench_venv()
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.path.insert(0, str(ROOT))
    from bench import runner

    sys.exit(runner.run(args))


if __name__ == "__main__":
    main()
