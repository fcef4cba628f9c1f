"""Names in URL paths: one percent-encoded segment per name, read back from the raw path.

A workflow or instance name may hold any character but control and invisible ones,
``/`` and ``%`` included. Each name is encoded as one path segment with every
reserved character escaped, and routes read the *raw* (still encoded) request
path, so an encoded ``/`` (``%2F``) never splits a name in two.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes

from starlette.requests import Request


def segment(name: str) -> str:
    """``name`` as one path segment (every character but ``A-Za-z0-9_.-~`` escaped)."""
    return quote(name, safe="")


def names_after(request: Request, prefix: str, count: int) -> list[str] | None:
    """The ``count`` names encoded after ``prefix`` in the request's raw path.

    Returns ``None`` when the path does not hold exactly ``count`` non-empty
    segments of valid UTF-8 there.
    """
    raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    encoded_prefix = prefix.encode("ascii")
    if not raw.startswith(encoded_prefix):
        return None
    parts = raw[len(encoded_prefix) :].split(b"/")
    if len(parts) != count or not all(parts):
        return None
    try:
        return [unquote_to_bytes(part).decode("utf-8") for part in parts]
    except UnicodeDecodeError:
        return None
