"""A bench worker process: its own Manager on the shared store, run until stdin closes.

``python -m bench.worker URL --task-workers 8 [--no-tasks] [--hold]``
prints ``READY`` once the Manager has started, and stops gracefully when its
standard input reaches end of file (the coordinator closes it), so no signal
handling is needed. With ``--hold`` it prints ``READY`` once everything but
the Manager's start is done (imports, driver, registrations), starts the
Manager when a ``GO`` line arrives and then prints ``STARTED``: workers
started together on a queue that is already full then begin together, none
draining while another still boots.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import cereal
from bench import apps
from cereal import event_loop

log = logging.getLogger("cereal.bench.worker")


def wait_for_eof() -> None:
    """Block until standard input closes (its own frame: profiles count it as waiting)."""
    sys.stdin.read()


def announce_ready() -> None:
    """Tell the coordinator (reading our stdout) that this worker is ready."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()


async def serve(url: str, *, task_workers: int, tasks: bool, hold: bool) -> None:
    """Start a Manager (after ``GO`` when ``hold``), announce it, and run until stdin closes."""
    manager = cereal.Manager(cereal.open_driver(url))
    apps.register(manager, tasks=tasks, task_workers=task_workers)
    loop = asyncio.get_running_loop()
    if hold:
        announce_ready()
        # read on a thread, as below; end of file instead of GO: stop without starting
        if (await loop.run_in_executor(None, sys.stdin.readline)).strip() != "GO":
            return
    async with manager:
        if hold:
            sys.stdout.write("STARTED\n")
            sys.stdout.flush()
        else:
            announce_ready()
        # read on a thread: stdin EOF is the stop signal
        await loop.run_in_executor(None, wait_for_eof)
    log.debug("worker stopped")


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--task-workers", type=int, default=8)
    parser.add_argument("--no-tasks", action="store_true")
    parser.add_argument("--hold", action="store_true", help="start the Manager on a GO line")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # uvloop when installed (the bench venv installs the extra), as `cereal worker` does
    event_loop.run(
        serve(args.url, task_workers=args.task_workers, tasks=not args.no_tasks, hold=args.hold)
    )


if __name__ == "__main__":
    main()
