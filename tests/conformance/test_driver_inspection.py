"""The read-only inspection reads (the dashboard's): paging, instance tasks, event history, queues.

Each case runs on memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest

from cereal import Manager, RetryPolicy
from cereal.drivers import Driver, TaskCompleter
from cereal.models import (
    HistoryRetention,
    InstanceEvent,
    ListWorkflowFilter,
    NewTask,
    TaskData,
    TaskStatus,
    WorkflowEventType,
)
from tests._waiting import wait_until
from tests.conformance._driver_helpers import ODD_NAMES, finished, started, sweep, take


def _pairs(found: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(data.workflow_name, data.instance_name) for data in found]


async def test_paging_walks_live_and_finished_in_name_order(driver: Driver) -> None:
    await started(driver, "wf", "b")
    await finished(driver, "wf", "a")
    await finished(driver, "wf", "c", error="boom")
    await started(driver, "wf", "d")
    await finished(driver, "other", "a")
    expected = [("other", "a"), ("wf", "a"), ("wf", "b"), ("wf", "c"), ("wf", "d")]

    pages = []
    for offset in range(0, 6, 2):
        page = await driver.list_workflow_instances(ListWorkflowFilter(limit=2, offset=offset))
        pages.append(_pairs(page))
    assert pages == [expected[0:2], expected[2:4], expected[4:]]
    assert (
        _pairs(await driver.list_workflow_instances(ListWorkflowFilter(offset=3))) == (expected[3:])
    )


async def test_paging_keeps_the_filters(driver: Driver) -> None:
    await started(driver, "wf", "b")
    await finished(driver, "wf", "a")
    await started(driver, "wf", "d")
    await finished(driver, "other", "x")

    running = ListWorkflowFilter(workflow_name="wf", is_running=True, limit=1, offset=1)
    assert _pairs(await driver.list_workflow_instances(running)) == [("wf", "d")]
    done = ListWorkflowFilter(is_running=False, limit=10)
    assert _pairs(await driver.list_workflow_instances(done)) == [("other", "x"), ("wf", "a")]
    by_instance = ListWorkflowFilter(instance_name="a", limit=5)
    found = await driver.list_workflow_instances(by_instance)
    assert _pairs(found) == [("wf", "a")]
    assert found[0].result == b'"ok"'


async def test_a_finished_run_replaced_by_a_live_one_is_listed_once(driver: Driver) -> None:
    await finished(driver, "wf", "a")
    await started(driver, "wf", "a", payload=b'"live"')
    found = await driver.list_workflow_instances(ListWorkflowFilter(limit=10))
    assert _pairs(found) == [("wf", "a")]
    assert found[0].is_running()
    assert found[0].payload == b'"live"'


async def test_instance_tasks_show_queued_and_running_tasks(driver: Driver) -> None:
    tasks = [NewTask("t1", b'{"n": 1}'), NewTask("t2", None)]
    await started(driver, tasks=tasks)
    [(claimed, completer)] = await driver.dequeue_tasks("t1", 1)

    found = await driver.list_instance_tasks("wf", "inst")
    assert [(t.task_name, t.state, t.parameters) for t in found] == [
        ("t1", "running", b'{"n": 1}'),
        ("t2", "queued", None),
    ]
    assert found[0].task_id == claimed.metadata.task_id
    assert {(t.workflow_name, t.instance_name) for t in found} == {("wf", "inst")}
    assert found[0].attempt >= found[1].attempt >= 0
    assert found[0].start_after >= found[0].enqueued_at
    await completer.succeed(b"1")
    assert [t.task_name for t in await driver.list_instance_tasks("wf", "inst")] == ["t2"]
    assert await driver.list_instance_tasks("wf", "nobody") == []


def _story(events: list[InstanceEvent]) -> list[tuple[object, ...]]:
    return [(e.type, e.task_name, e.task_status, e.error_text, e.pending) for e in events]


START = WorkflowEventType.START
DONE = WorkflowEventType.TASK_COMPLETE
CANCEL = WorkflowEventType.CANCEL


async def test_instance_events_keep_handled_ones_and_mark_the_pending(driver: Driver) -> None:
    assert await driver.list_instance_events("wf", "inst") == []
    await started(driver, tasks=[NewTask("t1", None)])
    assert _story(await driver.list_instance_events("wf", "inst")) == [
        (START, None, None, "", False)
    ]
    [(_, completer)] = await driver.dequeue_tasks("t1", 1)
    await completer.fail("bad <input>")
    await driver.cancel_workflow("wf", "inst")

    events = await driver.list_instance_events("wf", "inst")
    assert _story(events) == [
        (START, None, None, "", False),
        (DONE, "t1", TaskStatus.FAILED, "bad <input>", True),
        (CANCEL, None, None, "", True),
    ]
    assert events[0].seq < events[1].seq < events[2].seq
    assert events[0].enqueued_at <= events[1].enqueued_at <= events[2].enqueued_at

    _, decision = await take(driver)
    async with decision:
        await decision.done(None)
    # the finished run keeps its history, every event handled now
    assert [(e.seq, e.pending) for e in await driver.list_instance_events("wf", "inst")] == [
        (event.seq, False) for event in events
    ]


async def test_a_task_completion_keeps_the_tasks_enqueue_time_and_attempts(
    driver: Driver,
) -> None:
    # Given a run with two tasks: "t1" fails once and is retried, "t2" succeeds at once
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01).to_json()
    await started(driver, tasks=[NewTask("t1", b"1", retry_policy=policy), NewTask("t2", None)])
    enqueued = {t.task_name: t.enqueued_at for t in await driver.list_instance_tasks("wf", "inst")}
    [(_, first)] = await driver.dequeue_tasks("t1", 1, task_expiry=3600)
    await first.retry("boom", 0)
    claimed: list[tuple[TaskData, TaskCompleter]] = []

    async def claim() -> bool:
        claimed.extend(await driver.dequeue_tasks("t1", 1, task_expiry=3600))
        return bool(claimed)

    await wait_until(claim, what="the retried task claimed")
    await claimed[0][1].succeed(b"2")
    [(_, other)] = await driver.dequeue_tasks("t2", 1, task_expiry=3600)
    await other.succeed(None)

    # When the history is listed, then each completion carries its task's enqueue
    # time (at or before the result's arrival) and attempts; the start event neither
    events = await driver.list_instance_events("wf", "inst")
    assert [(e.type, e.task_name, e.task_attempts) for e in events] == [
        (START, None, None),
        (DONE, "t1", 2),
        (DONE, "t2", 1),
    ]
    assert events[0].task_enqueued_at is None
    for event in events[1:]:
        assert event.task_name is not None
        assert event.task_enqueued_at == enqueued[event.task_name]
        assert event.task_enqueued_at <= event.enqueued_at

    # and the finished run's history (a decision consumed the events) keeps them
    _, decision = await take(driver)
    async with decision:
        await decision.done(None)
    kept = await driver.list_instance_events("wf", "inst")
    assert [(e.task_enqueued_at, e.task_attempts, e.pending) for e in kept] == [
        (e.task_enqueued_at, e.task_attempts, False) for e in events
    ]
    # a page reads them as well
    page = await driver.list_instance_events("wf", "inst", limit=1)
    assert [(e.task_name, e.task_attempts) for e in page] == [("t2", 1)]


async def test_runs_with_the_same_names_keep_separate_histories(driver: Driver) -> None:
    await finished(driver)
    await started(driver, tasks=[NewTask("t1", None)])
    assert _story(await driver.list_instance_events("wf", "inst")) == [
        (START, None, None, "", False)
    ]
    [(_, completer)] = await driver.dequeue_tasks("t1", 1)
    await completer.succeed(b"1")
    _, decision = await take(driver)
    async with decision:
        await decision.done(None)

    # the newest run's story alone, not the first run's start event
    assert _story(await driver.list_instance_events("wf", "inst")) == [
        (START, None, None, "", False),
        (DONE, "t1", TaskStatus.SUCCESS, "", False),
    ]
    await started(driver)
    assert _story(await driver.list_instance_events("wf", "inst")) == [
        (START, None, None, "", False)
    ]


async def test_event_history_is_trimmed_with_its_finished_runs(driver: Driver) -> None:
    await finished(driver, "wf", "a")
    await finished(driver, "wf", "a")
    await finished(driver, "wf", "b")
    await started(driver, "wf", "live")
    # `retention` is the base class's public attribute; sweep reads it each time
    driver.retention = HistoryRetention(max_rows=1, margin_rows=0)
    report = await sweep(driver, task_expiry=60.0)

    assert report.trimmed_results == 2
    assert await driver.list_instance_events("wf", "a") == []
    assert len(await driver.list_instance_events("wf", "b")) == 1
    assert len(await driver.list_instance_events("wf", "live")) == 1
    driver.retention = HistoryRetention(max_rows=0, margin_rows=0)
    await sweep(driver, task_expiry=60.0)
    assert await driver.list_instance_events("wf", "b") == []
    # a live instance's history does not depend on finished runs
    assert len(await driver.list_instance_events("wf", "live")) == 1


async def test_a_new_run_keeps_its_history_when_older_runs_are_trimmed(driver: Driver) -> None:
    await finished(driver)
    await started(driver, tasks=[NewTask("t1", None)])
    driver.retention = HistoryRetention(max_rows=0, margin_rows=0)
    assert (await sweep(driver, task_expiry=60.0)).trimmed_results == 1
    [(_, completer)] = await driver.dequeue_tasks("t1", 1)
    await completer.succeed(None)
    assert _story(await driver.list_instance_events("wf", "inst")) == [
        (START, None, None, "", False),
        (DONE, "t1", TaskStatus.SUCCESS, "", True),
    ]


async def test_inspection_reads_take_any_valid_name(driver: Driver) -> None:
    for name in ODD_NAMES:
        await started(driver, name, name, tasks=[NewTask(name, None)])
        [task] = await driver.list_instance_tasks(name, name)
        assert (task.task_name, task.workflow_name, task.instance_name) == (name, name, name)
        [paged] = await driver.list_instance_tasks(name, name, limit=1)
        assert (paged.workflow_name, paged.instance_name) == (name, name)
        [(_, completer)] = await driver.dequeue_tasks(name, 1)
        await completer.succeed(None)
        assert _story(await driver.list_instance_events(name, name)) == [
            (START, None, None, "", False),
            (DONE, name, TaskStatus.SUCCESS, "", True),
        ]
        assert _pairs(await driver.list_workflow_instances(ListWorkflowFilter(name, limit=1))) == [
            (name, name)
        ]


async def test_task_queue_stats_count_queued_and_running_per_name(driver: Driver) -> None:
    assert await driver.task_queue_stats() == []
    await started(driver, "wf", "one", tasks=[NewTask("a", None), NewTask("b", None)])
    await started(driver, "wf", "two", tasks=[NewTask("a", None)])
    tasks_a = await driver.list_instance_tasks("wf", "one")
    oldest_a = tasks_a[0].enqueued_at
    [(_, lease)] = await driver.dequeue_tasks("b", 1)

    stats = {s.task_name: s for s in await driver.task_queue_stats()}
    assert sorted(stats) == ["a", "b"]
    assert (stats["a"].queued, stats["a"].running, stats["a"].oldest_queued_at) == (
        2,
        0,
        oldest_a,
    )
    assert (stats["b"].queued, stats["b"].running, stats["b"].oldest_queued_at) == (0, 1, None)
    await lease.succeed(None)
    assert [s.task_name for s in await driver.task_queue_stats()] == ["a"]


async def test_manager_checks_paging_arguments_and_stores_nothing(driver: Driver) -> None:
    manager = Manager(driver)
    for bad, error in [
        ({"limit": 0}, ValueError),
        ({"limit": -1}, ValueError),
        ({"offset": -1}, ValueError),
        ({"limit": True}, TypeError),
        ({"offset": 1.5}, TypeError),
    ]:
        with pytest.raises(error, match=r"limit|offset"):
            await manager.list_workflow_instances(**bad)
    await started(driver, "wf", "a")
    await started(driver, "wf", "b")
    page = await manager.list_workflow_instances(limit=1, offset=1)
    assert _pairs(page) == [("wf", "b")]
    assert [t.task_name for t in await manager.list_instance_tasks("wf", "a")] == []
    assert [e.type for e in await manager.list_instance_events("wf", "a")] == [START]
    assert await manager.task_queue_stats() == []
    with pytest.raises(ValueError, match="instance name"):
        await manager.list_instance_tasks("wf", "")


async def _complete(driver: Driver, count: int) -> None:
    """Complete ``count`` queued ``t`` tasks: each adds a task_complete event to the history."""
    for _, completer in await driver.dequeue_tasks("t", count):
        await completer.succeed(b"1")


async def test_instance_events_page_newest_first_without_skips_while_events_arrive(
    driver: Driver,
) -> None:
    await started(driver, tasks=[NewTask("t", None) for _ in range(9)])
    await _complete(driver, 5)
    before_paging = await driver.list_instance_events("wf", "inst")
    assert len(before_paging) == 6  # the start and five completions

    first = await driver.list_instance_events("wf", "inst", limit=2)
    assert [e.seq for e in first] == [e.seq for e in reversed(before_paging)][:2]
    walked = list(first)
    await _complete(driver, 3)  # new events arrive while a reader pages back
    while True:
        page = await driver.list_instance_events("wf", "inst", limit=2, before=walked[-1].seq)
        assert len(page) <= 2
        if not page:
            break
        walked.extend(page)
    seqs = [e.seq for e in walked]
    assert seqs == sorted(seqs, reverse=True)
    assert seqs == [e.seq for e in reversed(before_paging)]  # nothing skipped or repeated
    assert _story(list(reversed(walked))) == _story(before_paging)

    newest = await driver.list_instance_events("wf", "inst", limit=4)
    assert newest[3].seq == first[0].seq  # the three new events come first
    assert all(e.seq > first[0].seq for e in newest[:3])
    everything = await driver.list_instance_events("wf", "inst")
    assert [e.seq for e in await driver.list_instance_events("wf", "inst", limit=100)] == [
        e.seq for e in reversed(everything)
    ]
    middle = everything[4].seq
    assert [e.seq for e in await driver.list_instance_events("wf", "inst", before=middle)] == [
        e.seq for e in reversed(everything[:4])
    ]
    assert await driver.list_instance_events("wf", "inst", before=everything[0].seq) == []
    assert await driver.list_instance_events("wf", "nobody", limit=5) == []


async def test_a_finished_runs_history_pages_too(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", None) for _ in range(3)])
    await _complete(driver, 3)
    _, decision = await take(driver)
    async with decision:
        await decision.done(None)
    history = await driver.list_instance_events("wf", "inst")
    assert len(history) == 4 and not any(e.pending for e in history)
    page = await driver.list_instance_events("wf", "inst", limit=3)
    assert [e.seq for e in page] == [e.seq for e in reversed(history)][:3]
    rest = await driver.list_instance_events("wf", "inst", limit=3, before=page[-1].seq)
    assert [e.seq for e in rest] == [history[0].seq]


async def test_instance_tasks_page_newest_first_by_task_id(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", f'{{"n": {n}}}'.encode()) for n in range(7)])
    everything = await driver.list_instance_tasks("wf", "inst")
    assert [t.get_parameters()["n"] for t in everything] == list(range(7))  # enqueue order

    walked = []
    page = await driver.list_instance_tasks("wf", "inst", limit=3)
    while page:
        assert len(page) <= 3
        walked.extend(page)
        page = await driver.list_instance_tasks("wf", "inst", limit=3, before=page[-1].task_id)
    assert [t.get_parameters()["n"] for t in walked] == list(range(6, -1, -1))
    assert [t.task_id for t in walked] == [t.task_id for t in reversed(everything)]

    older = await driver.list_instance_tasks("wf", "inst", before=everything[2].task_id)
    assert [t.task_id for t in older] == [everything[1].task_id, everything[0].task_id]
    [(claimed, lease)] = await driver.dequeue_tasks("t", 1)
    await lease.succeed(None)  # a finished task leaves every page
    remaining = await driver.list_instance_tasks("wf", "inst", limit=10)
    assert claimed.metadata.task_id not in [t.task_id for t in remaining]
    assert len(remaining) == 6
    assert await driver.list_instance_tasks("wf", "nobody", limit=2) == []


async def test_manager_checks_instance_page_arguments(driver: Driver) -> None:
    manager = Manager(driver)
    await started(driver, tasks=[NewTask("t", None), NewTask("t", None)])
    for bad, error in [
        ({"limit": 0}, ValueError),
        ({"limit": -2}, ValueError),
        ({"limit": True}, TypeError),
        ({"limit": 2.5}, TypeError),
        ({"before": "not-an-id"}, ValueError),
        ({"before": "-1"}, ValueError),
        ({"before": 3}, TypeError),
    ]:
        with pytest.raises(error, match=r"limit|before"):
            await manager.list_instance_tasks("wf", "inst", **bad)
    for bad, error in [
        ({"limit": 0}, ValueError),
        ({"before": -1}, ValueError),
        ({"before": "3"}, TypeError),
        ({"limit": False}, TypeError),
    ]:
        with pytest.raises(error, match=r"limit|before"):
            await manager.list_instance_events("wf", "inst", **bad)
    tasks = await manager.list_instance_tasks("wf", "inst", limit=1)
    assert [t.task_id for t in tasks] == [
        (await manager.list_instance_tasks("wf", "inst"))[1].task_id
    ]
    [event] = await manager.list_instance_events("wf", "inst", limit=1)
    assert event.type is START


async def test_drivers_refuse_bad_page_arguments_themselves(driver: Driver) -> None:
    # what a gRPC server or another caller passes without the Manager's checks
    with pytest.raises(ValueError, match="limit"):
        await driver.list_instance_events("wf", "inst", limit=0)
    with pytest.raises(ValueError, match="before"):
        await driver.list_instance_tasks("wf", "inst", before="x1")
