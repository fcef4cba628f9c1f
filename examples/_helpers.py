"""Shared by the numbered examples: the --db option and waiting for an instance to finish."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import cereal

FAST = {"workflow_poll_interval": 0.1, "task_poll_interval": 0.1}
"""Manager options that keep the examples snappy (the defaults suit production)."""


def parse_db(description: str) -> str:
    """The database URL from ``--db`` (default: an in-process memory store)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--db",
        default="memory://",
        help="driver URL: memory:// (default), sqlite:////tmp/cereal.db, postgresql://...",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show cereal's log")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return str(args.db)


def run(main: Callable[[str], Coroutine[Any, Any, None]], description: str | None) -> None:
    """Parse ``--db`` and run ``main(db)``; a bad database or URL is one line on stderr, exit 1."""
    db = parse_db(description or "")
    try:
        asyncio.run(main(db))
    except (cereal.errors.CerealError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


async def wait_finished(
    manager: cereal.Manager, workflow_name: str, instance_name: str, timeout: float = 10.0
) -> cereal.ImmutableWorkflowInstance:
    """Poll until the instance has finished; returns its final state."""
    deadline = time.monotonic() + timeout
    while True:
        instance = await manager.get_workflow_instance(workflow_name, instance_name)
        if not instance.is_running():
            return instance
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workflow_name}/{instance_name} still running after {timeout} s")
        await asyncio.sleep(0.05)
