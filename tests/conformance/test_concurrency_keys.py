"""Per-key concurrency limits: the store's claim never runs more of a key than its limit.

A task enqueued with ``concurrency_key`` and ``concurrency_limit`` is claimed
only while fewer than its limit of running tasks (of any name, workflow or
run) carry its key; over the limit it stays queued. Driver-level cases pin the
claim down; a Manager-level case runs a workload end to end; bad input fails
the run that gave it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from cereal import Decision, Task, WorkflowInstance
from cereal.drivers import Driver, TaskCompleter
from cereal.models import NewTask, TaskData, TaskStatus
from tests.conformance._driver_helpers import INST, WF, hour_ahead, started, sweep, take
from tests.conformance._executors import (
    Flow,
    a_bad_enqueue_fails_the_run,
    collect_results,
    register,
)
from tests.plugins.manager import MakeManager, eventually, wait_finished


def keyed(task_name: str, n: int, key: str | None, limit: int | None) -> NewTask:
    """A task of ``task_name`` with parameters ``n`` and the given key and limit."""
    return NewTask(task_name, str(n).encode(), concurrency_key=key, concurrency_limit=limit)


def params(claimed: list[tuple[TaskData, TaskCompleter]]) -> list[bytes | None]:
    return [data.parameters for data, _ in claimed]


# ---- the claim, at the driver -------------------------------------------------------------


async def test_a_claim_takes_no_more_of_a_key_than_its_limit(driver: Driver) -> None:
    # Given four tasks of key "one" (limit 1) and four of key "two" (limit 2)
    await started(
        driver,
        tasks=[keyed("t", n, "one", 1) for n in range(4)]
        + [keyed("t", n, "two", 2) for n in range(4, 8)],
    )

    # When a claim asks for ten
    claimed = await driver.dequeue_tasks("t", 10, task_expiry=3600)

    # Then it takes the oldest of "one" and the two oldest of "two"; the rest wait
    assert params(claimed) == [b"0", b"4", b"5"]
    assert await driver.dequeue_tasks("t", 10, task_expiry=3600) == []

    # When one of "two" ends, the next of "two" (only) is claimable
    await claimed[1][1].succeed(None)
    assert params(await driver.dequeue_tasks("t", 10, task_expiry=3600)) == [b"6"]
    # and when the one of "one" ends, the next of "one"
    await claimed[0][1].fail("boom")
    assert params(await driver.dequeue_tasks("t", 10, task_expiry=3600)) == [b"1"]


async def test_unkeyed_tasks_are_not_held_behind_a_blocked_key(driver: Driver) -> None:
    # Given a blocked key at the front of the queue, then unkeyed and other-key tasks
    await started(
        driver,
        tasks=[
            keyed("t", 0, "k", 1),
            keyed("t", 1, "k", 1),
            keyed("t", 2, "k", 1),
            keyed("t", 3, None, None),
            keyed("t", 4, "other", 1),
            keyed("t", 5, None, None),
        ],
    )
    [(first, _)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    assert first.parameters == b"0"

    # When a claim asks for two: the two "k" tasks at the front are blocked
    claimed = await driver.dequeue_tasks("t", 2, task_expiry=3600)

    # Then it takes the first two later claimable tasks in queue order
    assert params(claimed) == [b"3", b"4"]
    assert params(await driver.dequeue_tasks("t", 10, task_expiry=3600)) == [b"5"]
    assert await driver.dequeue_tasks("t", 10, task_expiry=3600) == []


async def test_tasks_of_different_names_and_runs_share_a_keys_limit(driver: Driver) -> None:
    # Given key "k" (limit 2) on tasks of two names in two runs
    await started(driver, WF, "first", tasks=[keyed("a", 0, "k", 2), keyed("b", 1, "k", 2)])
    await started(driver, WF, "second", tasks=[keyed("a", 2, "k", 2), keyed("b", 3, "k", 2)])

    # When each name is claimed: "a" takes two, so "b" finds the key full
    first = await driver.dequeue_tasks("a", 10, task_expiry=3600)
    assert params(first) == [b"0", b"2"]
    assert await driver.dequeue_tasks("b", 10, task_expiry=3600) == []

    # Then a slot freed by "a" goes to "b"
    await first[0][1].succeed(None)
    assert params(await driver.dequeue_tasks("b", 10, task_expiry=3600)) == [b"1"]
    assert await driver.dequeue_tasks("b", 10, task_expiry=3600) == []


async def test_a_retry_and_a_hand_back_free_the_slot_and_keep_the_key(driver: Driver) -> None:
    # Given two tasks of key "k" (limit 1), the first running
    await started(driver, tasks=[keyed("t", 0, "k", 1), keyed("t", 1, "k", 1)])
    [(_, running)] = await driver.dequeue_tasks("t", 10, task_expiry=3600)

    # When it is retried (due at once): one of the two runs next, never both
    await running.retry("boom", 0)
    [(_, running)] = await driver.dequeue_tasks("t", 10, task_expiry=3600)
    assert await driver.dequeue_tasks("t", 10, task_expiry=3600) == []

    # When that one is handed back: again exactly one runs next
    assert await running.hand_back() is True
    [(_, running)] = await driver.dequeue_tasks("t", 10, task_expiry=3600)
    assert await driver.dequeue_tasks("t", 10, task_expiry=3600) == []

    # and every task still carries its key and limit
    listed = await driver.list_instance_tasks(WF, INST)
    assert {(task.concurrency_key, task.concurrency_limit) for task in listed} == {("k", 1)}
    assert sorted(task.state for task in listed) == ["queued", "running"]


async def test_an_expired_lease_counts_until_a_sweep_settles_it(driver: Driver) -> None:
    # Given two tasks of key "k" (limit 1), the first leased for 10 ms
    await started(driver, tasks=[keyed("t", 0, "k", 1), keyed("t", 1, "k", 1)])
    [(first, _)] = await driver.dequeue_tasks("t", 10, task_expiry=0.01)
    assert first.parameters == b"0"

    # When its lease expires, unswept: the key is still full
    await asyncio.sleep(0.05)
    assert await driver.dequeue_tasks("t", 10, task_expiry=3600) == []

    # Then once a sweep settles it (LOST), the next task of the key is claimable
    report = await sweep(driver, task_expiry=3600)
    assert report.expired_tasks == 1
    assert params(await driver.dequeue_tasks("t", 10, task_expiry=3600)) == [b"1"]
    event, completer = await take(driver)
    async with completer:
        assert event.task_result is not None
        assert event.task_result.status is TaskStatus.LOST
        await completer.continue_(None, [])


async def test_listed_tasks_show_their_key_and_limit(driver: Driver) -> None:
    await started(driver, tasks=[keyed("t", 0, "customer-1", 3), keyed("t", 1, None, None)])

    listed = await driver.list_tasks("t")

    assert [(task.concurrency_key, task.concurrency_limit) for task in listed] == [
        ("customer-1", 3),
        (None, None),
    ]


# ---- end to end ----------------------------------------------------------------------------


class KeyedRecorder:
    """A plain task executor counting, per key, how many of its tasks run at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.done = 0

    def run(self, task: Task) -> Any:
        key = task.get_parameters()["key"]
        with self._lock:
            self.now[key] = self.now.get(key, 0) + 1
            self.most[key] = max(self.most.get(key, 0), self.now[key])
        time.sleep(0.05)  # long enough that free workers would overlap
        with self._lock:
            self.now[key] -= 1
            self.done += 1
        return key


def enqueue_keyed(w: WorkflowInstance, ev: object) -> Decision:
    """Eight tasks of "customer-1" (limit 2) over two names, four of "customer-2" (limit 1)."""
    for n in range(8):
        w.enqueue_task(
            "a" if n % 2 else "b",
            {"key": "customer-1", "n": n},
            concurrency_key="customer-1",
            concurrency_limit=2,
        )
    for n in range(4):
        w.enqueue_task(
            "a", {"key": "customer-2", "n": n}, concurrency_key="customer-2", concurrency_limit=1
        )
    return w.continue_([])


async def test_two_managers_never_run_more_of_a_key_than_its_limit(
    make_manager: MakeManager,
) -> None:
    # Given two Managers over one store, each with eight workers per task name
    recorder = KeyedRecorder()
    executors = {"a": recorder.run, "b": recorder.run}
    first = register(
        make_manager(), {WF: Flow(enqueue_keyed, collect_results)}, executors, workers=8
    )
    second = register(make_manager(), tasks=executors, workers=8)
    await first.start()
    await second.start()

    # When a run enqueues its twelve keyed tasks
    await first.enqueue_workflow(WF, INST)
    done = await wait_finished(first, WF, INST, timeout=30)

    # Then all ran, and never more of a key at once than its limit
    assert len(done.get_result()) == 12
    await eventually(lambda: recorder.done == 12, what="all twelve tasks ran")
    assert recorder.most["customer-1"] <= 2, recorder.most
    assert recorder.most["customer-2"] == 1, recorder.most


# ---- bad input -----------------------------------------------------------------------------

BAD = [
    pytest.param({"concurrency_key": "k"}, ValueError, "concurrency_limit", id="key-no-limit"),
    pytest.param({"concurrency_limit": 2}, ValueError, "concurrency_key", id="limit-no-key"),
    pytest.param(
        {"concurrency_key": "k", "concurrency_limit": 0}, ValueError, "concurrency_limit", id="0"
    ),
    pytest.param(
        {"concurrency_key": "k", "concurrency_limit": 10001},
        ValueError,
        "concurrency_limit",
        id="10001",
    ),
    pytest.param(
        {"concurrency_key": "k", "concurrency_limit": True},
        TypeError,
        "concurrency_limit",
        id="True",
    ),
    pytest.param(
        {"concurrency_key": "k", "concurrency_limit": "2"}, TypeError, "concurrency_limit", id="str"
    ),
    pytest.param(
        {"concurrency_key": "", "concurrency_limit": 2}, ValueError, "concurrency_key", id="empty"
    ),
    pytest.param(
        {"concurrency_key": "a\nb", "concurrency_limit": 2},
        ValueError,
        "concurrency_key",
        id="control",
    ),
]


@pytest.mark.parametrize(("options", "error", "field"), BAD)
async def test_a_bad_key_or_limit_fails_the_run_and_stores_no_task(
    make_manager: MakeManager, options: dict[str, Any], error: type[Exception], field: str
) -> None:
    exc, text = await a_bad_enqueue_fails_the_run(
        make_manager, lambda w: w.enqueue_task("t", 2, **options)
    )
    assert isinstance(exc, error)
    assert field in text, text


async def test_a_requeued_dead_task_runs_under_its_key_again(driver: Driver) -> None:
    # Given two tasks of key k (limit 1): the first fails for good (a dead letter)
    await started(driver, tasks=[keyed("t", 0, "k", 1), keyed("t", 1, "k", 1)])
    [(first, completer)] = await driver.dequeue_tasks("t", 10, task_expiry=3600)
    await completer.fail("boom")
    [dead] = await driver.list_dead_tasks()
    # and the second runs now
    [(second, _)] = await driver.dequeue_tasks("t", 10, task_expiry=3600)
    assert (first.parameters, second.parameters) == (b"0", b"1")

    # When the dead one is requeued
    assert list((await driver.requeue_dead_tasks([dead.task_id])).values()) == ["requeued"]

    # Then it carries its key and limit again, and waits while the key is full
    [again] = [
        task for task in await driver.list_instance_tasks(WF, INST) if task.state == "queued"
    ]
    assert (again.concurrency_key, again.concurrency_limit) == ("k", 1)
    assert await driver.dequeue_tasks("t", 10, task_expiry=3600) == []


async def test_an_unkeyed_task_due_first_is_not_passed_over_by_keyed_ones(driver: Driver) -> None:
    # Given one unkeyed task, then keyed ones of five keys with room to spare
    await started(
        driver,
        tasks=[keyed("t", 0, None, None)]
        + [keyed("t", n, f"key-{n % 5}", 2) for n in range(1, 21)],
    )
    # When a claim takes fewer than are due
    claimed = params(await driver.dequeue_tasks("t", 4, task_expiry=3600))
    # Then the unkeyed one, due first, is among them: the kinds are taken in due order
    assert claimed == [b"0", b"1", b"2", b"3"]


async def test_a_key_past_hundreds_of_keys_with_nothing_to_claim_gets_its_turn(
    driver: Driver,
) -> None:
    # Given 300 keys whose only tasks are not due yet (each sorting before the last
    # key), and one key with a due task
    later = [
        NewTask(
            "t",
            b"9",
            start_after=hour_ahead(),
            concurrency_key=f"a{n:04d}",
            concurrency_limit=1,
        )
        for n in range(300)
    ]
    await started(driver, tasks=[*later, keyed("t", 1, "z-due", 1)])
    # When claims come (a claim visits a bounded number of keys, going on from where
    # the last one stopped)
    claimed: list[bytes | None] = []
    for _ in range(3):
        claimed += params(await driver.dequeue_tasks("t", 10, task_expiry=3600))
    # Then the due task is claimed within a few claims
    assert claimed == [b"1"]
