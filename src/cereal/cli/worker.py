"""``cereal worker module:manager``: run a user's Manager until SIGINT or SIGTERM.

The target names a :class:`~cereal.Manager` object, or a zero-argument
factory (plain or async) that returns one, as ``package.module:attribute``
(the attribute may be dotted). The current directory is importable, so
``cereal worker app:manager`` finds ``./app.py``. The Manager carries its
own driver: ``--db`` does not apply here. The start line names that database
and the registered workflows and tasks, and a warning says so when ``--db``
or ``CEREAL_DATABASE_URL`` names another database.

The first SIGINT or SIGTERM stops the worker, also while it is still
connecting. Once started, the stop is graceful and says how long running
tasks may still take; a second signal ends that grace period at once, and
tasks still running are handed back to the queue for any worker (the
Manager logs each at WARNING). A signal after that (or a second one while
connecting) ends the command without waiting for the stop to finish.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import signal
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer

from cereal import event_loop
from cereal.cli import _databases, _render
from cereal.cli._common import EXIT_INTERRUPTED, CliError, CliState, run, state
from cereal.cli._metrics import LOOPBACK, serve_metrics
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


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "(none)"


def start_line(target: str, manager: Manager) -> str:
    """What the worker prints once started: its database and what it runs."""
    return (
        f"cereal worker {target} started (pid {os.getpid()}) on "
        f"{_databases.label(manager.driver)}; workflows: {_names(manager.workflow_names)}; "
        f"tasks: {_names(manager.task_names)}; {event_loop.running_loop()} event loop; "
        "Ctrl+C to stop"
    )


def warn_if_db_differs(options: CliState, manager: Manager) -> None:
    """Warn when ``--db`` / ``CEREAL_DATABASE_URL`` names another database than the Manager's."""
    if not options.database_url_given:
        return
    why = _databases.url_disagreement(options.database_url, manager.driver)
    if why is not None:
        _render.warning(
            f"--db / CEREAL_DATABASE_URL is ignored by 'cereal worker' and {why}; "
            f"the worker uses its Manager's database {_databases.label(manager.driver)}"
        )


async def serve(
    target: str,
    grace_period: float | None,
    options: CliState,
    metrics_port: int | None = None,
    metrics_host: str = LOOPBACK,
) -> str:
    """Start the Manager, wait for SIGINT/SIGTERM, stop it gracefully; returns the signal name.

    A signal while the Manager is still starting (connecting, migrating) stops
    it at once. A second signal during the graceful stop ends its grace period
    (running tasks are handed back now); one more ends the command without
    waiting. With ``metrics_port``, Prometheus metrics are served on that port
    meanwhile.

    A signal after the grace period was ended (or a second one while
    starting) ends the process at once with status 130.
    """
    manager = await resolve_manager(load_target(target), target)
    warn_if_db_differs(options, manager)
    loop = asyncio.get_running_loop()
    metrics_server = (
        None if metrics_port is None else serve_metrics(manager, metrics_host, metrics_port, loop)
    )
    received: asyncio.Queue[str] = asyncio.Queue()
    waiting_ends = False  # set once no stop is left to shorten: the next signal ends at once

    def on_signal(signum: signal.Signals) -> None:
        if waiting_ends:
            _interrupt_now()  # do not wait for the stop to finish
        received.put_nowait(signum.name)

    def end_waiting_on_next_signal() -> None:
        nonlocal waiting_ends
        waiting_ends = True

    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    signalled = asyncio.ensure_future(received.get())
    try:
        starting = asyncio.ensure_future(manager.start())
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # a signal came first: give up connecting
            starting.cancel()
            await asyncio.wait({starting})
            name = signalled.result()
            end_waiting_on_next_signal()
            _render.note(f"{name} received while starting: stopping")
            return name
        starting.result()  # a failed start raises here
        _render.note(start_line(target, manager))
        name = await signalled
        grace = manager.stop_grace_period if grace_period is None else grace_period
        _render.note(
            f"{name} received: stopping; running tasks have {grace:g} s left to finish, then "
            "they are handed back to the queue (Ctrl+C again: hand them back now)"
        )
        await _stop_until_done_or_cut(manager, grace_period, received, end_waiting_on_next_signal)
    finally:
        signalled.cancel()  # still waiting after a failed start
        await manager.stop(grace_period=grace_period)  # idempotent; stops after a failed start
        if metrics_server is not None:
            metrics_server.close()
        for signum in handled:
            loop.remove_signal_handler(signum)
    return name


def _interrupt_now() -> NoReturn:
    """End the process now, with status 130, leaving the stop unfinished.

    Not ``KeyboardInterrupt``: ``asyncio.run`` would then cancel every task
    and wait for each to end, and a stop can be stuck where one cancellation
    does not reach (a task hand-back that began after its cancellation was
    spent, blocked on a row lock): the very wait this signal is meant to end.
    Tasks not handed back return through their lease's expiry.
    """
    _render.error("interrupted")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


async def _stop_until_done_or_cut(
    manager: Manager,
    grace_period: float | None,
    received: asyncio.Queue[str],
    on_cut: Callable[[], None],
) -> None:
    """Stop the Manager; a signal arriving meanwhile ends its grace period at once.

    ``on_cut`` is called once the grace period was ended that way.
    """
    stopping = asyncio.create_task(manager.stop(grace_period=grace_period))
    while not stopping.done():
        again = asyncio.create_task(received.get())
        await asyncio.wait({stopping, again}, return_when=asyncio.FIRST_COMPLETED)
        if not again.done():
            again.cancel()
            continue
        left = manager.grace_period_left()
        manager.end_grace_period()
        on_cut()
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
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on this port (needs cereal-workflows\\[metrics]).",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host",
            help="Address the metrics are served on (0.0.0.0: every interface).",
        ),
    ] = LOOPBACK,
) -> None:
    """Run a Manager's executors and schedules until SIGINT or SIGTERM, then stop gracefully."""
    if grace_period is not None and not 0 <= grace_period < float("inf"):
        raise typer.BadParameter(
            f"must be a finite number of seconds >= 0, got {grace_period}",
            param_hint="--grace-period",
        )
    signal_name = run(ctx, serve(target, grace_period, state(ctx), metrics_port, metrics_host))
    _render.note(f"cereal worker stopped after {signal_name}")
    if signal_name == "SIGINT":  # Ctrl+C: the shell's convention, even after a graceful stop
        raise typer.Exit(EXIT_INTERRUPTED)
