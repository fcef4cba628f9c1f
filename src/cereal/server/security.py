"""Who may call the server: the bind rule, the server's TLS credentials and the bearer token."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from cereal.wire.metadata import TOKEN_METADATA_KEY, bearer
from cereal.wire.pem import read_pem

UNPROTECTED_SERVICES = ("/grpc.health.v1.Health/",)
"""Method prefixes callable without the token (health probes carry no secrets)."""


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, token: str | None, insecure: bool) -> None:
    """Refuse to expose an unprotected server beyond this machine.

    Raises:
        ValueError: ``host`` is not loopback, no token is set and ``insecure`` is false.
    """
    if token or insecure or is_loopback(host):
        return
    raise ValueError(
        f"refusing to serve on {host!r} without a token: anyone who can reach it could run"
        " and read workflows. Set --token (or CEREAL_SERVE_TOKEN), or pass --insecure"
    )


def server_credentials(
    cert: str | None, key: str | None, client_ca: str | None
) -> grpc.ServerCredentials | None:
    """TLS credentials of the server (``None``: plaintext).

    With ``client_ca`` every client must present a certificate signed by it.

    Raises:
        ValueError: only one of cert and key is given, client_ca without them,
            or a file cannot be read.
    """
    if not cert and not key:
        if client_ca:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not cert or not key:
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    pair = [(read_pem(key, "TLS key"), read_pem(cert, "TLS certificate"))]
    if client_ca:
        return grpc.ssl_server_credentials(
            pair, root_certificates=read_pem(client_ca, "client CA"), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call without ``authorization: Bearer <token>`` as UNAUTHENTICATED.

    The check reads only the call's metadata, and a refused call never has its
    request read: grpc.aio reads a unary request in full before it calls the
    handler, so the refusal is a handler that takes a request *stream* and
    aborts without reading it. An unauthenticated client thus cannot make the
    server buffer a large body.
    """

    def __init__(self, token: str) -> None:
        self._expected = bearer(token).encode()

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Pass authorised calls on; answer the rest with a refusing handler."""
        method: str = handler_call_details.method
        if method.startswith(UNPROTECTED_SERVICES):
            return await continuation(handler_call_details)
        given = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                given = value.encode() if isinstance(value, str) else bytes(value)
        if hmac.compare_digest(given, self._expected):
            return await continuation(handler_call_details)
        return _REFUSING


async def _refuse(request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
    # never iterates the requests: nothing of the body is read
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")


_REFUSING = grpc.stream_unary_rpc_method_handler(_refuse)
"""Fails any call with UNAUTHENTICATED before reading a message (whatever the method's shape:
on the wire a refusal is the same trailers-only answer)."""
