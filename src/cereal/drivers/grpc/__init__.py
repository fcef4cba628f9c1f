"""The gRPC backend: ``cereal serve`` (:class:`CerealServer`) and its client driver.

Needs the ``grpc`` extra (``pip install 'cereal-workflows[grpc]'``). The
service is declared in ``_proto/cereal_v1.proto``; see docs/grpc.md.
"""

from __future__ import annotations

from cereal.drivers.grpc._domains import DEFAULT_DOMAIN, check_domain
from cereal.drivers.grpc._server import DEFAULT_PORT, CerealServer, ServeOptions
from cereal.drivers.grpc.driver import GrpcDriver

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_PORT",
    "CerealServer",
    "GrpcDriver",
    "ServeOptions",
    "check_domain",
]
