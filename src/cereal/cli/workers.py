"""``cereal workers``: the live workers (started Managers) on the database."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from cereal import errors
from cereal.cli import _render
from cereal.cli._common import run, storage_manager
from cereal.manager import Manager
from cereal.models import WorkerInfo

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="workers",
    help="See the live workers: started Managers, on any host, sharing this database.",
    no_args_is_help=True,
)


@app.command("list")
def list_workers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the live workers with the workflows and tasks each one runs.

    A worker is listed from its start until it stops; one that died drops
    out once its task_expiry has passed since its last heartbeat.
    """

    async def go() -> list[WorkerInfo]:
        async with storage_manager(ctx) as manager:
            return await manager.list_workers()

    found = run(ctx, go())
    if as_json:
        _render.print_json([_render.worker_dict(info) for info in found])
    else:
        _render.workers_table(found)


async def warn_if_unhandled(manager: Manager, workflow_name: str) -> None:
    """Warn on stderr when no live worker runs ``workflow_name`` (the enqueue stands)."""
    try:
        live = await manager.list_workers()
    except errors.CerealError:
        logger.debug("listing workers after an enqueue failed", exc_info=True)
        return
    if not any(info.handles_workflow(workflow_name) for info in live):
        _render.warning(
            f"no live worker handles workflow {workflow_name!r}; the instance waits until "
            "a worker that registers it starts"
        )
