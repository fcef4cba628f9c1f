"""The gRPC server, ``cereal serve``: one engine for many applications.

:class:`CerealServer` serves a SQLite or PostgreSQL store over the
``cereal.v1`` protocol (:mod:`cereal.wire`), one store per domain, and runs
each domain's scheduler and expiry sweep; the ``grpc://`` driver
(:class:`cereal.drivers.grpc.GrpcDriver`) reaches it. Needs the ``grpc``
extra (``pip install 'cereal-workflows[grpc]'``); see docs/grpc.md.

Modules: :mod:`.app` (the server, its options, health and graceful stop),
:mod:`.service` (one method per RPC), :mod:`.domains` (each open domain's
driver, scheduler, sweeper and wakeup watchers), :mod:`.stores` (which
store backs which domain), :mod:`.security` (bind rule, TLS, bearer token),
:mod:`.request_checks` (what a request must satisfy before it is applied).
"""

from __future__ import annotations

from cereal.server.app import DEFAULT_PORT, BindError, CerealServer, ServeOptions

__all__ = ["DEFAULT_PORT", "BindError", "CerealServer", "ServeOptions"]
