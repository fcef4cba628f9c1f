"""The gRPC metadata keys of the protocol: what a call carries besides its message."""

from __future__ import annotations

DOMAIN_METADATA_KEY = "cereal-domain"
"""Request metadata key carrying the caller's domain."""

TOKEN_METADATA_KEY = "authorization"
"""Request metadata key of the bearer token (value ``Bearer <token>``)."""

ERROR_KEY = "cereal-error"
"""Trailing metadata key naming the error class of a failed call."""


def bearer(token: str) -> str:
    """The value of :data:`TOKEN_METADATA_KEY` that presents ``token``."""
    return f"Bearer {token}"
