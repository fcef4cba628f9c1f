"""Reading the PEM files that TLS credentials are made of (server and client alike)."""

from __future__ import annotations

from pathlib import Path


def read_pem(path: str | Path, what: str) -> bytes:
    """The bytes of the file at ``path``.

    Raises:
        ValueError: the file cannot be read (the message names ``what`` it should hold).
    """
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {str(path)!r}: {exc.strerror}") from exc
