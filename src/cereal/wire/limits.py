"""Message size limits and channel options, the same on both ends of a connection.

The server reads requests up to its ``max_message_bytes`` and a client sends
at most its own, which must match; answers, sent only once a call is
authorised, may be much larger.
"""

from __future__ import annotations

from cereal.values import DEFAULT_MAX_VALUE_BYTES

MESSAGE_OVERHEAD_BYTES = 1024 * 1024
"""Room for a message's names, counters and framing besides its values."""

GRPC_MAX_MESSAGE_BYTES = 2**31 - 1
"""gRPC's message length limits are 32-bit signed integers."""

DEFAULT_MAX_MESSAGE_BYTES = 4 * DEFAULT_MAX_VALUE_BYTES + MESSAGE_OVERHEAD_BYTES
"""The largest request the server reads unless told otherwise (65 MiB).

A request carries at most a few values, each at most the engine's
``max_value_bytes`` (16 MiB by default): a decision's payload with its tasks'
parameters, a task's result. Larger requests are refused with
RESOURCE_EXHAUSTED, so one call cannot make the server buffer up to gRPC's
own limits.
"""

MAX_MESSAGE_BYTES = DEFAULT_MAX_MESSAGE_BYTES
"""The largest message a client sends by default (what the server reads by default)."""

MAX_RESPONSE_BYTES = 1024 * 1024 * 1024
"""The largest message the server sends and a client receives: claimed batches carry
many whole values, and only the server, once a call is authorised, sends them."""


def _channel_options(max_send: int, max_receive: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_send),
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """A client's message limits and keepalives: it sends at most ``max_message_bytes``."""
    return _channel_options(max_message_bytes, MAX_RESPONSE_BYTES)


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """The server's message limits and keepalives: it reads at most ``max_message_bytes``."""
    return _channel_options(MAX_RESPONSE_BYTES, max_message_bytes)


def message_limit_for(max_value_bytes: int) -> int:
    """The request size limit that fits values of ``max_value_bytes`` (capped at gRPC's)."""
    return min(4 * max_value_bytes + MESSAGE_OVERHEAD_BYTES, GRPC_MAX_MESSAGE_BYTES)


def check_max_message_bytes(value: object) -> int:
    """``value`` as a message size limit.

    Raises:
        TypeError: not an int.
        ValueError: below 1 or above gRPC's limit (2**31 - 1).
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"max_message_bytes must be an int, got {type(value).__name__}")
    if not 1 <= value <= GRPC_MAX_MESSAGE_BYTES:
        raise ValueError(f"max_message_bytes must be 1-{GRPC_MAX_MESSAGE_BYTES} bytes, got {value}")
    return value
