"""Which ``Host`` names the dashboard answers: a guard against DNS rebinding.

A web page can rebind its own name to 127.0.0.1 and then read a local
dashboard as if it were same-origin; the browser still sends the page's own
name in ``Host``. Answering only the names of the bound address (and names
the user puts in front of it, such as a reverse proxy's) refuses those reads.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The names a browser on this machine uses for a loopback bind."""

_WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """The ``Host`` names to answer when bound to ``bind_host``, plus ``extra`` ones.

    A loopback bind answers the loopback names; an all-interfaces bind
    (``0.0.0.0``, ``::``) answers them too, since a local browser reaches it
    that way, and any other bind answers its own address or name. ``extra``
    adds names (``*.example.com`` matches subdomains; ``*`` alone turns the
    check off).

    Raises:
        ValueError: an extra name is empty, holds a port, a path or a space, or
            uses ``*`` other than as ``*`` or a leading ``*.``.
    """
    found: list[str] = []
    if is_loopback(bind_host) or bind_host in _WILDCARD_BINDS:
        found.extend(LOOPBACK_NAMES)
    if bind_host not in _WILDCARD_BINDS:
        found.append(_host_name(bind_host))
    for name in extra:
        found.append(_checked_extra(name))
    return list(dict.fromkeys(name.lower() for name in found))


def _host_name(host: str) -> str:
    """``host`` as it appears in a ``Host`` header: IPv6 literals in brackets."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return f"[{address}]" if address.version == 6 else str(address)


def _checked_extra(name: str) -> str:
    text = name.strip()
    if not text or any(c in text for c in " /\\@") or (":" in text and not text.startswith("[")):
        raise ValueError(
            f"allowed host {name!r} must be a host name or address without port or path,"
            " e.g. dash.example.com"
        )
    if "*" in text[1:] or (text.startswith("*") and text != "*" and not text.startswith("*.")):
        raise ValueError(f"allowed host {name!r}: '*' may only stand alone or start '*.'")
    return _host_name(text)
