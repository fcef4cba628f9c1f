"""``cereal worker --metrics-port``: attach Prometheus metrics to a Manager and serve them.

``cereal.metrics`` (and prometheus-client) is imported only here, only when
the option is used, so a worker without the extra runs as before.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cereal.cli import _render
from cereal.cli._common import CliError
from cereal.manager import Manager

if TYPE_CHECKING:
    from cereal.metrics import MetricsServer

LOOPBACK = "127.0.0.1"
"""Where metrics are served unless ``--metrics-host`` says otherwise."""


def serve_metrics(
    manager: Manager, host: str, port: int, loop: asyncio.AbstractEventLoop
) -> MetricsServer:
    """Count ``manager``'s work and serve ``/metrics`` on ``host:port`` (before ``start``).

    Raises:
        CliError: the ``metrics`` extra is not installed, or the port cannot be bound.
    """
    try:
        from cereal import metrics
    except ImportError as exc:
        raise CliError(
            "--metrics-port needs the metrics extra: pip install 'cereal-workflows[metrics]'"
        ) from exc
    collected = metrics.PrometheusMetrics()
    manager.add_observer(collected)
    try:
        server = metrics.serve(collected, manager.driver, port, loop=loop, addr=host)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    shown = f"[{server.host}]" if ":" in server.host else server.host
    widen = " (loopback only: --metrics-host 0.0.0.0 to widen)" if host == LOOPBACK else ""
    _render.note(f"metrics on http://{shown}:{server.port}/metrics{widen}")
    return server
