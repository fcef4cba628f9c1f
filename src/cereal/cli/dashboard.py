"""``cereal dashboard``: serve the web dashboard over a store (needs the ``dashboard`` extra)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Annotated

import typer

from cereal.checks.ports import port_taken
from cereal.cli import _render
from cereal.cli._common import EXIT_INTERRUPTED, fail, state
from cereal.drivers import open_driver
from cereal.manager import Manager

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; anything but loopback needs --token (keep it local"
            " unless proxied).",
        ),
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CEREAL_DASHBOARD_TOKEN",
            help="Secret that lets a logged-in visitor act; without it the dashboard is read-only.",
            show_default=False,
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            envvar="CEREAL_DASHBOARD_ALLOWED_HOSTS",
            help="Host name the dashboard also answers, e.g. a reverse proxy's (repeatable;"
            " env: space-separated). Other names get 400.",
            show_default=False,
        ),
    ] = None,
) -> None:
    r"""Serve the web dashboard: instances, tasks, schedules, workers; actions with a token.

    Needs the dashboard extra: pip install 'cereal-workflows\[dashboard]'.
    """
    try:
        import uvicorn

        from cereal.dashboard import allowed_hosts_for, create_app
        from cereal.dashboard._hosts import is_loopback
    except ImportError as exc:
        fail(
            ctx, f"the dashboard needs its extra: pip install 'cereal-workflows[dashboard]' ({exc})"
        )
    if not token and not is_loopback(host):
        fail(
            ctx,
            f"refusing to serve the dashboard on {host!r} without a token: anyone who can"
            " reach it could read every workflow. Set --token (or CEREAL_DASHBOARD_TOKEN)"
            " or keep --host on loopback behind a proxy",
        )
    url = state(ctx).database_url  # the global --db, also accepted after the command
    try:
        hosts = allowed_hosts_for(host, allowed_host or [])
        manager = Manager(open_driver(url))
        app = create_app(
            manager,
            token=token if token else None,
            allowed_hosts=hosts,
            login_to_read=not is_loopback(host),  # beyond this machine, reads need the token too
        )
    except ValueError as exc:
        fail(ctx, str(exc))
    taken = port_taken(host, port)
    if taken is not None:
        fail(ctx, f"cannot serve the dashboard on {host}:{port}: {taken}")
    mode = "log in with the token to act" if token else "read-only: no token"
    if not is_loopback(host):
        mode = "log in with the token to read and act"
    _render.note(f"cereal dashboard on http://{host}:{port} ({mode})")
    received = _serve_until_signal(
        lambda: uvicorn.run(
            app, host=host, port=port, log_level="debug" if state(ctx).verbose else "warning"
        )
    )
    _render.note(f"cereal dashboard stopped after {received}")
    if received == "SIGINT":  # Ctrl+C: the shell's convention, even after a graceful stop
        raise typer.Exit(EXIT_INTERRUPTED)


def _serve_until_signal(serve: Callable[[], None]) -> str:
    """Run ``serve`` (uvicorn) until SIGINT or SIGTERM; the signal's name.

    uvicorn handles the signals itself, then raises each again once it has
    shut down, under the handlers that were in place before it ran: these
    record it, so the command can exit as the signal asks (130 for Ctrl+C).
    """
    received: list[str] = []

    def record(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, record) for signum in handled}
    try:
        serve()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return received[0] if received else "stop"
