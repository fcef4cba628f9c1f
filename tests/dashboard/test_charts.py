"""The chart builders (cereal.dashboard._charts) and their SVG, without a browser or a store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from cereal.dashboard._charts import queue_chart, throughput_chart, timeline_chart
from cereal.dashboard._render import build_environment
from cereal.dashboard._svg import WIDTH, Chart, nice_top
from cereal.models import (
    InstanceEvent,
    InstanceTask,
    TaskQueueStats,
    TaskStatus,
    ThroughputBucket,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _buckets(counts: list[tuple[int, int]]) -> list[ThroughputBucket]:
    return [
        ThroughputBucket(T0 + timedelta(minutes=i), 60, done, failed)
        for i, (done, failed) in enumerate(counts)
    ]


def _svg(chart: Chart) -> str:
    template = build_environment().from_string(
        '{% import "_chart.html" as charts %}{{ charts.chart(c) }}'
    )
    return template.render(c=chart)


def test_one_group_per_bucket_with_heights_proportional_to_the_counts() -> None:
    chart = throughput_chart(_buckets([(2, 0), (0, 0), (4, 1), (1, 3)]), window_text="last hour")
    assert len(chart.groups) == 4
    assert chart.groups[1].rects == ()  # an empty bucket draws nothing, but is there
    heights = {
        (g.key, r.kind): r.height for g in chart.groups for r in g.rects
    }  # the axis top is 5 (the largest column holds 5 runs)
    done_2, done_4 = (
        heights[(chart.groups[0].key, "completed")],
        heights[(chart.groups[2].key, "completed")],
    )
    assert done_4 == pytest.approx(2 * done_2)
    assert heights[(chart.groups[3].key, "failed")] == pytest.approx(
        3 * heights[(chart.groups[2].key, "failed")]
    )
    assert chart.summary == "7 completed and 4 failed runs in the last hour."
    assert chart.groups[3].title == "12:03: 1 completed, 3 failed"


def test_a_failed_segment_sits_on_top_of_the_completed_one() -> None:
    [group] = throughput_chart(_buckets([(3, 2)]), window_text="w").groups
    completed, failed = group.rects
    assert failed.y + failed.height == pytest.approx(completed.y)


def test_no_finished_runs_is_the_no_data_state() -> None:
    chart = throughput_chart(_buckets([(0, 0)] * 60), window_text="last hour")
    assert chart.empty and chart.groups == ()
    html = _svg(chart)
    assert "<svg" not in html
    assert "No runs finished in the last hour." in html
    assert throughput_chart([], window_text="last hour").empty


def test_the_svg_is_accessible_and_escaped() -> None:
    chart = queue_chart([TaskQueueStats("<b>&x", 3, 1, None), TaskQueueStats("y", 0, 2, None)])
    html = _svg(chart)
    assert 'role="img"' in html and 'aria-labelledby="queues-title queues-desc"' in html
    assert '<title id="queues-title">Queue depth</title>' in html
    assert "&lt;b&gt;&amp;x: 3 queued, 1 running" in html
    assert "<b>" not in html
    assert len(re.findall(r"<g class=\"mark\"", html)) == 2
    assert "style=" not in html  # the Content-Security-Policy forbids inline styles


def test_queue_bars_are_as_long_as_their_counts() -> None:
    chart = queue_chart([TaskQueueStats("a", 4, 0, None), TaskQueueStats("b", 1, 1, None)])
    a_queued = chart.groups[0].rects[0]
    b_queued, b_running = chart.groups[1].rects
    assert a_queued.width == pytest.approx(4 * b_queued.width)
    assert b_running.x == pytest.approx(b_queued.x + b_queued.width)
    assert queue_chart([]).empty


def test_the_axis_top_is_a_round_number() -> None:
    assert [nice_top(n) for n in (0, 1, 3, 6, 11, 20, 21, 999)] == [1, 1, 5, 10, 20, 20, 50, 1000]


def _run(ended: datetime | None, err: str | None = None) -> WorkflowInstanceData:
    status = WorkflowInstanceStatus.RUNNING if ended is None else WorkflowInstanceStatus.COMPLETED
    return WorkflowInstanceData(
        workflow_name="wf",
        instance_name="i",
        status=status,
        parameters=None,
        payload=None,
        result=None,
        err=err,
        started_at=T0,
        ended_at=ended,
    )


def test_a_timeline_has_the_run_its_events_and_a_row_per_task_name() -> None:
    events = [
        InstanceEvent(1, WorkflowEventType.START, T0),
        InstanceEvent(
            2,
            WorkflowEventType.TASK_COMPLETE,
            T0 + timedelta(seconds=30),
            "ship",
            TaskStatus.FAILED,
            "boom",
        ),
    ]
    chart = timeline_chart(_run(T0 + timedelta(seconds=40), "boom"), events, [], T0)
    rows = [g.key for g in chart.groups]
    assert rows == ["run", "events", "events", "ship"]
    run, start, _, ship = chart.groups
    assert run.rects[0].kind == "failed"
    assert ship.rects[0].kind == "failed" and "boom" in ship.title
    # the run spans the whole axis; the task's result arrived at 30 of its 40 s
    assert ship.rects[0].x - start.rects[0].x == pytest.approx(0.75 * run.rects[0].width, rel=0.02)


def test_a_live_runs_tasks_are_bars_up_to_now() -> None:
    now = T0 + timedelta(minutes=2)
    task = InstanceTask("7", "pack", "running", None, T0 + timedelta(minutes=1), T0, 1, "wf", "i")
    chart = timeline_chart(
        _run(None), [InstanceEvent(1, WorkflowEventType.START, T0, pending=True)], [task], now
    )
    run, event, pack = chart.groups
    assert run.rects[0].kind == "running" and event.rects[0].kind == "pending"
    assert pack.rects[0].kind == "running"
    assert pack.rects[0].width == pytest.approx(run.rects[0].width / 2, rel=0.02)


def test_a_run_with_nothing_recorded_is_the_no_data_state() -> None:
    data = WorkflowInstanceData(
        workflow_name="wf",
        instance_name="i",
        status=WorkflowInstanceStatus.STARTING,
        parameters=None,
        payload=None,
        result=None,
        err=None,
    )
    assert timeline_chart(data, [], [], T0).empty


def _completion(
    seq: int, arrived: datetime, enqueued: datetime | None, attempts: int | None, name: str = "ship"
) -> InstanceEvent:
    return InstanceEvent(
        seq,
        WorkflowEventType.TASK_COMPLETE,
        arrived,
        name,
        TaskStatus.SUCCESS,
        task_enqueued_at=enqueued,
        task_attempts=attempts,
    )


def test_a_finished_task_is_a_bar_from_its_enqueue_to_its_result() -> None:
    # Given a 40 s run whose tasks ran 10 -> 30 s and 5 -> 15 s (retried once)
    events = [
        InstanceEvent(1, WorkflowEventType.START, T0),
        _completion(2, T0 + timedelta(seconds=30), T0 + timedelta(seconds=10), 1),
        _completion(3, T0 + timedelta(seconds=15), T0 + timedelta(seconds=5), 2, "pack"),
    ]
    chart = timeline_chart(_run(T0 + timedelta(seconds=40)), events, [], T0)
    by_row = {g.key: g for g in chart.groups}
    run, ship, pack = by_row["run"].rects[0], by_row["ship"].rects[0], by_row["pack"].rects[0]
    # Then each bar's width is its share of the run, starting at its enqueue
    assert ship.kind == pack.kind == "completed"
    assert ship.width == pytest.approx(run.width * 20 / 40)
    assert pack.width == pytest.approx(run.width * 10 / 40)
    assert ship.x - run.x == pytest.approx(run.width * 10 / 40)
    assert pack.x - run.x == pytest.approx(run.width * 5 / 40)
    # and its tooltip says what ended, how, after how many attempts and how long
    assert by_row["pack"].title == (
        "pack success after 2 attempts: 10.0s, enqueued 12:00:05.000, result 12:00:15.000"
    )
    assert "after 1 attempt: 20.0s" in by_row["ship"].title


def test_a_failed_task_bar_is_red_with_its_error() -> None:
    event = InstanceEvent(
        2,
        WorkflowEventType.TASK_COMPLETE,
        T0 + timedelta(seconds=2),
        "ship",
        TaskStatus.FAILED,
        "boom",
        task_enqueued_at=T0 + timedelta(seconds=1),
        task_attempts=3,
    )
    chart = timeline_chart(_run(T0 + timedelta(seconds=4), "boom"), [event], [], T0)
    [ship] = [g for g in chart.groups if g.key == "ship"]
    assert ship.rects[0].kind == "failed"
    assert ship.title.startswith("ship failed after 3 attempts: 1.0s") and ship.title.endswith(
        ": boom"
    )


def test_a_completion_recorded_without_an_enqueue_time_is_a_mark() -> None:
    # history written before the store kept task enqueue times: the result's instant alone
    events = [
        InstanceEvent(1, WorkflowEventType.START, T0),
        _completion(2, T0 + timedelta(seconds=30), None, None),
    ]
    chart = timeline_chart(_run(T0 + timedelta(seconds=40)), events, [], T0)
    [ship] = [g for g in chart.groups if g.key == "ship"]
    [start] = [g for g in chart.groups if g.key == "events"][:1]
    assert ship.rects[0].width == start.rects[0].width  # the width of an instant
    assert ship.title == "ship success at 12:00:30"


def test_a_short_run_fills_the_axis() -> None:
    # a 50 ms run: its bar spans the plot, not 5 % of it, and the ticks read in ms
    ended = T0 + timedelta(milliseconds=50)
    events = [
        InstanceEvent(1, WorkflowEventType.START, T0),
        _completion(2, ended, T0 + timedelta(milliseconds=10), 1),
    ]
    chart = timeline_chart(_run(ended), events, [], T0)
    run = chart.groups[0].rects[0]
    assert run.x + run.width > WIDTH * 0.9
    [ship] = [g for g in chart.groups if g.key == "ship"]
    assert ship.rects[0].width == pytest.approx(run.width * 0.8)
    ticks = [label.text for label in chart.labels if label.kind == "axis"]
    assert ticks == ["start", "+10ms", "+20ms", "+30ms", "+40ms", "+50ms"]
    assert "over 50ms" in chart.summary


def test_the_last_axis_label_ends_inside_the_chart() -> None:
    chart = timeline_chart(_run(T0 + timedelta(seconds=1)), [], [], T0)
    axis = [label for label in chart.labels if label.kind == "axis"]
    assert axis[-1].text == "+1.0s"
    assert axis[-1].anchor == "end" and axis[-1].x <= WIDTH
    assert all(label.anchor == "middle" for label in axis[:-1])
    # its text, drawn leftwards from its tick, stays right of the previous tick's
    assert axis[-1].x - 7 * len(axis[-1].text) > axis[-2].x
    assert 'text-anchor="end"' in _svg(chart)
