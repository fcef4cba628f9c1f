"""``cereal schedules``: create, inspect, enable, disable, update, trigger and delete schedules."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

import typer

from cereal import recurrence
from cereal.checks.times import utcnow
from cereal.cli import _render
from cereal.cli._common import CliError, parse_json, run, storage_manager
from cereal.models import OVERLAP_POLICIES, UNSET, RunOutcome, Schedule, check_overlap

app = typer.Typer(
    name="schedules",
    help="Manage recurring workflow schedules (RFC 5545 RRULEs, or 5-field cron in UTC).",
    no_args_is_help=True,
)

WorkflowArg = Annotated[
    str, typer.Argument(help="Workflow name.", metavar="WORKFLOW", show_default=False)
]
InstanceArg = Annotated[
    str, typer.Argument(help="Instance name.", metavar="INSTANCE", show_default=False)
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ParametersOption = Annotated[
    str | None,
    typer.Option(
        "--parameters",
        "-p",
        metavar="JSON",
        help="Parameters of each run, as JSON; @FILE reads a file, - reads stdin.",
    ),
]
OverlapOption = Annotated[
    str | None,
    typer.Option(
        "--overlap",
        metavar="POLICY",
        help=(
            "What a due run does while the previous one is live: "
            + ", ".join(OVERLAP_POLICIES)
            + " (default for a new schedule: skip)."
        ),
        show_default=False,
    ),
]
CatchUpOption = Annotated[
    float | None,
    typer.Option(
        "--catch-up-window",
        metavar="SECONDS",
        help=(
            "A run missed while no worker ran starts once on restart if due within "
            "this many seconds (default for a new schedule: 0, never)."
        ),
        show_default=False,
    ),
]

_OUTCOMES = {
    RunOutcome.STARTED: "started a run",
    RunOutcome.REPLACED: "killed the live run and started a new one",
    RunOutcome.SKIPPED: "skipped: a run is live and the overlap policy is skip",
    RunOutcome.BUFFERED: "a run waits for the live one to end",
    RunOutcome.CANCELLING: "asked the live run to cancel; a run starts once it has ended",
}


DEFAULT_LIST_LIMIT = 100
"""How many schedules ``schedules list`` shows unless ``--limit`` says otherwise."""


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most this many schedules.")
    ] = DEFAULT_LIST_LIMIT,
    offset: Annotated[
        int,
        typer.Option("--offset", min=0, help="Skip this many schedules first (the next page)."),
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List schedules by workflow name, then instance name.

    One page at a time: --limit schedules from --offset on; a last line says
    when more exist.
    """

    async def go() -> list[Schedule]:
        async with storage_manager(ctx) as manager:
            # one more than shown: whether another page exists, without counting them all
            return await manager.list_workflow_schedules(limit=limit + 1, offset=offset)

    found = run(ctx, go())
    schedules, more = found[:limit], len(found) > limit
    if as_json:
        _render.print_json([_render.schedule_dict(schedule) for schedule in schedules])
        if more:
            _render.note(f"more schedules exist: --offset {offset + limit} shows the next page")
    else:
        _render.schedules_table(schedules, offset=offset, more=more)


@app.command("show")
def show(
    ctx: typer.Context,
    workflow_name: WorkflowArg,
    instance_name: InstanceArg,
    as_json: JsonFlag = False,
) -> None:
    """Show one schedule."""

    async def go() -> Schedule:
        async with storage_manager(ctx) as manager:
            return await manager.get_workflow_schedule(workflow_name, instance_name)

    schedule = run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    if as_json:
        _render.print_json(_render.schedule_dict(schedule))
    else:
        _render.schedule_detail(schedule)


@app.command("create")
def create(
    ctx: typer.Context,
    workflow_name: WorkflowArg,
    instance_name: InstanceArg,
    rrule: Annotated[
        str,
        typer.Option(
            "--rrule",
            "-r",
            metavar="RULE",
            help=(
                "Recurrence: an RRULE such as 'FREQ=HOURLY;INTERVAL=2' (optionally with "
                "DTSTART), or a 5-field cron expression such as '0 3 * * *' (UTC), stored "
                "as its RRULE."
            ),
            show_default=False,
        ),
    ],
    parameters: ParametersOption = None,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Create it disabled (enable it later).")
    ] = False,
    overlap: OverlapOption = None,
    catch_up_window: CatchUpOption = None,
) -> None:
    """Create a schedule that enqueues WORKFLOW_NAME/INSTANCE_NAME whenever the rule fires."""

    async def go() -> Schedule:
        value = parse_json(parameters)
        async with storage_manager(ctx, writes="the new schedule") as manager:
            await manager.create_workflow_schedule(
                workflow_name,
                instance_name,
                value,
                rrule,
                enabled=not disabled,
                overlap="skip" if overlap is None else check_overlap(overlap),
                catch_up_window=0 if catch_up_window is None else catch_up_window,
            )
            return await manager.get_workflow_schedule(workflow_name, instance_name)

    schedule = run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    state = "disabled" if disabled else "enabled"
    _render.done(
        f"created schedule {workflow_name}/{instance_name} ({state}): {_stored_as(rrule)};"
        f" {_first_due(schedule)}"
    )


def _first_due(schedule: Schedule, which: str = "first") -> str:
    """When the schedule's next run is due, saying "now" when that is already the case.

    A rule's first occurrence is its DTSTART, which is the moment of creation
    when the rule gives none: FREQ=HOURLY is due at once, then every hour.
    """
    due = schedule.next_due_at
    when = due.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if due <= utcnow():
        return f"{which} run due now ({when}), then as the rule says"
    return f"{which} run due {when}"


def _stored_as(rule: str) -> str:
    """The rule as stored (an accepted rule normalizes again without error)."""
    stored = recurrence.normalize(rule)
    return stored if stored == rule else f"{stored} (from {rule!r})"


def _set_enabled(ctx: typer.Context, workflow_name: str, instance_name: str, enabled: bool) -> None:
    async def go() -> None:
        async with storage_manager(ctx, writes="the change") as manager:
            await manager.update_workflow_schedule(workflow_name, instance_name, enabled=enabled)

    run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    _render.done(f"{'enabled' if enabled else 'disabled'} {workflow_name}/{instance_name}")


@app.command("enable")
def enable(ctx: typer.Context, workflow_name: WorkflowArg, instance_name: InstanceArg) -> None:
    """Enable a schedule; its next due time is computed from now."""
    _set_enabled(ctx, workflow_name, instance_name, True)


@app.command("disable")
def disable(ctx: typer.Context, workflow_name: WorkflowArg, instance_name: InstanceArg) -> None:
    """Disable a schedule; it keeps its settings but starts nothing."""
    _set_enabled(ctx, workflow_name, instance_name, False)


@app.command("update")
def update(
    ctx: typer.Context,
    workflow_name: WorkflowArg,
    instance_name: InstanceArg,
    rrule: Annotated[
        str | None,
        typer.Option(
            "--rrule", "-r", metavar="RULE", help="New recurrence: an RRULE or 5-field cron."
        ),
    ] = None,
    parameters: Annotated[
        str | None,
        typer.Option(
            "--parameters",
            "-p",
            metavar="JSON",
            help="New parameters as JSON ('null' clears them); @FILE reads a file, - stdin.",
        ),
    ] = None,
    overlap: OverlapOption = None,
    catch_up_window: CatchUpOption = None,
) -> None:
    """Change a schedule's rule, parameters, overlap and/or catch-up window, atomically."""

    async def go() -> Schedule:
        if (rrule, parameters, overlap, catch_up_window) == (None, None, None, None):
            raise CliError(
                "nothing to update: give --rrule, --parameters, --overlap and/or --catch-up-window"
            )
        value: Any = UNSET if parameters is None else parse_json(parameters)
        async with storage_manager(ctx, writes="the update") as manager:
            await manager.update_workflow_schedule(
                workflow_name,
                instance_name,
                parameters=value,
                recurrence=rrule,
                overlap=None if overlap is None else check_overlap(overlap),
                catch_up_window=catch_up_window,
            )
            return await manager.get_workflow_schedule(workflow_name, instance_name)

    schedule = run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    new_rule = "" if rrule is None else f": {_stored_as(rrule)}; {_first_due(schedule, 'next')}"
    _render.done(f"updated schedule {workflow_name}/{instance_name}{new_rule}")


@app.command("trigger")
def trigger(ctx: typer.Context, workflow_name: WorkflowArg, instance_name: InstanceArg) -> None:
    """Run a schedule once now, under its overlap policy; its next due time stays.

    A worker picks the run up; a run that has to wait (buffer_one,
    cancel_other) is started by a worker's scheduler once the live one ends.
    """

    async def go() -> RunOutcome:
        async with storage_manager(ctx, writes="the triggered run") as manager:
            return await manager.trigger_workflow_schedule(workflow_name, instance_name)

    outcome = run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    _render.done(f"triggered {workflow_name}/{instance_name}: {_OUTCOMES[outcome]}")


@app.command("delete")
def delete(ctx: typer.Context, workflow_name: WorkflowArg, instance_name: InstanceArg) -> None:
    """Delete a schedule; instances it already started are untouched."""

    async def go() -> None:
        async with storage_manager(ctx, writes="the deletion") as manager:
            await manager.delete_workflow_schedule(workflow_name, instance_name)

    run(ctx, go(), subject=f"{workflow_name}/{instance_name}")
    _render.done(f"deleted schedule {workflow_name}/{instance_name}")
