"""Domain names: the one rule both ends apply before a call names a domain.

Names (instances, tasks, schedules, history) are isolated per domain because
the server keeps a store per domain (:mod:`cereal.server.stores`).
"""

from __future__ import annotations

import re

DEFAULT_DOMAIN = "default"
"""The domain of a client that names none."""

DOMAIN_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
"""A well-formed domain name (matched whole)."""


def check_domain(name: object) -> str:
    """Return ``name`` if it is a well-formed domain.

    Raises:
        ValueError: it is not 1-48 characters of letters, digits, ``_ . -``
            starting with a letter or digit.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a domain must be specified (a non-empty string)")
    if not DOMAIN_PATTERN.fullmatch(name):
        raise ValueError(
            f"malformed domain {name!r}: use 1-48 letters, digits, '_', '.' or '-',"
            " starting with a letter or digit"
        )
    return name
