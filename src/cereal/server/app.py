"""The cereal gRPC server: the service, health, security and graceful stop.

:class:`CerealServer` is what ``cereal serve`` runs; tests and embedding
applications can run it too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

import grpc
from cereal.checks.ports import port_taken
from cereal.drivers.base import DEFAULT_TASK_EXPIRY
from cereal.models import HistoryRetention
from cereal.server.domains import DomainRegistry
from cereal.server.request_checks import RequestChecks
from cereal.server.security import TokenInterceptor, check_bind, server_credentials
from cereal.server.service import CerealService
from cereal.server.stores import stores_for
from cereal.values import DEFAULT_MAX_VALUE_BYTES
from cereal.wire.limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    check_max_message_bytes,
    server_options,
)
from cereal.wire.proto import cereal_v1_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

DEFAULT_PORT = 10101
"""The port ``cereal serve`` listens on unless told otherwise (the original's)."""

SERVICE_NAME = "cereal.v1.Cereal"
"""The service's name in the health service (besides ``""``, the whole server)."""


class BindError(RuntimeError):
    """The server could not listen on its address (the port is taken, or not allowed)."""


LEASE_ENDING_WAIT = 10.0
"""At least this long, a stopping server waits for lease endings already under way."""


@dataclass(frozen=True)
class ServeOptions:
    """How the server listens and whom it lets in."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    insecure: bool = False
    sweep_expiry: float = DEFAULT_TASK_EXPIRY
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    """The largest JSON value a request may store (the Manager's ``max_value_bytes``)."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """The largest request read; a larger one is refused with RESOURCE_EXHAUSTED."""
    maintenance: bool = True
    """Run each domain's scheduler and expiry sweep in the server (off: clients' Managers do)."""
    retention: HistoryRetention | None = None
    """The history retention of each domain's store, for the server's own sweeps (default:
    the driver's); a client's sweep replaces it with the client's until the server restarts."""


class CerealServer:
    """Serves the store at ``database_url`` (SQLite or PostgreSQL), one store per domain.

    Raises:
        ValueError: (from the constructor) a bad URL, a refused bind, bad TLS files,
            or a message size limit out of range.
    """

    def __init__(self, database_url: str, options: ServeOptions | None = None) -> None:
        self.options = options or ServeOptions()
        check_max_message_bytes(self.options.max_message_bytes)
        self._checks = RequestChecks(self.options.max_value_bytes)  # refuses a bad limit now
        check_bind(self.options.host, token=self.options.token, insecure=self.options.insecure)
        self._credentials = server_credentials(
            self.options.tls_cert, self.options.tls_key, self.options.tls_client_ca
        )
        self._domains = DomainRegistry(
            stores_for(database_url),
            sweep_expiry=self.options.sweep_expiry,
            maintenance=self.options.maintenance,
            retention=self.options.retention,
        )
        self._server: grpc.aio.Server | None = None
        self._service: CerealService | None = None
        self._health = HealthServicer()
        self.port: int | None = None

    async def start(self) -> int:
        """Open the existing domains, bind and start serving; returns the bound port.

        Raises:
            BindError: the address could not be bound (e.g. the port is taken).
            CerealError: a store failed to open.
        """
        taken = port_taken(self.options.host, self.options.port)
        if taken is not None:  # before any store opens: one line, nothing else
            raise BindError(
                f"cannot listen on {self.options.host}:{self.options.port}: {taken}"
                " (another cereal serve?)"
            )
        await self._domains.open_existing()
        interceptors = [TokenInterceptor(self.options.token)] if self.options.token else []
        # no SO_REUSEPORT: a second server on a taken port must fail, not share it
        # (clients would land on either server, and so on either store, at random)
        options = [*server_options(self.options.max_message_bytes), ("grpc.so_reuseport", 0)]
        server = grpc.aio.server(interceptors=interceptors, options=options)
        self._service = CerealService(self._domains, self._checks)
        pb_grpc.add_CerealServicer_to_server(  # type: ignore[no-untyped-call]
            self._service, server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        address = f"{self.options.host}:{self.options.port}"
        if ":" in self.options.host and not self.options.host.startswith("["):
            address = f"[{self.options.host}]:{self.options.port}"
        try:
            if self._credentials is None:
                port = int(server.add_insecure_port(address))
            else:
                port = int(server.add_secure_port(address, self._credentials))
        except RuntimeError as exc:
            await self._domains.close()
            raise BindError(f"cannot listen on {address}: {exc} (is the port taken?)") from exc
        if port == 0:  # grpcio versions that report a failed bind by returning 0
            await self._domains.close()
            raise BindError(f"cannot listen on {address}: the port is taken or not allowed")
        await server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await self._health.set("", serving)
        await self._health.set(SERVICE_NAME, serving)
        self._server, self.port = server, port
        logger.info(
            "cereal serve listening on %s:%d (%s%s)",
            self.options.host,
            port,
            "TLS" if self._credentials is not None else "plaintext",
            ", token required" if self.options.token else "",
        )
        return port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking calls, let running ones end within ``grace`` s, close the stores."""
        server, self._server = self._server, None
        if self._service is not None:
            self._service.keep_leases()  # running tasks report to the next server
        if server is not None:
            await self._health.enter_graceful_shutdown()
            await server.stop(grace)
        if self._service is not None:
            await self._service.finish_lease_endings(timeout=max(grace, LEASE_ENDING_WAIT))
        await self._domains.close()
        logger.info("cereal serve stopped")

    async def serve_until(self, stop: asyncio.Event, grace: float = 5.0) -> None:
        """Start, serve until ``stop`` is set, then stop gracefully."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop(grace)
