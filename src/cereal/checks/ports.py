"""Whether a TCP port can be listened on: a taken port is one clear line before a server starts."""

from __future__ import annotations

import errno
import socket


def port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on because another socket listens there, or None.

    Checked before a server binds (``cereal serve``, the dashboard), so that
    a taken port is one clear line rather than the server library's own log;
    the server's own bind (without port sharing) still decides.
    """
    if port == 0:
        return None
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return None  # the server reports an unknown host itself
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # as servers bind: connections left in TIME_WAIT do not make the port taken
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"port {port} is already in use"
    return None
