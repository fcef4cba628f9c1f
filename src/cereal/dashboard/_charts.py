"""The dashboard's charts, laid out from store data: throughput, task queues, a run's timeline.

Each builder turns records the Manager answers into a :class:`~._svg.Chart`
(see :mod:`._svg`); nothing here reads the store or knows HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cereal.dashboard._format import age
from cereal.dashboard._svg import WIDTH, Chart, Group, Label, Line, Rect, nice_top, scale
from cereal.models import (
    InstanceEvent,
    InstanceTask,
    TaskQueueStats,
    ThroughputBucket,
    WorkflowInstanceData,
)

_LEFT = 44.0  # room for the count axis's labels
_RIGHT = 8.0
_TOP = 10.0
_PLOT_HEIGHT = 150.0
_AXIS_ROOM = 22.0  # below the plot: the time labels
_TIME_TICKS = 6


# ---- throughput ---------------------------------------------------------------------


def throughput_chart(buckets: Sequence[ThroughputBucket], *, window_text: str) -> Chart:
    """Finished runs per bucket as stacked columns: completed below, failed above.

    One group per bucket (empty buckets too, with nothing drawn), column
    heights proportional to the counts against a round axis maximum.
    """
    completed = sum(b.completed for b in buckets)
    failed = sum(b.failed for b in buckets)
    summary = f"{completed} completed and {failed} failed runs in the {window_text}."
    if not buckets or completed + failed == 0:
        return Chart(
            "throughput",
            "Finished runs",
            f"No runs finished in the {window_text}.",
            height=40,
            empty=True,
        )
    top = nice_top(max(b.completed + b.failed for b in buckets))
    plot_width = WIDTH - _LEFT - _RIGHT
    slot = plot_width / len(buckets)
    gap = min(2.0, slot * 0.2)
    base = _TOP + _PLOT_HEIGHT
    groups = []
    for index, bucket in enumerate(buckets):
        x = _LEFT + index * slot + gap / 2
        done_height = scale(bucket.completed, top, _PLOT_HEIGHT)
        failed_height = scale(bucket.failed, top, _PLOT_HEIGHT)
        rects = []
        if bucket.completed:
            rects.append(Rect(x, base - done_height, slot - gap, done_height, "completed"))
        if bucket.failed:
            y = base - done_height - failed_height
            rects.append(Rect(x, y, slot - gap, failed_height, "failed"))
        title = (
            f"{_clock(bucket.start, bucket.seconds)}: "
            f"{bucket.completed} completed, {bucket.failed} failed"
        )
        groups.append(Group(title, tuple(rects), key=bucket.start.isoformat()))
    labels, lines = _count_axis(top, plot_width)
    every = max(1, len(buckets) // _TIME_TICKS)
    for index in range(0, len(buckets), every):
        bucket = buckets[index]
        x = _LEFT + index * slot
        labels.append(Label(x, base + 15, _clock(bucket.start, bucket.seconds), "start"))
    return Chart(
        "throughput",
        "Finished runs",
        summary,
        height=base + _AXIS_ROOM,
        groups=tuple(groups),
        labels=tuple(labels),
        lines=tuple(lines),
        legend=(("completed", "completed"), ("failed", "failed")),
    )


def _count_axis(top: int, plot_width: float) -> tuple[list[Label], list[Line]]:
    """Grid lines and labels at 0, half and the top of the count axis."""
    labels, lines = [], []
    for share in (0.0, 0.5, 1.0):
        y = _TOP + _PLOT_HEIGHT - share * _PLOT_HEIGHT
        value = top * share
        text = f"{value:g}"
        labels.append(Label(_LEFT - 6, y + 4, text, "end"))
        lines.append(Line(_LEFT, y, _LEFT + plot_width, y, "axis" if share == 0 else "grid"))
    return labels, lines


def _clock(moment: datetime, bucket_seconds: int) -> str:
    """A bucket's start as people read it: the time of day, or the date for day buckets."""
    moment = moment.astimezone(UTC)
    if bucket_seconds >= 86400:
        return moment.strftime("%m-%d")
    if bucket_seconds >= 3600:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%H:%M")


# ---- queues -------------------------------------------------------------------------

_NAME_ROOM = 180.0  # left of the bars: the task names
_COUNT_ROOM = 120.0  # right of the bars: the numbers
_ROW = 22.0
_MAX_NAME = 26


def queue_chart(queues: Sequence[TaskQueueStats]) -> Chart:
    """Per task name, a horizontal bar: queued tasks, then running ones, with both numbers."""
    if not queues:
        return Chart("queues", "Queue depth", "No queued or running tasks.", height=40, empty=True)
    top = max(q.queued + q.running for q in queues)
    plot_width = WIDTH - _NAME_ROOM - _COUNT_ROOM
    groups, labels = [], []
    for index, queue in enumerate(queues):
        y = _TOP + index * _ROW
        queued_width = scale(queue.queued, top, plot_width)
        running_width = scale(queue.running, top, plot_width)
        rects = []
        if queue.queued:
            rects.append(Rect(_NAME_ROOM, y, queued_width, _ROW - 6, "queued"))
        if queue.running:
            rects.append(Rect(_NAME_ROOM + queued_width, y, running_width, _ROW - 6, "running"))
        title = f"{queue.task_name}: {queue.queued} queued, {queue.running} running"
        groups.append(Group(title, tuple(rects), key=queue.task_name))
        labels.append(Label(_NAME_ROOM - 8, y + 12, _short(queue.task_name), "end", "name"))
        end = _NAME_ROOM + queued_width + running_width + 6
        labels.append(Label(end, y + 12, f"{queue.queued} queued, {queue.running} running"))
    queued = sum(q.queued for q in queues)
    running = sum(q.running for q in queues)
    return Chart(
        "queues",
        "Queue depth",
        f"{queued} queued and {running} running tasks over {len(queues)} task names.",
        height=_TOP + len(queues) * _ROW + 4,
        groups=tuple(groups),
        labels=tuple(labels),
        legend=(("queued", "queued"), ("running", "running")),
    )


def _short(name: str) -> str:
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "\u2026"


# ---- a run's timeline ---------------------------------------------------------------

_MARK = 4.0  # width of an instant (an event) on the time axis
_MAX_ROWS = 16
_MIN_SPAN = 0.01  # seconds: the shortest time axis, so a run of a few ms still fills it


@dataclass(frozen=True)
class _Span:
    """One thing on the timeline: a row, a start and end, its colour and its text."""

    row: str
    start: datetime
    end: datetime | None  # None: an instant
    kind: str
    title: str


def timeline_chart(
    data: WorkflowInstanceData,
    events: Sequence[InstanceEvent],
    tasks: Sequence[InstanceTask],
    now: datetime,
) -> Chart:
    """A run on a time axis: the run's bar, its events, and its tasks, one row per task name.

    Rows: ``run`` (start to end, or to now while live), ``events`` (each event
    the workflow received, at the time it arrived: a decision handles each),
    then one per task name: a finished task as a bar from its enqueue to the
    arrival of its result, coloured by how it ended (a mark where the result
    arrived when the history has no enqueue time: recorded before the store
    kept it), a queued or running task as a bar from its enqueue time to now.
    The axis spans at least 10 ms, so a short run still fills it.
    """
    spans = _spans(data, events, tasks, now)
    if not spans:
        return Chart("timeline", "Timeline", "Nothing recorded for this run yet.", 40, empty=True)
    rows = list(dict.fromkeys(span.row for span in spans))[:_MAX_ROWS]
    spans = [span for span in spans if span.row in rows]
    first = min(span.start for span in spans)
    last = max(max(span.start, span.end or span.start) for span in spans)
    total = max((last - first).total_seconds(), _MIN_SPAN)
    plot_width = WIDTH - _NAME_ROOM - _RIGHT - _MARK

    def x_of(moment: datetime) -> float:
        return _NAME_ROOM + scale((moment - first).total_seconds(), total, plot_width)

    groups = []
    for span in spans:
        y = _TOP + rows.index(span.row) * _ROW
        x = x_of(span.start)
        width = _MARK if span.end is None else max(_MARK, x_of(span.end) - x)
        groups.append(Group(span.title, (Rect(x, y, width, _ROW - 6, span.kind),), key=span.row))
    base = _TOP + len(rows) * _ROW
    labels = [
        Label(_NAME_ROOM - 8, _TOP + index * _ROW + 12, _short(row), "end", "name")
        for index, row in enumerate(rows)
    ]
    lines = []
    for tick in range(_TIME_TICKS):
        offset = total * tick / (_TIME_TICKS - 1)
        x = _NAME_ROOM + scale(offset, total, plot_width)
        lines.append(Line(x, _TOP - 4, x, base, "grid"))
        text = "start" if tick == 0 else "+" + _offset(offset, total)
        # the last label ends at its tick, inside the chart, instead of centring past its edge
        anchor = "end" if tick == _TIME_TICKS - 1 else "middle"
        labels.append(Label(x, base + 14, text, anchor))
    return Chart(
        "timeline",
        "Timeline",
        f"{len(spans)} marks over {_duration((last - first).total_seconds())},"
        f" from {first:%Y-%m-%d %H:%M:%S}Z.",
        height=base + _AXIS_ROOM,
        groups=tuple(groups),
        labels=tuple(labels),
        lines=tuple(lines),
        legend=(
            ("completed", "run / task succeeded"),
            ("failed", "failed or lost"),
            ("event", "event handled"),
            ("pending", "event waiting for a decision"),
            ("running", "running"),
            ("queued", "queued"),
        ),
    )


def _spans(
    data: WorkflowInstanceData,
    events: Sequence[InstanceEvent],
    tasks: Sequence[InstanceTask],
    now: datetime,
) -> list[_Span]:
    spans = []
    if data.started_at is not None:
        outcome = data.outcome()
        kind = {"completed": "completed", "failed": "failed"}.get(outcome, "running")
        end = data.ended_at or now
        title = f"run {outcome}: {age(data.started_at, end)} from {_stamp(data.started_at)}"
        spans.append(_Span("run", data.started_at, end, kind, title))
    for event in sorted(events, key=lambda e: e.seq):
        state = "pending" if event.pending else "handled"
        what = f"{event.type} event #{event.seq} ({state})"
        kind = "pending" if event.pending else "event"
        title = f"{what} at {_stamp(event.enqueued_at)}"
        spans.append(_Span("events", event.enqueued_at, None, kind, title))
        if event.task_name is not None:
            spans.append(_finished_task(event, event.task_name))
    for task in tasks:
        title = f"{task.task_name} #{task.task_id} {task.state} since {_stamp(task.enqueued_at)}"
        spans.append(_Span(task.task_name, task.enqueued_at, now, task.state, title))
    return spans


def _finished_task(event: InstanceEvent, name: str) -> _Span:
    """A ``task_complete`` event's task: a bar from its enqueue to its result, else a mark."""
    status = str(event.task_status or "")
    outcome = "completed" if status == "success" else "failed"
    arrived = event.enqueued_at
    enqueued = event.task_enqueued_at
    if enqueued is None:  # recorded before the history kept the task's enqueue time
        text = f"{name} {status} at {_stamp(arrived)}"
        start, end = arrived, None
    else:
        enqueued = min(enqueued, arrived)
        attempts = event.task_attempts or 1
        text = (
            f"{name} {status} after {attempts} attempt{'' if attempts == 1 else 's'}:"
            f" {_duration((arrived - enqueued).total_seconds())},"
            f" enqueued {_stamp(enqueued, exact=True)}, result {_stamp(arrived, exact=True)}"
        )
        start, end = enqueued, arrived
    if event.error_text:
        text += f": {event.error_text}"
    return _Span(name, start, end, outcome, text)


def _duration(seconds: float) -> str:
    """A span's length: milliseconds under a second, tenths of a second under a minute."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    start = datetime.fromtimestamp(0, UTC)
    return age(start, start + timedelta(seconds=seconds))


def _offset(seconds: float, total: float) -> str:
    """A tick's distance from the start, to the precision the axis's length needs."""
    if total < 1:
        millis = seconds * 1000
        return f"{millis:.1f}ms" if total < 0.05 else f"{millis:.0f}ms"
    if total < 10:
        return f"{seconds:.1f}s"
    start = datetime.fromtimestamp(0, UTC)
    return age(start, start + timedelta(seconds=seconds))


def _stamp(moment: datetime, *, exact: bool = False) -> str:
    """The time of day in UTC; ``exact``: to the millisecond."""
    text = moment.astimezone(UTC).strftime("%H:%M:%S.%f" if exact else "%H:%M:%S")
    return text[:-3] if exact else text
