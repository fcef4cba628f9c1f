"""Fixtures live in plugin modules, one resource each."""

from __future__ import annotations

pytest_plugins = [
    "tests.plugins.postgres",
    "tests.plugins.pgbouncer",
    "tests.plugins.grpc_server",
    "tests.plugins.drivers",
    "tests.plugins.manager",
]
