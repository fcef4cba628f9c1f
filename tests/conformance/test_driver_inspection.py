"""The read-only inspection reads (the dashboard's): paging, instance tasks and events, queues.

Each case runs on memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest

from cereal import Manager
from cereal.drivers import Driver
from cereal.models import ListWorkflowFilter, NewTask, TaskStatus, WorkflowEventType
from tests.conformance._driver_helpers import ODD_NAMES, finished, started, take


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
    assert found[0].attempt >= found[1].attempt >= 0
    assert found[0].start_after >= found[0].enqueued_at
    await completer.succeed(b"1")
    assert [t.task_name for t in await driver.list_instance_tasks("wf", "inst")] == ["t2"]
    assert await driver.list_instance_tasks("wf", "nobody") == []


async def test_instance_events_are_the_pending_ones_with_their_task_results(
    driver: Driver,
) -> None:
    await started(driver, tasks=[NewTask("t1", None)])
    assert await driver.list_instance_events("wf", "inst") == []
    [(_, completer)] = await driver.dequeue_tasks("t1", 1)
    await completer.fail("bad <input>")
    await driver.cancel_workflow("wf", "inst")

    events = await driver.list_instance_events("wf", "inst")
    assert [(e.type, e.task_name, e.task_status, e.error_text) for e in events] == [
        (WorkflowEventType.TASK_COMPLETE, "t1", TaskStatus.FAILED, "bad <input>"),
        (WorkflowEventType.CANCEL, None, None, ""),
    ]
    assert events[0].seq < events[1].seq

    _, decision = await take(driver)
    async with decision:
        await decision.done(None)
    assert await driver.list_instance_events("wf", "inst") == []


async def test_inspection_reads_take_any_valid_name(driver: Driver) -> None:
    for name in ODD_NAMES:
        await started(driver, name, name, tasks=[NewTask(name, None)])
        [task] = await driver.list_instance_tasks(name, name)
        assert task.task_name == name
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
    assert await manager.list_instance_events("wf", "a") == []
    assert await manager.task_queue_stats() == []
    with pytest.raises(ValueError, match="instance name"):
        await manager.list_instance_tasks("wf", "")
