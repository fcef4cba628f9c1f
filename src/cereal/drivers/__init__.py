"""Storage drivers and the URL opener.

``open_driver(url)`` picks a driver by URL scheme and imports it lazily, so
optional dependencies (psycopg) are needed only by the driver that uses them.
It does no I/O: the Manager initialises the driver on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cereal import errors
from cereal.drivers.base import (
    DURABLE,
    MULTIPROCESS,
    Driver,
    ScheduledWorkflowCompleter,
    TaskCompleter,
    WakeupListener,
    WorkflowCompleter,
    WorkKind,
)

if TYPE_CHECKING:
    from cereal.drivers.postgres import PostgresDriver

__all__ = [
    "DURABLE",
    "MULTIPROCESS",
    "Driver",
    "ScheduledWorkflowCompleter",
    "TaskCompleter",
    "WakeupListener",
    "WorkKind",
    "WorkflowCompleter",
    "open_driver",
    "sqlite_path_from_url",
]

SUPPORTED_SCHEMES = (
    "memory://",
    "sqlite:///path.db",
    "postgresql://user@host/db",
    "grpc://host:port?domain=NAME",
)

GRPC_MODULES = ("grpc", "grpc_health.v1", "google.protobuf")
"""What the ``grpc`` extra provides, as module names."""

POSTGRES_PACKAGES = "'psycopg[binary]>=3.2' 'psycopg-pool>=3.2'"
"""What the ``postgres`` extra installs, as ``pip install`` arguments."""


def sqlite_path_from_url(url: str) -> str:
    """The file path of a SQLAlchemy-style SQLite URL.

    ``sqlite:///relative.db`` is relative to the working directory,
    ``sqlite:////abs/path.db`` is absolute, ``sqlite:///:memory:`` is private.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ValueError(
            f"sqlite URL {url!r} has a host; use sqlite:///relative.db or sqlite:////abs/path.db"
        )
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/":
        raise ValueError(f"sqlite URL {url!r} names no file; use sqlite:///relative.db")
    return path[1:]


def open_driver(url: str, **options: Any) -> Driver:
    """Build the driver a URL names; options from the URL query and keywords are passed on.

    Supported: ``memory://``, ``sqlite:///relative.db`` / ``sqlite:////abs.db``,
    ``postgresql://...`` (also ``postgres://``), ``grpc://host:port?domain=NAME``
    (a ``cereal serve`` server; see :class:`cereal.drivers.grpc.GrpcDriver`).

    Raises:
        ValueError: the URL is malformed or its scheme is unknown.
        MissingDependencyError: the driver's optional packages are not installed
            (``postgresql://`` without the ``postgres`` extra); the message says
            what to install.
    """
    if not isinstance(url, str) or not url:
        raise ValueError("driver URL must be a non-empty string such as 'sqlite:///cereal.db'")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query_options: dict[str, Any] = dict(parse_qsl(parts.query))
    if scheme == "memory":
        from cereal.drivers.memory import MemoryDriver

        return MemoryDriver(**{**query_options, **options})
    if scheme == "sqlite":
        from cereal.drivers.sqlite import SQLiteDriver

        path = sqlite_path_from_url(url.split("?", 1)[0])
        return SQLiteDriver(path, **{**query_options, **options})
    if scheme in ("postgresql", "postgres"):
        return _postgres_driver_class()(url, **options)
    if scheme == "grpc":
        require_grpc("grpc:// URLs")
        from cereal.drivers.grpc import GrpcDriver

        return GrpcDriver.from_url(url, **options)
    raise ValueError(
        f"unknown driver URL scheme {parts.scheme!r} in {url!r}; supported: "
        + ", ".join(SUPPORTED_SCHEMES)
    )


def require_grpc(what: str) -> None:
    """Check that the ``grpc`` extra can be imported, before anything imports it.

    Raises:
        MissingDependencyError: grpcio, grpcio-health-checking or protobuf is
            missing; the message names ``what`` needs them and what to install.
    """
    try:
        for module in GRPC_MODULES:
            importlib.import_module(module)
    except ImportError as exc:
        raise errors.MissingDependencyError(
            f"{what} need the 'grpc' extra of cereal-workflows, which is not installed"
            f" ({exc}): pip install 'cereal-workflows[grpc]' (or, in a checkout of cereal,"
            " pip install -e '.[grpc]')"
        ) from exc


def _postgres_driver_class() -> type[PostgresDriver]:
    """The PostgreSQL driver class, imported now (its packages are an optional extra).

    Raises:
        MissingDependencyError: psycopg or psycopg-pool is missing or cannot load.
    """
    try:
        from cereal.drivers.postgres import PostgresDriver
    except ImportError as exc:
        missing = exc.name or ""
        if missing.partition(".")[0] not in ("psycopg", "psycopg_pool", "psycopg_binary", ""):
            raise  # not the extra: a broken installation of cereal itself
        raise errors.MissingDependencyError(
            f"postgresql:// URLs need the 'postgres' extra of cereal-workflows, which is not "
            f"installed ({exc}): pip install {POSTGRES_PACKAGES} (or, in a checkout of "
            "cereal, pip install -e '.[postgres]')"
        ) from exc
    return PostgresDriver
