"""``cereal tasks``: one name's queued and running tasks, every queue's counts, dead tasks."""

from __future__ import annotations

from typing import Annotated

import typer

from cereal.cli import _render
from cereal.cli._common import (
    TracebackFlag,
    first_entries,
    newest_page,
    report_requeue,
    run,
    storage_manager,
)
from cereal.models import DeadTask, InstanceTask, RequeueOutcome, TaskQueueStats

app = typer.Typer(
    name="tasks",
    help="See the task queues (one name's tasks, every name's counts) and dead tasks; requeue.",
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
    page, older = newest_page(found, limit, lambda entry: entry.task_id)
    if as_json:
        _render.print_json({"tasks": [_render.task_dict(t) for t in page], "older_tasks": older})
    else:
        _render.tasks_table(page, older=older)


@app.command("stats")
def stats(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most this many task names.")
    ] = DEFAULT_LIMIT,
    as_json: JsonFlag = False,
) -> None:
    """Per task name with queued or running tasks: how many wait, how many run, the oldest.

    At most --limit task names; a last line says how many more exist.
    """

    async def go() -> list[TaskQueueStats]:
        async with storage_manager(ctx) as manager:
            # one row per task name with work: bounded by the code's task names, read whole
            return await manager.task_queue_stats()

    shown, hidden = first_entries(run(ctx, go()), limit)
    if as_json:
        _render.print_json([_render.queue_stats_dict(entry) for entry in shown])
        if hidden:
            _render.note(_render.left_out("task name(s)", len(shown), hidden))
    else:
        _render.queue_stats_table(shown, hidden=hidden)


@app.command("dead")
def dead(
    ctx: typer.Context,
    task_name: Annotated[
        str | None,
        typer.Option("--task", metavar="TASK", help="Only dead tasks of this task name."),
    ] = None,
    workflow_name: Annotated[
        str | None,
        typer.Option("--workflow", metavar="WORKFLOW", help="Only those of this workflow."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most this many dead tasks.")
    ] = DEFAULT_LIMIT,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="TASK_ID",
            help="Only dead tasks older than this task id (the next, older page).",
            show_default=False,
        ),
    ] = None,
    tracebacks: TracebackFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """List dead tasks (their last attempt failed or was lost), newest first, with the error.

    A dead task whose run is still live can be run again with `cereal tasks
    requeue TASK_ID`; one whose run ended is kept for the record until the
    history retention trims that run.
    """

    async def go() -> list[DeadTask]:
        async with storage_manager(ctx) as manager:
            return await manager.list_dead_tasks(
                task_name=task_name, workflow_name=workflow_name, limit=limit + 1, before=before
            )

    found = run(ctx, go())
    page, older = newest_page(found, limit, lambda entry: entry.task_id)
    if as_json:
        _render.print_json(
            {"dead_tasks": [_render.dead_task_dict(d) for d in page], "older_tasks": older}
        )
    else:
        _render.dead_tasks_table(page, older=older, tracebacks=tracebacks)


@app.command("requeue")
def requeue(
    ctx: typer.Context,
    task_ids: Annotated[
        list[str],
        typer.Argument(help="Dead task ids (from `cereal tasks dead`).", metavar="TASK_ID..."),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Run dead tasks again, each as a new task of its live run; exit 1 if one was not requeued."""

    async def go() -> dict[str, RequeueOutcome]:
        async with storage_manager(ctx, writes="a requeue") as manager:
            return await manager.requeue_dead_tasks(task_ids)

    report_requeue("task", run(ctx, go()), as_json=as_json)
