"""``cereal tasks``: the queued and running tasks of one task name, and every queue's counts."""

from __future__ import annotations

from typing import Annotated

import typer

from cereal.cli import _render
from cereal.cli._common import run, storage_manager
from cereal.models import InstanceTask, TaskQueueStats

app = typer.Typer(
    name="tasks",
    help="See the task queues: the tasks of one name, and every name's counts.",
    no_args_is_help=True,
)

DEFAULT_LIMIT = 100
"""How many tasks ``tasks list`` shows unless ``--limit`` says otherwise."""

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    task_name: Annotated[
        str, typer.Argument(help="Task name.", metavar="TASK", show_default=False)
    ],
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most this many tasks.")
    ] = DEFAULT_LIMIT,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="TASK_ID",
            help="Only tasks enqueued before this task id (the next, older page).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the queued and running tasks named TASK, newest first, with the run each serves.

    One page of --limit tasks; a last line names the --before that shows the
    next, older page.
    """

    async def go() -> list[InstanceTask]:
        async with storage_manager(ctx) as manager:
            # one more than shown: whether an older page exists
            return await manager.list_tasks(task_name, limit=limit + 1, before=before)

    found = run(ctx, go(), subject=task_name)
    page, older = found[:limit], (found[limit - 1].task_id if len(found) > limit else None)
    if as_json:
        _render.print_json({"tasks": [_render.task_dict(t) for t in page], "older_tasks": older})
    else:
        _render.tasks_table(page, older=older)


@app.command("stats")
def stats(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Per task name with queued or running tasks: how many wait, how many run, the oldest."""

    async def go() -> list[TaskQueueStats]:
        async with storage_manager(ctx) as manager:
            return await manager.task_queue_stats()

    found = run(ctx, go())
    if as_json:
        _render.print_json([_render.queue_stats_dict(entry) for entry in found])
    else:
        _render.queue_stats_table(found)
