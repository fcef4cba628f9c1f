"""``cereal worker module:manager``: run a user's Manager until SIGINT or SIGTERM.

The target names a :class:`~cereal.Manager` object, or a zero-argument
factory (plain or async) that returns one, as ``package.module:attribute``
(the attribute may be dotted). The current directory is importable, so
``cereal worker app:manager`` finds ``./app.py``. The Manager carries its
own driver: ``--db`` does not apply here.

The first SIGINT/SIGTERM starts a graceful stop and says how long running
tasks may still take; a second one ends that grace period at once. Tasks
still running then are handed back to the queue for any worker (the
Manager logs each at WARNING).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import signal
import sys
from typing import Annotated, Any

import typer

from cereal.cli import _render
from cereal.cli._common import CliError, run
from cereal.manager import Manager


def load_target(target: str) -> Any:
    """Import ``module:attribute`` and return the attribute.

    Raises:
        CliError: the target is malformed, or the module or attribute is missing.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"worker target {target!r} must look like 'package.module:manager'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CliError(f"cannot import module {module_name!r} for worker {target!r}") from exc
        raise CliError(f"importing module {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the user's module is broken: say so in one line (-v: traceback)
        raise CliError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return found


async def resolve_manager(found: Any, target: str) -> Manager:
    """The Manager itself, or what a zero-argument factory (plain or async) returns.

    Raises:
        CliError: the target is neither.
    """
    if not isinstance(found, Manager) and callable(found):
        try:
            found = found()
            if inspect.isawaitable(found):
                found = await found
        except Exception as exc:  # a user's factory failed, or it needs arguments
            raise CliError(
                f"calling {target!r} failed ({type(exc).__name__}: {exc}); the worker target "
                "must be a cereal.Manager or a zero-argument factory returning one"
            ) from exc
    if not isinstance(found, Manager):
        raise CliError(
            f"worker target {target!r} is a {type(found).__name__}, "
            "not a cereal.Manager or a zero-argument factory returning one"
        )
    return found


async def serve(target: str, grace_period: float | None) -> str:
    """Start the Manager, wait for SIGINT/SIGTERM, stop it gracefully; returns the signal name.

    A second signal during the stop ends the grace period at once.
    """
    manager = await resolve_manager(load_target(target), target)
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[str] = asyncio.Queue()

    def on_signal(signum: signal.Signals) -> None:
        received.put_nowait(signum.name)

    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await manager.start()
        _render.note(f"cereal worker {target} started (pid {os.getpid()}); Ctrl+C to stop")
        name = await received.get()
        grace = manager.stop_grace_period if grace_period is None else grace_period
        _render.note(
            f"{name} received: stopping; running tasks have {grace:g} s left to finish, then "
            "they are handed back to the queue (Ctrl+C again: hand them back now)"
        )
        await _stop_until_done_or_cut(manager, grace_period, received)
    finally:
        await manager.stop(grace_period=grace_period)  # idempotent; stops after a failed start
        for signum in handled:
            loop.remove_signal_handler(signum)
    return name


async def _stop_until_done_or_cut(
    manager: Manager, grace_period: float | None, received: asyncio.Queue[str]
) -> None:
    """Stop the Manager; a signal arriving meanwhile ends its grace period at once."""
    stopping = asyncio.create_task(manager.stop(grace_period=grace_period))
    while not stopping.done():
        again = asyncio.create_task(received.get())
        await asyncio.wait({stopping, again}, return_when=asyncio.FIRST_COMPLETED)
        if not again.done():
            again.cancel()
            continue
        left = manager.grace_period_left()
        manager.end_grace_period()
        waited = "" if left is None else f" ({left:.1f} s were left)"
        _render.note(
            f"{again.result()} received again: grace period ended{waited}; "
            "handing running tasks back now"
        )
    await stopping


def worker(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:MANAGER",
            help="The Manager to run, as 'module:attribute' (or a zero-argument factory).",
            show_default=False,
        ),
    ],
    grace_period: Annotated[
        float | None,
        typer.Option(
            "--grace-period",
            help="Seconds stop() waits for running work (default: the Manager's own).",
        ),
    ] = None,
) -> None:
    """Run a Manager's executors and schedules until SIGINT or SIGTERM, then stop gracefully."""
    if grace_period is not None and not 0 <= grace_period < float("inf"):
        raise typer.BadParameter(
            f"must be a finite number of seconds >= 0, got {grace_period}",
            param_hint="--grace-period",
        )
    signal_name = run(ctx, serve(target, grace_period))
    _render.note(f"cereal worker stopped after {signal_name}")
