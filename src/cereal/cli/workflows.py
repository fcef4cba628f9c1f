"""``cereal workflows``: list, show, events, enqueue, cancel, kill; failed runs and requeue."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.text import Text

from cereal import errors
from cereal.cli import _render, workers
from cereal.cli._common import (
    CliError,
    TracebackFlag,
    newest_page,
    parse_json,
    report_requeue,
    run,
    storage_manager,
)
from cereal.cli._retention_rules import (
    KeepDaysOption,
    KeepRunsOption,
    MarginRowsOption,
    MaxAgeDaysOption,
    MaxRowsOption,
    retention_from_options,
)
from cereal.manager import Manager
from cereal.models import (
    EnqueuedWorkflow,
    FailedRun,
    InstanceEvent,
    InstanceTask,
    RequeueOutcome,
    RetentionRule,
    StartKey,
    WorkflowInstanceData,
    key_that_started,
)

app = typer.Typer(
    name="workflows",
    help="Inspect and control workflow instances.",
    no_args_is_help=True,
)

WorkflowArg = Annotated[
    str, typer.Argument(help="Workflow name.", metavar="WORKFLOW", show_default=False)
]
InstanceArg = Annotated[
    str, typer.Argument(help="Instance name.", metavar="INSTANCE", show_default=False)
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

DEFAULT_LIST_LIMIT = 100
"""How many instances ``workflows list`` shows unless ``--limit`` says otherwise."""

DEFAULT_SHOW_LIMIT = 20
DEFAULT_EVENTS_LIMIT = 100
"""How many events and tasks ``workflows show`` lists unless ``--limit`` says otherwise."""


@app.command("list")
def list_instances(
    ctx: typer.Context,
    workflow_name: Annotated[
        str | None,
        typer.Option("--workflow-name", "-w", metavar="WORKFLOW", help="Only this workflow."),
    ] = None,
    instance_name: Annotated[
        str | None,
        typer.Option("--instance-name", "-i", metavar="INSTANCE", help="Only this instance name."),
    ] = None,
    running: Annotated[
        bool | None,
        typer.Option("--running/--finished", help="Only running, or only finished, instances."),
    ] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, help="Show at most this many instances."),
    ] = DEFAULT_LIST_LIMIT,
    offset: Annotated[
        int,
        typer.Option("--offset", min=0, help="Skip this many instances first (the next page)."),
    ] = 0,
    by_name: Annotated[
        bool,
        typer.Option("--by-name", help="Order by workflow, then instance name (not newest first)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List workflow instances, running and finished (newest run of each), newest first.

    Ordered by start time, newest first (--by-name: by names). One page at a
    time: --limit instances from --offset on; a last line says when more exist.
    """

    async def go() -> list[WorkflowInstanceData]:
        async with storage_manager(ctx) as manager:
            # one more than shown: whether another page exists, without counting them all
            return await manager.list_workflow_instances(
                workflow_name=workflow_name,
                instance_name=instance_name,
                is_running=running,
                limit=limit + 1,
                offset=offset,
                newest_first=not by_name,
            )

    found = run(ctx, go())
    instances, more = found[:limit], len(found) > limit
    if as_json:
        _render.print_json([_render.instance_dict(data) for data in instances])
        if more:
            _render.note(f"more instances exist: --offset {offset + limit} shows the next page")
    else:
        _render.instances_table(instances, offset=offset, more=more, by_name=by_name)


@app.command("show")
def show(
    ctx: typer.Context,
    workflow_name: WorkflowArg,
    instance_name: InstanceArg,
    full: Annotated[
        bool, typer.Option("--full", help="Print large values whole instead of a preview.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, help="Show at most this many events and tasks."),
    ] = DEFAULT_SHOW_LIMIT,
    events_before: Annotated[
        int | None,
        typer.Option(
            "--events-before",
            min=0,
            metavar="SEQ",
            help="Only events older than this seq (the next page of the history).",
            show_default=False,
        ),
    ] = None,
    tasks_before: Annotated[
        str | None,
        typer.Option(
            "--tasks-before",
            metavar="TASK_ID",
            help="Only tasks enqueued before this task id (the next page of tasks).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one instance: the running one, else its newest finished run.

    Then its queued and running tasks and its event history, newest first,
    --limit of each; a last line names the --events-before / --tasks-before
    that shows the next, older page. Values over 2000 characters or 40 lines
    are cut to a preview unless --full; --json always prints them whole.
    """

    async def go() -> tuple[
        WorkflowInstanceData, list[InstanceTask], list[InstanceEvent], list[StartKey]
    ]:
        async with storage_manager(ctx) as manager:
            data = (await manager.get_workflow_instance(workflow_name, instance_name)).data
            # one more than shown: whether an older page exists
            tasks = await manager.list_instance_tasks(
                workflow_name, instance_name, limit=limit + 1, before=tasks_before
            )
            events = await manager.list_instance_events(
                workflow_name, instance_name, limit=limit + 1, before=events_before
            )
            try:
                keys = await manager.list_start_keys(workflow_name, instance_name)
            except errors.DriverError:  # a server of an earlier release does not offer it
                keys = []
            return data, tasks, events, keys

    data, tasks, events, keys = run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    started = key_that_started(keys, data.started_at)
    older_tasks = tasks[limit - 1].task_id if len(tasks) > limit else None
    older_events = events[limit - 1].seq if len(events) > limit else None
    tasks, events = tasks[:limit], events[:limit]
    if as_json:
        failure = {"error_type": data.error_type, "error_traceback": data.error_traceback}
        pages = {
            "tasks": [_render.instance_task_dict(task) for task in tasks],
            "older_tasks": older_tasks,
            "events": [_render.instance_event_dict(event) for event in events],
            "older_events": older_events,
            "idempotency_key": None if started is None else started.idempotency_key,
            "concurrency_key": data.concurrency_key,
            "concurrency_limit": data.concurrency_limit,
            "waiting_for_key": data.waiting_for_key,
        }
        _render.print_json({**_render.instance_dict(data), **failure, **pages})
    else:
        _render.instance_detail(data, full=full, start_key=started)
        _failure_detail(data)
        _render.instance_tasks_table(tasks, older=older_tasks)
        _render.instance_events_table(events, older=older_events)


def _failure_detail(data: WorkflowInstanceData) -> None:
    """What failed a failed run: the exception's type and traceback, when stored."""
    if data.error_type is not None:
        _render.out.print(Text.assemble(("error type  ", "bold"), data.error_type))
    if data.error_traceback:
        _render.out.print(Text(data.error_traceback.rstrip(), style="dim"), soft_wrap=True)


@app.command("events")
def events(
    ctx: typer.Context,
    workflow_name: WorkflowArg,
    instance_name: InstanceArg,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, help="Show at most this many (the newest) events."),
    ] = DEFAULT_EVENTS_LIMIT,
    before: Annotated[
        int | None,
        typer.Option(
            "--before",
            min=0,
            metavar="SEQ",
            help="Only events older than this seq (the next, older page).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one instance's event history (the running one, else its newest finished run).

    The newest --limit events (older than --before, if given), listed oldest
    first; a last line names the --before that shows the next, older page. A
    task's outcome comes with its error text: a task a sweep reported LOST
    because its stored retry policy was invalid says so here.
    """

    async def go() -> list[InstanceEvent]:
        async with storage_manager(ctx) as manager:
            # one more than shown: whether an older page exists
            return await manager.list_instance_events(
                workflow_name, instance_name, limit=limit + 1, before=before
            )

    found = run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    older = found[limit - 1].seq if len(found) > limit else None
    page = list(reversed(found[:limit]))
    if as_json:
        _render.print_json([_render.instance_event_dict(event) for event in page])
        if older is not None:
            _render.note(f"older events exist: --before {older} shows the next page")
    else:
        _render.instance_events_table(page, older=older, newest_first=False, cursor="--before")


@app.command("enqueue")
def enqueue(
    ctx: typer.Context,
    workflow_name: WorkflowArg,
    instance_name: InstanceArg,
    parameters: Annotated[
        str | None,
        typer.Option(
            "--parameters",
            "-p",
            metavar="JSON",
            help="Parameters as JSON, e.g. '{\"n\": 3}'; @FILE reads a file, - reads stdin.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Start nothing if KEY started a run of this workflow in the last 24 h"
            " (that run is reported instead).",
        ),
    ] = None,
    concurrency_key: Annotated[
        str | None,
        typer.Option(
            "--concurrency-key",
            metavar="KEY",
            help="Run under this workflow concurrency key (with --concurrency-limit): beyond"
            " the limit of its started live runs, the run waits its turn.",
        ),
    ] = None,
    concurrency_limit: Annotated[
        int | None,
        typer.Option(
            "--concurrency-limit",
            metavar="N",
            help="How many runs of --concurrency-key may be started at once (1-10000).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start a new instance (a running worker with this workflow registered will run it)."""
    outcome: list[EnqueuedWorkflow] = []

    async def go() -> None:
        value = parse_json(parameters)
        async with storage_manager(ctx, writes="the enqueued run") as manager:
            outcome.append(
                await manager.enqueue_workflow(
                    workflow_name,
                    instance_name,
                    value,
                    idempotency_key=idempotency_key,
                    concurrency_key=concurrency_key,
                    concurrency_limit=concurrency_limit,
                )
            )
            await workers.warn_if_unhandled(manager, workflow_name)

    run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    [started] = outcome
    if as_json:
        _render.print_json(
            {
                "workflow_name": started.workflow_name,
                "instance_name": started.instance_name,
                "created": started.created,
            }
        )
    elif started.created:
        _render.done(f"enqueued {workflow_name}/{instance_name}")
    else:
        _render.done(
            f"not enqueued: key {idempotency_key!r} already started"
            f" {started.workflow_name}/{started.instance_name}"
        )


@app.command("cancel")
def cancel(ctx: typer.Context, workflow_name: WorkflowArg, instance_name: InstanceArg) -> None:
    """Ask a running instance to cancel; its on_cancel callback decides what happens."""
    _act_on_running(ctx, workflow_name, instance_name, "cancel")
    _render.done(f"cancel requested for {workflow_name}/{instance_name}")


@app.command("kill")
def kill(ctx: typer.Context, workflow_name: WorkflowArg, instance_name: InstanceArg) -> None:
    """End a running instance at once with the error 'killed'; no callback runs."""
    _act_on_running(ctx, workflow_name, instance_name, "kill")
    _render.done(f"killed {workflow_name}/{instance_name}")


def _act_on_running(
    ctx: typer.Context, workflow_name: str, instance_name: str, action: Literal["cancel", "kill"]
) -> None:
    """Cancel or kill the running instance; a finished one is named as finished."""

    async def go() -> None:
        async with storage_manager(ctx, writes=f"the {action}") as manager:
            act = manager.cancel_workflow if action == "cancel" else manager.kill_workflow
            try:
                await act(workflow_name, instance_name)
            except errors.WorkflowInstanceNotFoundError:
                await _refuse_if_finished(manager, workflow_name, instance_name, action)
                raise

    run(ctx, go(), subject=f"{workflow_name}/{instance_name}")


async def _refuse_if_finished(
    manager: Manager, workflow_name: str, instance_name: str, action: str
) -> None:
    """Say so when the run to ``action`` has already finished (else return: not found).

    Raises:
        CliError: the newest run of these names has finished.
    """
    try:
        found = await manager.get_workflow_instance(workflow_name, instance_name)
    except errors.WorkflowInstanceNotFoundError:
        return
    if not found.is_running():
        raise CliError(
            f"{workflow_name}/{instance_name} has already finished ({found.data.outcome()}):"
            f" there is nothing to {action}"
        )


@app.command("trim")
def trim(
    ctx: typer.Context,
    keep_runs: KeepRunsOption = None,
    keep_days: KeepDaysOption = None,
    max_rows: MaxRowsOption = None,
    margin_rows: MarginRowsOption = None,
    max_age_days: MaxAgeDaysOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Trim finished runs (and their history and dead tasks) now, under the bounds given.

    Only the bounds given apply: without --max-rows or --max-age-days, no
    store-wide bound (a worker's sweeps keep applying their own).
    """
    outcome: list[int | None] = []

    async def go() -> None:
        retention = retention_from_options(
            keep_runs=keep_runs or [],
            keep_days=keep_days or [],
            max_rows=max_rows,
            margin_rows=margin_rows,
            max_age_days=max_age_days,
            unbounded=True,
        )
        async with storage_manager(ctx, writes="the trim") as manager:
            outcome.append(await manager.trim_history(retention))

    run(ctx, go())
    [trimmed] = outcome
    if as_json:
        _render.print_json({"trimmed": trimmed, "skipped": trimmed is None})
    elif trimmed is None:
        _render.done("nothing trimmed: another process is trimming this store now")
    else:
        _render.done(f"trimmed {trimmed} finished run{'' if trimmed == 1 else 's'}")


@app.command("retention")
def retention(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show the history retention the store's trims last applied, rule by rule.

    Every worker's sweep trims under its retention (and so does `workflows
    trim`); the store records it when it changes, with the time.
    """

    async def go() -> list[RetentionRule]:
        async with storage_manager(ctx) as manager:
            return await manager.applied_retention()

    rules = run(ctx, go())
    if as_json:
        _render.print_json({"rules": [_render.retention_rule_dict(rule) for rule in rules]})
    elif not rules:
        _render.out.print("no retention applied yet: no sweep or trim has run on this store")
    else:
        _render.out.print(f"applied since {_render.time_text(rules[0].applied_at)} UTC:")
        for rule in rules:
            _render.out.print(Text("  " + rule.text()))


@app.command("failed")
def failed(
    ctx: typer.Context,
    workflow_name: Annotated[
        str | None,
        typer.Option("--workflow", metavar="WORKFLOW", help="Only failed runs of this workflow."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most this many runs.")
    ] = DEFAULT_LIST_LIMIT,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="RUN_ID",
            help="Only runs older than this run id (the next, older page).",
            show_default=False,
        ),
    ] = None,
    tracebacks: TracebackFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """List failed runs not requeued yet, newest first, with the error.

    `cereal workflows requeue RUN_ID` starts one again with its parameters.
    """

    async def go() -> list[FailedRun]:
        async with storage_manager(ctx) as manager:
            return await manager.list_failed_runs(
                workflow_name=workflow_name, limit=limit + 1, before=before
            )

    found = run(ctx, go())
    page, older = newest_page(found, limit, lambda entry: entry.run_id)
    if as_json:
        _render.print_json(
            {"failed_runs": [_render.failed_run_dict(r) for r in page], "older_runs": older}
        )
    else:
        _render.failed_runs_table(page, older=older, tracebacks=tracebacks)


@app.command("requeue")
def requeue(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str],
        typer.Argument(
            help="Failed run ids (from `cereal workflows failed`).", metavar="RUN_ID..."
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Start failed runs again with their parameters; exit 1 if one was not requeued."""

    async def go() -> dict[str, RequeueOutcome]:
        async with storage_manager(ctx, writes="a requeue") as manager:
            return await manager.requeue_failed_runs(run_ids)

    report_requeue("run", run(ctx, go()), as_json=as_json)
