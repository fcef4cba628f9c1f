"""``cereal serve``: run the gRPC server over the ``--db`` store until SIGINT or SIGTERM.

Clients reach it with ``open_driver("grpc://host:port?domain=NAME")``. The
server binds 127.0.0.1 unless told otherwise; a non-loopback bind needs a
token (``--token`` / ``CEREAL_SERVE_TOKEN``) or ``--insecure``. See docs/grpc.md.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from cereal import errors
from cereal.cli import _render
from cereal.cli._common import EXIT_INTERRUPTED, CliError, fail, run, state
from cereal.cli._retention_rules import (
    KeepDaysOption,
    KeepRunsOption,
    MarginRowsOption,
    MaxAgeDaysOption,
    MaxRowsOption,
    given,
    retention_from_options,
)
from cereal.drivers import require_grpc
from cereal.values import DEFAULT_MAX_VALUE_BYTES

if TYPE_CHECKING:
    from cereal.server import ServeOptions


async def _serve(url: str, options: ServeOptions, grace: float) -> str:
    from cereal.server import BindError, CerealServer

    server = CerealServer(url, options)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await server.serve_until(stop, grace)
    except BindError as exc:
        raise CliError(str(exc)) from exc
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    return received[0] if received else "stop"


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any).")] = 10101,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CEREAL_SERVE_TOKEN",
            help="Bearer token every call must carry (env CEREAL_SERVE_TOKEN).",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", help="PEM server certificate (enables TLS).")
    ] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="PEM server key.")] = None,
    tls_client_ca: Annotated[
        str | None,
        typer.Option("--tls-client-ca", help="PEM CA; clients must present a cert it signed."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Allow a non-loopback bind without a token."),
    ] = False,
    task_expiry: Annotated[
        float,
        typer.Option("--task-expiry", help="Seconds; paces the server's expiry sweep."),
    ] = 60.0,
    grace_period: Annotated[
        float, typer.Option("--grace-period", help="Seconds running calls get on stop.")
    ] = 5.0,
    max_value_size: Annotated[
        int,
        typer.Option(
            "--max-value-size",
            help="Largest JSON value a request may store, in bytes (Manager max_value_bytes).",
        ),
    ] = DEFAULT_MAX_VALUE_BYTES,
    max_message_size: Annotated[
        int | None,
        typer.Option(
            "--max-message-size",
            help="Largest request in bytes; larger ones are refused"
            " (default: 4 values of --max-value-size + 1 MiB; 68157440).",
            show_default=False,
        ),
    ] = None,
    keep_runs: KeepRunsOption = None,
    keep_days: KeepDaysOption = None,
    max_rows: MaxRowsOption = None,
    margin_rows: MarginRowsOption = None,
    max_age_days: MaxAgeDaysOption = None,
) -> None:
    r"""Serve the --db store over gRPC (one isolated store per domain) until SIGINT/SIGTERM.

    Needs the grpc extra: pip install 'cereal-workflows\[grpc]'.
    """
    try:
        require_grpc("cereal serve and grpc:// URLs")
    except errors.MissingDependencyError as exc:
        fail(ctx, str(exc))
    from cereal.server import ServeOptions
    from cereal.wire.limits import check_max_message_bytes, message_limit_for

    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"must be 0-65535, got {port}", param_hint="--port")
    if not 0 < task_expiry < float("inf"):
        raise typer.BadParameter("must be a positive number of seconds", param_hint="--task-expiry")
    if max_value_size < 1:
        raise typer.BadParameter("must be at least 1 byte", param_hint="--max-value-size")
    message_limit = (
        message_limit_for(max_value_size) if max_message_size is None else max_message_size
    )
    try:
        check_max_message_bytes(message_limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-message-size") from exc
    # connect and disconnect lines are INFO: show them even without -v
    cereal_logger = logging.getLogger("cereal")
    if cereal_logger.getEffectiveLevel() > logging.INFO:
        cereal_logger.setLevel(logging.INFO)
    retention = None
    if given(keep_runs, keep_days, max_rows, margin_rows, max_age_days):
        try:
            retention = retention_from_options(
                keep_runs=keep_runs,
                keep_days=keep_days,
                max_rows=max_rows,
                margin_rows=margin_rows,
                max_age_days=max_age_days,
                unbounded=False,
            )
        except CliError as exc:
            fail(ctx, str(exc))
    options = ServeOptions(
        retention=retention,
        host=host,
        port=port,
        token=token or None,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        insecure=insecure,
        sweep_expiry=task_expiry,
        max_value_bytes=max_value_size,
        max_message_bytes=message_limit,
    )
    signal_name = run(ctx, _serve(state(ctx).database_url, options, grace_period))
    _render.note(f"cereal serve stopped after {signal_name}")
    if signal_name == "SIGINT":  # Ctrl+C: the shell's convention, even after a graceful stop
        raise typer.Exit(EXIT_INTERRUPTED)
