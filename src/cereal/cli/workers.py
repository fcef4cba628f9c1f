"""``cereal workers``: the live workers (started Managers) on the database."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from cereal import errors
from cereal.cli import _render
from cereal.cli._common import first_entries, run, storage_manager
from cereal.manager import Manager
from cereal.models import WorkerInfo

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="workers",
    help="See the live workers: started Managers, on any host, sharing this database.",
    no_args_is_help=True,
)


DEFAULT_LIMIT = 100
"""How many workers ``workers list`` shows unless ``--limit`` says otherwise."""


@app.command("list")
def list_workers(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most this many workers.")
    ] = DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the live workers, oldest first, with the workflows and tasks each one runs.

    A worker is listed from its start until it stops; one that died drops
    out once its task_expiry has passed since its last heartbeat. At most
    --limit workers; a last line says how many more exist.
    """

    async def go() -> list[WorkerInfo]:
        async with storage_manager(ctx) as manager:
            # one row per live process: bounded by the deployment, read whole
            return await manager.list_workers()

    shown, hidden = first_entries(run(ctx, go()), limit)
    if as_json:
        _render.print_json([_render.worker_dict(info) for info in shown])
        if hidden:
            _render.note(_render.left_out("live worker(s)", len(shown), hidden))
    else:
        _render.workers_table(shown, hidden=hidden)


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
