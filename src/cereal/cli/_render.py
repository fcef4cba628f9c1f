"""Everything the CLI shows: rich tables for people, JSON for scripts, one-line errors.

This is the only module of the CLI that formats output. Human output goes
to stdout through a rich console; errors and diagnostics go to stderr. When
a stream is not a terminal (piped or redirected) nothing is wrapped to a
width: each table row stays on one line, for ``grep`` and ``cut``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from cereal import values
from cereal.demo import DemoReport, ProgressCallback
from cereal.models import (
    DeadTask,
    FailedRun,
    InstanceEvent,
    InstanceTask,
    RequeueOutcome,
    RetentionRule,
    Schedule,
    StartKey,
    TaskQueueStats,
    WorkerInfo,
    WorkflowInstanceData,
)

UNWRAPPED_WIDTH = 1_000_000
"""The width given to a console that is not a terminal: wide enough to never wrap."""

VALUE_PREVIEW_CHARS = 2_000
"""``workflows show`` prints at most this many characters of a value unless ``--full``."""
VALUE_PREVIEW_LINES = 40
"""``workflows show`` prints at most this many lines of a value unless ``--full``."""


def _console(*, stderr: bool) -> Console:
    # no markup: every name, key and error is printed as given ("[/]" is a valid name)
    console = Console(stderr=stderr, highlight=False, markup=False)
    if not console.is_terminal:
        console.width = UNWRAPPED_WIDTH
    return console


out = _console(stderr=False)
"""Standard output: tables, confirmations and JSON."""
err = _console(stderr=True)
"""Standard error: error messages, tracebacks and progress."""


# ---- plain data (the --json shapes) ---------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _decoded(raw: bytes | None) -> Any:
    try:
        return values.decode(raw)
    except ValueError:  # not JSON after all: show it rather than fail the listing
        return None if raw is None else raw.decode("utf-8", errors="replace")


def instance_dict(data: WorkflowInstanceData) -> dict[str, Any]:
    """The JSON shape of one workflow instance, as ``--json`` prints it."""
    return {
        "workflow_name": data.workflow_name,
        "instance_name": data.instance_name,
        "status": data.outcome(),  # as the tables show it
        "is_running": data.is_running(),
        "parameters": _decoded(data.parameters),
        "payload": _decoded(data.payload),
        "result": _decoded(data.result),
        "error": data.err,
        "started_at": _iso(data.started_at),
        "ended_at": _iso(data.ended_at),
    }


def schedule_dict(schedule: Schedule) -> dict[str, Any]:
    """The JSON shape of one schedule, as ``--json`` prints it."""
    return {
        "id": schedule.id,
        "workflow_name": schedule.workflow_name,
        "instance_name": schedule.instance_name,
        "enabled": schedule.enabled,
        "recurrence": schedule.recurrence,
        "parameters": _decoded(schedule.parameters),
        "next_due_at": _iso(schedule.next_due_at),
        "last_enqueued_at": _iso(schedule.last_enqueued_at),
        "last_start": _iso(schedule.last_start),
        "last_end": _iso(schedule.last_end),
        "overlap": schedule.overlap,
        "catch_up_window": schedule.catch_up_window,
        "run_pending": schedule.run_pending,
    }


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON on stdout, unwrapped and uncoloured."""
    out.out(json.dumps(value, indent=2, ensure_ascii=False), highlight=False)


# ---- messages -------------------------------------------------------------------------


def error(message: str) -> None:
    """One red line on stderr: ``error: <message>``."""
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    err.print(Text.assemble(("error: ", "bold red"), (first_line, "red")), soft_wrap=True)


def traceback() -> None:
    """The traceback of the exception being handled, on stderr (for ``-v``)."""
    err.print_exception(show_locals=False)


def warning(message: str) -> None:
    """One yellow line on stderr: ``warning: <message>``."""
    err.print(Text.assemble(("warning: ", "bold yellow"), (message, "yellow")), soft_wrap=True)


def done(message: str) -> None:
    """A one-line confirmation on stdout."""
    out.print(Text.assemble(("ok ", "bold green"), message), soft_wrap=True)


def note(message: str) -> None:
    """A one-line informational message on stderr."""
    err.print(Text(message, style="dim"), soft_wrap=True)


# ---- workflow instances ---------------------------------------------------------------


def _short(value: Any, limit: int = 40) -> str:
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def time_text(value: datetime) -> str:
    """An instant as the tables print it, ``2026-01-31 12:00:05``."""
    return _time(value)


_OUTCOME_STYLES = {"failed": "red", "completed": "green"}


def _status(data: WorkflowInstanceData) -> Text:
    outcome = data.outcome()
    return Text(outcome, style=_OUTCOME_STYLES.get(outcome, "yellow"))


def instances_table(
    instances: Sequence[WorkflowInstanceData],
    *,
    offset: int = 0,
    more: bool = False,
    by_name: bool = True,
) -> None:
    """A table of workflow instances (entries ``offset + 1`` on), or a note when there are none.

    ``more`` says that entries beyond these exist: a last line tells how to see
    them. ``by_name`` says which order the entries are in (else newest first).
    """
    if not instances:
        out.print("no workflow instances" + (f" after the first {offset}" if offset else ""))
        return
    first, last = offset + 1, offset + len(instances)
    title = f"{len(instances)} workflow instance(s)"
    if offset or more:
        title += f" ({first}-{last} {'in name order' if by_name else 'newest first'})"
    table = Table(title=title)
    table.add_column("workflow", overflow="fold", min_width=10)
    table.add_column("instance", overflow="fold", min_width=10)
    table.add_column("status", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("ended", no_wrap=True)
    table.add_column("result / error", overflow="ellipsis", max_width=32)
    for data in instances:
        outcome = data.err if data.err is not None else _short(_decoded(data.result))
        table.add_row(
            data.workflow_name,
            data.instance_name,
            _status(data),
            _time(data.started_at),
            _time(data.ended_at),
            outcome,
        )
    out.print(table)
    if more:
        out.print(
            f"more workflow instances exist after {last}: --offset {last} shows the next page"
        )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _preview(raw: bytes | None, full: bool) -> Text:
    """A stored value as indented JSON, cut to a preview unless ``full``."""
    text = _pretty(_decoded(raw))
    if full or (len(text) <= VALUE_PREVIEW_CHARS and text.count("\n") < VALUE_PREVIEW_LINES):
        return Text(text)
    shown = "\n".join(text[:VALUE_PREVIEW_CHARS].splitlines()[:VALUE_PREVIEW_LINES])
    size = len(raw or b"")
    return Text.assemble(
        shown,
        "\n",
        (f"... cut: the value is {size:,} bytes of JSON; --full (or --json) shows it all", "dim"),
    )


def instance_detail(
    data: WorkflowInstanceData, *, full: bool = False, start_key: StartKey | None = None
) -> None:
    """Every field of one instance, one per row; large values cut short unless ``full``."""
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("workflow", data.workflow_name)
    table.add_row("instance", data.instance_name)
    table.add_row("status", _status(data))
    table.add_row("started", _time(data.started_at))
    table.add_row("ended", _time(data.ended_at))
    if start_key is not None:
        table.add_row("idempotency key", Text(start_key.idempotency_key))
    if data.concurrency_key is not None:
        table.add_row("concurrency key", Text(data.concurrency_text()))
    table.add_row("parameters", _preview(data.parameters, full))
    if data.is_running():
        table.add_row("payload", _preview(data.payload, full))
    elif data.err is not None:
        table.add_row("error", Text(data.err, style="red"))
    else:
        table.add_row("result", _preview(data.result, full))
    out.print(table)


def retention_rule_dict(rule: RetentionRule) -> dict[str, Any]:
    """The JSON shape of one rule of the applied history retention."""
    return {
        "workflow_name": rule.workflow_name,
        "max_rows": rule.max_rows,
        "margin_rows": rule.margin_rows,
        "max_runs": rule.max_runs,
        "max_age_seconds": rule.max_age,
        "applied_at": _iso(rule.applied_at),
    }


def instance_task_dict(task: InstanceTask) -> dict[str, Any]:
    """The JSON shape of one queued or running task of an instance."""
    return {
        "task_id": task.task_id,
        "task_name": task.task_name,
        "state": task.state,
        "attempt": task.attempt,
        "parameters": _decoded(task.parameters),
        "enqueued_at": _iso(task.enqueued_at),
        "start_after": _iso(task.start_after),
        "concurrency_key": task.concurrency_key,
        "concurrency_limit": task.concurrency_limit,
        "rate_limit_starts": task.rate_limit_starts,
        "rate_limit_seconds": task.rate_limit_seconds,
        "priority": task.priority,
        "idempotency_key": task.idempotency_key,
    }


def concurrency_text(task: InstanceTask) -> str:
    """``key (at most N; S starts per P s)`` for a keyed task, ``-`` for one without a key."""
    if task.concurrency_key is None:
        return "-"
    return f"{task.concurrency_key} ({task.limits_text()})"


def task_dict(task: InstanceTask) -> dict[str, Any]:
    """The JSON shape of one queued or running task with the run it serves."""
    return {
        "workflow_name": task.workflow_name,
        "instance_name": task.instance_name,
        **instance_task_dict(task),
    }


def queue_stats_dict(stats: TaskQueueStats) -> dict[str, Any]:
    """The JSON shape of one task name's queue counts."""
    return {
        "task_name": stats.task_name,
        "queued": stats.queued,
        "running": stats.running,
        "oldest_queued_at": _iso(stats.oldest_queued_at),
    }


def instance_event_dict(event: InstanceEvent) -> dict[str, Any]:
    """The JSON shape of one event of an instance's history."""
    return {
        "seq": event.seq,
        "type": str(event.type),
        "task_name": event.task_name,
        "task_status": None if event.task_status is None else str(event.task_status),
        "error_text": event.error_text,
        "pending": event.pending,
        "enqueued_at": _iso(event.enqueued_at),
        "task_enqueued_at": _iso(event.task_enqueued_at),
        "task_attempts": event.task_attempts,
    }


def instance_tasks_table(tasks: Sequence[InstanceTask], *, older: str | None) -> None:
    """One page of an instance's tasks, newest first; a last line says how to see older ones."""
    _tasks_page(tasks, older=older, cursor="--tasks-before", with_run=False)


def tasks_table(tasks: Sequence[InstanceTask], *, older: str | None) -> None:
    """One page of one name's tasks, newest first, with their runs; a last line names the next."""
    _tasks_page(tasks, older=older, cursor="--before", with_run=True)


def _tasks_page(
    tasks: Sequence[InstanceTask], *, older: str | None, cursor: str, with_run: bool
) -> None:
    if not tasks:
        out.print("no queued or running tasks" + (" older than that" if older else ""))
        return
    table = Table(title=f"{len(tasks)} task(s), newest first")
    table.add_column("id", no_wrap=True)
    named = ("workflow", "instance") if with_run else ("task",)
    for heading in named:
        table.add_column(heading, overflow="fold")
    for heading in ("state", "attempt", "enqueued"):
        table.add_column(heading, no_wrap=True)
    keyed = any(task.concurrency_key is not None for task in tasks)
    if keyed:
        table.add_column("concurrency key", overflow="fold")
    prioritised = any(task.priority for task in tasks)
    if prioritised:
        table.add_column("priority", no_wrap=True)
    with_keys = any(task.idempotency_key is not None for task in tasks)
    if with_keys:
        table.add_column("idempotency key", overflow="fold")
    for task in tasks:
        names = (task.workflow_name, task.instance_name) if with_run else (task.task_name,)
        cells = [task.task_id, *names, task.state, str(task.attempt), _time(task.enqueued_at)]
        if keyed:
            cells.append(concurrency_text(task))
        if prioritised:
            cells.append(str(task.priority))
        if with_keys:
            cells.append(task.idempotency_key or "-")
        table.add_row(*cells)
    out.print(table)
    if older is not None:
        out.print(f"older tasks exist: {cursor} {older} shows the next page")


def queue_stats_table(found: Sequence[TaskQueueStats], *, hidden: int = 0) -> None:
    """Each task name's queued and running counts and its oldest queued task's time.

    ``hidden`` task names beyond these were cut by ``--limit``: a last line
    says so.
    """
    if not found:
        out.print("no queued or running tasks")
        return
    table = Table(title=f"{len(found)} task name(s)")
    table.add_column("task", overflow="fold")
    table.add_column("queued", no_wrap=True, justify="right")
    table.add_column("running", no_wrap=True, justify="right")
    table.add_column("oldest queued", no_wrap=True)
    for entry in found:
        table.add_row(
            entry.task_name, str(entry.queued), str(entry.running), _time(entry.oldest_queued_at)
        )
    out.print(table)
    if hidden:
        out.print(left_out("task name(s)", len(found), hidden))


def instance_events_table(
    events: Sequence[InstanceEvent],
    *,
    older: int | None = None,
    newest_first: bool = True,
    cursor: str = "--events-before",
) -> None:
    """Events of an instance's history (one page, newest first, or all, oldest first).

    A task's outcome carries its error text; when ``older`` is set a last line
    names the ``cursor`` option that shows the next, older page.
    """
    if not events:
        out.print("no events recorded")
        return
    order = "newest first" if newest_first else "oldest first"
    table = Table(title=f"{len(events)} event(s), {order}")
    table.add_column("seq", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("task", overflow="fold")
    table.add_column("outcome", overflow="fold")
    table.add_column("enqueued", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for event in events:
        outcome = "" if event.task_status is None else str(event.task_status)
        if event.error_text:
            outcome += f": {event.error_text}"
        state = Text("pending", style="yellow") if event.pending else Text("handled", style="dim")
        table.add_row(
            str(event.seq),
            str(event.type),
            event.task_name or "",
            outcome,
            _time(event.enqueued_at),
            state,
        )
    out.print(table)
    if older is not None:
        out.print(f"older events exist: {cursor} {older} shows the next page")


# ---- schedules ------------------------------------------------------------------------


def _enabled(enabled: bool) -> Text:
    return Text("yes", style="green") if enabled else Text("no", style="dim")


def schedules_table(schedules: Sequence[Schedule], *, offset: int = 0, more: bool = False) -> None:
    """A table of schedules (entries ``offset + 1`` on), or a note when there are none.

    ``more`` says that schedules beyond these exist: a last line tells how to
    see them.
    """
    if not schedules:
        out.print("no workflow schedules" + (f" after the first {offset}" if offset else ""))
        return
    first, last = offset + 1, offset + len(schedules)
    title = f"{len(schedules)} schedule(s)"
    if offset or more:
        title += f" ({first}-{last} in name order)"
    table = Table(title=title)
    columns = ("workflow", "instance", "enabled", "recurrence", "overlap", "next due")
    for column in (*columns, "last enqueued"):
        table.add_column(column, overflow="fold")
    for schedule in schedules:
        table.add_row(
            schedule.workflow_name,
            schedule.instance_name,
            _enabled(schedule.enabled),
            schedule.recurrence,
            _overlap(schedule),
            _time(schedule.next_due_at) if schedule.enabled else "",
            _time(schedule.last_enqueued_at),
        )
    out.print(table)
    if more:
        out.print(f"more schedules exist after {last}: --offset {last} shows the next page")


def _overlap(schedule: Schedule) -> str:
    """The overlap policy, noting a run that waits for the live one to end."""
    return f"{schedule.overlap} (a run waits)" if schedule.run_pending else schedule.overlap


def schedule_detail(schedule: Schedule) -> None:
    """Every field of one schedule, one per row."""
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("workflow", schedule.workflow_name)
    table.add_row("instance", schedule.instance_name)
    table.add_row("enabled", _enabled(schedule.enabled))
    table.add_row("recurrence", schedule.recurrence)
    table.add_row("parameters", _pretty(_decoded(schedule.parameters)))
    table.add_row("overlap", _overlap(schedule))
    table.add_row("catch-up window", f"{schedule.catch_up_window:g} s")
    table.add_row("next due", _time(schedule.next_due_at))
    table.add_row("last enqueued", _time(schedule.last_enqueued_at))
    table.add_row("last run start", _time(schedule.last_start))
    table.add_row("last run end", _time(schedule.last_end))
    out.print(table)


# ---- live workers ---------------------------------------------------------------------


def worker_dict(info: WorkerInfo) -> dict[str, Any]:
    """The JSON shape of one live worker, as ``--json`` prints it."""
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "started_at": _iso(info.started_at),
        "last_seen_at": _iso(info.last_seen_at),
        "workflow_names": list(info.workflow_names),
        "task_names": list(info.task_names),
        "version": info.version,
    }


def left_out(what: str, shown: int, hidden: int) -> str:
    """The last line of a listing cut to ``--limit``: how many are left out, how to see them."""
    return f"{hidden} more {what} not shown: --limit {shown + hidden} shows them all"


def workers_table(workers: Sequence[WorkerInfo], *, hidden: int = 0) -> None:
    """A table of live workers, or a note when there are none.

    ``hidden`` live workers beyond these were cut by ``--limit``: a last line
    says so.
    """
    if not workers:
        out.print("no live workers")
        return
    table = Table(title=f"{len(workers)} live worker(s)")
    for column in ("id", "host", "pid", "started", "last seen", "workflows", "tasks", "version"):
        table.add_column(column, overflow="fold")
    for info in workers:
        table.add_row(
            info.id,
            info.host,
            str(info.pid),
            _time(info.started_at),
            _time(info.last_seen_at),
            ", ".join(info.workflow_names),
            ", ".join(info.task_names),
            info.version,
        )
    out.print(table)
    if hidden:
        out.print(left_out("live worker(s)", len(workers), hidden))


# ---- migrate and demo -----------------------------------------------------------------


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for printing."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<database URL>"


def migrations(applied: Sequence[str], url: str) -> None:
    """What ``cereal migrate`` did."""
    if not applied:
        out.print(f"database {safe_url(url)} is up to date: no migration applied")
        return
    for name in applied:
        done(f"applied {name}")
    out.print(f"{len(applied)} migration(s) applied to {safe_url(url)}")


def demo_progress(items: int) -> tuple[Progress, ProgressCallback]:
    """A live progress bar of the demo batch (on stderr) and the callback that advances it."""
    progress = Progress(
        TextColumn("[bold]order batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
    )
    bar = progress.add_task("items", total=items)

    def advance(finished: int, total: int) -> None:
        progress.update(bar, completed=finished, total=total)

    return progress, advance


def demo_report(report: DemoReport) -> None:
    """The results table printed at the end of ``cereal demo``."""
    table = Table(title="cereal demo results")
    table.add_column("metric")
    table.add_column("value", justify="right", overflow="fold")
    table.add_row("database", safe_url(report.database))
    table.add_row("workflow", report.workflow_name)
    table.add_row("instance", report.instance_name)
    table.add_row("items", str(report.items))
    table.add_row("succeeded", Text(str(report.succeeded), style="green"))
    table.add_row("retried (items)", Text(str(report.retried_items), style="yellow"))
    table.add_row("retry tasks", str(report.retries))
    failed_style = "red" if report.failed_permanently else "green"
    table.add_row("permanently failed", Text(str(report.failed_permanently), style=failed_style))
    table.add_row("task executions", str(report.task_executions))
    table.add_row("task workers", str(report.workers))
    table.add_row("elapsed", f"{report.elapsed:.2f} s")
    table.add_row("tasks/s", f"{report.tasks_per_second:.0f}")
    table.add_row("schedule runs (heartbeat)", str(report.schedule_runs))
    table.add_row("checksum", report.checksum)
    out.print(table)
    if report.failed_items:
        out.print(
            "permanently failed items: " + ", ".join(str(item) for item in report.failed_items)
        )


# ---- dead letters ---------------------------------------------------------------------


def dead_task_dict(dead: DeadTask) -> dict[str, Any]:
    """The JSON shape of one dead task, its error type and traceback included."""
    return {
        "task_id": dead.task_id,
        "task_name": dead.task_name,
        "workflow_name": dead.workflow_name,
        "instance_name": dead.instance_name,
        "status": str(dead.status),
        "attempts": dead.attempts,
        "error": dead.error_text,
        "error_type": dead.error_type,
        "error_traceback": dead.error_traceback,
        "parameters": _decoded(dead.parameters),
        "run_live": dead.run_live,
        "enqueued_at": _iso(dead.enqueued_at),
        "died_at": _iso(dead.died_at),
    }


def failed_run_dict(run: FailedRun) -> dict[str, Any]:
    """The JSON shape of one failed run, its error type and traceback included."""
    return {
        "run_id": run.run_id,
        "workflow_name": run.workflow_name,
        "instance_name": run.instance_name,
        "error": run.error_text,
        "error_type": run.error_type,
        "error_traceback": run.error_traceback,
        "parameters": _decoded(run.parameters),
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
    }


def _error_line(error_type: str | None, text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{error_type}: {first}" if error_type else first


def dead_tasks_table(
    found: Sequence[DeadTask], *, older: str | None, tracebacks: bool = False
) -> None:
    """One page of dead tasks, newest first; each traceback below the table when asked."""
    if not found:
        out.print("no dead tasks" + (" older than that" if older else ""))
        return
    table = Table(title=f"{len(found)} dead task(s), newest first")
    table.add_column("id", no_wrap=True)
    for heading in ("task", "workflow", "instance"):
        table.add_column(heading, overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", no_wrap=True, justify="right")
    table.add_column("died", no_wrap=True)
    table.add_column("requeue", no_wrap=True)
    table.add_column("error", overflow="ellipsis", max_width=48)
    for dead in found:
        table.add_row(
            dead.task_id,
            dead.task_name,
            dead.workflow_name,
            dead.instance_name,
            Text(str(dead.status), style="red"),
            str(dead.attempts),
            _time(dead.died_at),
            "yes" if dead.run_live else Text("run ended", style="dim"),
            _error_line(dead.error_type, dead.error_text),
        )
    out.print(table)
    if tracebacks:
        for dead in found:
            if dead.error_traceback:
                out.print(Text(f"\ntask {dead.task_id} ({dead.task_name}):", style="bold"))
                out.print(Text(dead.error_traceback.rstrip(), style="red"))
    if older is not None:
        out.print(f"older dead tasks exist: --before {older} shows the next page")


def failed_runs_table(
    found: Sequence[FailedRun], *, older: str | None, tracebacks: bool = False
) -> None:
    """One page of failed runs, newest first; each traceback below the table when asked."""
    if not found:
        out.print("no failed runs" + (" older than that" if older else ""))
        return
    table = Table(title=f"{len(found)} failed run(s), newest first")
    table.add_column("run id", no_wrap=True)
    table.add_column("workflow", overflow="fold")
    table.add_column("instance", overflow="fold")
    table.add_column("started", no_wrap=True)
    table.add_column("ended", no_wrap=True)
    table.add_column("error", overflow="ellipsis", max_width=48)
    for run in found:
        table.add_row(
            run.run_id,
            run.workflow_name,
            run.instance_name,
            _time(run.started_at),
            _time(run.ended_at),
            _error_line(run.error_type, run.error_text),
        )
    out.print(table)
    if tracebacks:
        for run in found:
            if run.error_traceback:
                out.print(Text(f"\nrun {run.run_id} ({run.workflow_name}):", style="bold"))
                out.print(Text(run.error_traceback.rstrip(), style="red"))
    if older is not None:
        out.print(f"older failed runs exist: --before {older} shows the next page")


_REQUEUE_WORDS = {
    RequeueOutcome.REQUEUED: "requeued",
    RequeueOutcome.NOT_FOUND: "not found (never dead, requeued already, or trimmed)",
    RequeueOutcome.RUN_FINISHED: "not requeued: its run has ended (requeue the failed run)",
    RequeueOutcome.RUN_LIVE: "not requeued: a run of these names is live",
}


def requeue_outcomes(what: str, outcomes: dict[str, RequeueOutcome]) -> None:
    """One line per id: ``ok`` on stdout when requeued, an error line on stderr when not."""
    for given, outcome in outcomes.items():
        line = f"{what} {given}: {_REQUEUE_WORDS[outcome]}"
        if outcome is RequeueOutcome.REQUEUED:
            done(line)
        else:
            error(line)
