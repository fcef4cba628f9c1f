"""``cereal migrate``: apply pending schema migrations to the ``--db`` database."""

from __future__ import annotations

import typer

from cereal.cli import _render
from cereal.cli._common import run, state
from cereal.drivers import open_driver


def migrate(ctx: typer.Context) -> None:
    """Apply pending schema migrations (Managers also do this when they first connect)."""
    url = state(ctx).database_url

    async def go() -> list[str]:
        driver = open_driver(url)
        return await driver.migrate()

    _render.migrations(run(ctx, go()), url)
