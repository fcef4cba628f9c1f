"""Listing the queued and running tasks of one name across live instances (``list_tasks``).

Each case runs on every driver setup, gRPC included: the operation reaches the
server through its declaration alone (see tests/grpc/test_reads.py).
"""

from __future__ import annotations

import pytest

from cereal import Manager
from cereal.drivers import Driver
from cereal.models import NewTask
from tests.conformance._driver_helpers import ODD_NAMES, started


def _numbers(tasks: list) -> list[int]:  # type: ignore[type-arg]
    return [task.get_parameters()["n"] for task in tasks]


async def test_tasks_of_a_name_from_every_live_instance_in_enqueue_order(driver: Driver) -> None:
    await started(driver, "wf", "a", tasks=[NewTask("t", b'{"n": 0}'), NewTask("u", b'{"n": 1}')])
    await started(driver, "wf", "b", tasks=[NewTask("t", b'{"n": 2}')])
    await started(driver, "other", "a", tasks=[NewTask("t", b'{"n": 3}')])
    [(claimed, lease)] = await driver.dequeue_tasks("t", 1)

    found = await driver.list_tasks("t")
    assert _numbers(found) == [0, 2, 3]
    assert [(t.workflow_name, t.instance_name) for t in found] == [
        ("wf", "a"),
        ("wf", "b"),
        ("other", "a"),
    ]
    assert [t.state for t in found] == ["running", "queued", "queued"]
    assert found[0].task_id == claimed.metadata.task_id
    assert _numbers(await driver.list_tasks("u")) == [1]
    assert await driver.list_tasks("nobody") == []

    await lease.succeed(None)  # a finished task is no longer listed
    assert _numbers(await driver.list_tasks("t")) == [2, 3]


async def test_a_killed_instance_takes_its_tasks_out_of_the_listing(driver: Driver) -> None:
    await started(driver, "wf", "a", tasks=[NewTask("t", b'{"n": 0}')])
    await started(driver, "wf", "b", tasks=[NewTask("t", b'{"n": 1}')])
    await driver.kill_workflow("wf", "a", "killed")
    assert _numbers(await driver.list_tasks("t")) == [1]


async def test_pages_walk_newest_first_by_task_id(driver: Driver) -> None:
    for instance in ("a", "b"):
        await started(
            driver, "wf", instance, tasks=[NewTask("t", f'{{"n": {n}}}'.encode()) for n in range(4)]
        )
    everything = await driver.list_tasks("t")
    assert len(everything) == 8

    walked = []
    page = await driver.list_tasks("t", limit=3)
    while page:
        assert len(page) <= 3
        walked.extend(page)
        page = await driver.list_tasks("t", limit=3, before=page[-1].task_id)
    assert [t.task_id for t in walked] == [t.task_id for t in reversed(everything)]
    older = await driver.list_tasks("t", before=everything[2].task_id)
    assert [t.task_id for t in older] == [everything[1].task_id, everything[0].task_id]
    assert await driver.list_tasks("nobody", limit=2) == []


async def test_any_valid_name_round_trips(driver: Driver) -> None:
    for name in ODD_NAMES:
        await started(driver, name, name, tasks=[NewTask(name, None)])
        [task] = await driver.list_tasks(name)
        assert (task.task_name, task.workflow_name, task.instance_name) == (name, name, name)
        assert [t.task_id for t in await driver.list_tasks(name, limit=1)] == [task.task_id]


@pytest.mark.parametrize(
    ("arguments", "error", "field"),
    [
        ({"task_name": ""}, ValueError, "task name"),
        ({"task_name": "t\x00"}, ValueError, "task name"),
        ({"task_name": "t\n"}, ValueError, "task name"),
        ({"task_name": "x" * 300}, ValueError, "task name"),
        ({"task_name": 5}, TypeError, "task name"),
        ({"task_name": "t", "limit": 0}, ValueError, "limit"),
        ({"task_name": "t", "limit": True}, TypeError, "limit"),
        ({"task_name": "t", "before": "x1"}, ValueError, "before"),
        ({"task_name": "t", "before": 3}, TypeError, "before"),
    ],
    ids=repr,
)
async def test_the_manager_refuses_bad_arguments_by_name(
    driver: Driver, arguments: dict[str, object], error: type[Exception], field: str
) -> None:
    await started(driver, "wf", "a", tasks=[NewTask("t", None)])
    with pytest.raises(error, match=field):
        await Manager(driver).list_tasks(**arguments)  # type: ignore[arg-type]
    assert len(await driver.list_tasks("t")) == 1


async def test_the_manager_lists_pages_like_the_driver(driver: Driver) -> None:
    await started(
        driver, "wf", "a", tasks=[NewTask("t", f'{{"n": {n}}}'.encode()) for n in range(3)]
    )
    manager = Manager(driver)
    assert _numbers(await manager.list_tasks("t")) == [0, 1, 2]
    assert _numbers(await manager.list_tasks("t", limit=2)) == [2, 1]
