"""The client's TLS credentials: which server certificates it trusts, which it presents."""

from __future__ import annotations

import grpc
from cereal.wire.pem import read_pem


def channel_credentials(
    ca: str | None, cert: str | None, key: str | None
) -> grpc.ChannelCredentials:
    """TLS credentials of a client: trust ``ca`` (else the system roots); present cert/key.

    Raises:
        ValueError: only one of cert and key is given, or a file cannot be read.
    """
    if bool(cert) != bool(key):
        raise ValueError("a client certificate needs both 'cert' and 'key'")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "CA certificate") if ca else None,
        private_key=read_pem(key, "client key") if key else None,
        certificate_chain=read_pem(cert, "client certificate") if cert else None,
    )
