"""Rate limits: the store's claim never starts more of a key than its rate allows.

A task enqueued with ``concurrency_key`` and ``rate_limit=RateLimit(n, per)``
starts only while fewer than ``n`` tasks of its key started in the last
``per``; over the limit it stays queued (never failed) until a start leaves
the window. Driver-level cases pin the claim down (windows of an hour, so no
start leaves one during a test, and of a fraction of a second where a case
waits for starts to leave); a Manager-level case runs two Managers; bad input
fails the run that gave it.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest

from cereal import Decision, RateLimit, Task, WorkflowInstance
from cereal.drivers import Driver, TaskCompleter
from cereal.models import NewTask, TaskData
from tests.conformance._driver_helpers import INST, WF, started, take
from tests.conformance._executors import Flow, a_bad_enqueue_fails_the_run, register
from tests.plugins.manager import MakeManager, eventually

HOUR = 3600.0


def rated(
    task_name: str,
    n: int,
    key: str | None,
    starts: int | None,
    seconds: float | None = HOUR,
    *,
    limit: int | None = None,
) -> NewTask:
    """A task of ``task_name`` with parameters ``n``, at most ``starts`` per ``seconds``."""
    return NewTask(
        task_name,
        str(n).encode(),
        concurrency_key=key,
        concurrency_limit=limit,
        rate_limit_starts=starts,
        rate_limit_seconds=None if starts is None else seconds,
    )


def params(claimed: list[tuple[TaskData, TaskCompleter]]) -> list[bytes | None]:
    return [data.parameters for data, _ in claimed]


async def claim(driver: Driver, task_name: str = "t") -> list[tuple[TaskData, TaskCompleter]]:
    return await driver.dequeue_tasks(task_name, 10, task_expiry=3600)


# ---- the claim, at the driver -------------------------------------------------------------


async def test_a_claim_starts_no_more_of_a_key_than_its_rate(driver: Driver) -> None:
    # Given five tasks of key "one" (2 an hour) and three of key "two" (1 an hour)
    await started(
        driver,
        tasks=[rated("t", n, "one", 2) for n in range(5)]
        + [rated("t", n, "two", 1) for n in range(5, 8)],
    )

    # When a claim asks for ten: the two oldest of "one", the oldest of "two"
    first = await claim(driver)
    assert params(first) == [b"0", b"1", b"5"]

    # Then ending them frees no start: a rate counts starts, not running tasks
    for _, completer in first:
        await completer.succeed(None)
    assert await claim(driver) == []
    # and the rest stay queued, not failed
    listed = await driver.list_tasks("t")
    assert [task.state for task in listed] == ["queued"] * 5


async def test_starts_leave_the_window_and_the_next_tasks_go(driver: Driver) -> None:
    # Given five tasks of a key allowing 2 starts per 0.2 s
    await started(driver, tasks=[rated("t", n, "k", 2, 0.2) for n in range(5)])
    assert params(await claim(driver)) == [b"0", b"1"]

    # When the window has passed, one claim takes two more (never three: both
    # start at the same instant, inside one window)
    await asyncio.sleep(0.25)
    assert params(await claim(driver)) == [b"2", b"3"]
    await asyncio.sleep(0.25)
    assert params(await claim(driver)) == [b"4"]


async def test_tasks_of_different_names_and_runs_share_a_keys_rate(driver: Driver) -> None:
    # Given tasks "a" and "b" of one key allowing 3 an hour, in two runs
    await started(driver, tasks=[rated("a", n, "k", 3) for n in range(3)])
    await started(driver, instance_name="other", tasks=[rated("b", n, "k", 3) for n in range(3)])

    # When both names are claimed: three in all start
    taken = len(await claim(driver, "a")) + len(await claim(driver, "b"))
    assert taken == 3
    assert await claim(driver, "a") == [] and await claim(driver, "b") == []


async def test_a_concurrency_limit_and_a_rate_both_hold(driver: Driver) -> None:
    # Given four tasks of a key running at most 1 at a time and starting at most 3 an hour
    await started(driver, tasks=[rated("t", n, "k", 3, limit=1) for n in range(4)])

    # When each is claimed and ended in turn: one at a time, three in all
    for n in range(3):
        [(data, completer)] = await claim(driver)
        assert data.parameters == str(n).encode()
        assert await claim(driver) == []  # the concurrency limit
        await completer.succeed(None)
    assert await claim(driver) == []  # the rate limit


async def test_a_retry_is_another_start(driver: Driver) -> None:
    # Given one task of a key allowing 2 starts an hour
    await started(driver, tasks=[rated("t", 0, "k", 2)])

    # When it starts, is retried, starts again and is retried again
    for _ in range(2):
        [(_, running)] = await claim(driver)
        await running.retry("boom", 0)

    # Then the second retry is due, but both starts of the window are spent
    assert await claim(driver) == []
    [task] = await driver.list_tasks("t")
    assert (task.state, task.attempt) == ("queued", 2)


async def test_a_key_with_room_is_not_crowded_out_by_full_ones(driver: Driver) -> None:
    # Given 70 keys (more than a claim takes from) each allowing 1 start an hour, with
    # two tasks each, and every key's one start spent
    await started(driver, tasks=[rated("t", n, f"k{n // 2:02}", 1) for n in range(140)])
    spent = 0
    while taken := await claim(driver):
        spent += len(taken)
    assert spent == 70
    # When a newer task of a fresh key is queued behind their 70 older ones
    await started(driver, instance_name="late", tasks=[rated("t", 999, "zz", 1)])

    # Then a claim of one takes it
    assert params(await driver.dequeue_tasks("t", 1, task_expiry=3600)) == [b"999"]


async def test_unkeyed_tasks_are_not_held_behind_a_spent_rate(driver: Driver) -> None:
    # Given a key whose window is spent, with tasks of it queued first, then plain tasks
    await started(
        driver,
        tasks=[rated("t", n, "k", 1) for n in range(3)]
        + [rated("t", n, None, None) for n in (3, 4)],
    )
    assert params(await claim(driver)) == [b"0", b"3", b"4"]
    assert await claim(driver) == []


async def test_listed_tasks_show_their_rate(driver: Driver) -> None:
    await started(driver, tasks=[rated("t", 0, "api", 10, 1.5), rated("t", 1, "k", 2, limit=4)])

    listed = await driver.list_tasks("t")

    assert [
        (t.concurrency_key, t.concurrency_limit, t.rate_limit_starts, t.rate_limit_seconds)
        for t in listed
    ] == [("api", None, 10, 1.5), ("k", 4, 2, HOUR)]


async def test_a_requeued_dead_task_keeps_its_rate(driver: Driver) -> None:
    # Given a task of a key allowing 1 start an hour that fails for good (a dead letter)
    await started(driver, tasks=[rated("t", 0, "k", 1)])
    [(_, completer)] = await claim(driver)
    await completer.fail("boom")
    _, workflow = await take(driver)
    async with workflow:
        await workflow.continue_(None, [])
    [dead] = await driver.list_dead_tasks()

    # When it is requeued
    await driver.requeue_dead_tasks([dead.task_id])

    # Then it is queued under its rate again, and the spent window holds it back
    [task] = await driver.list_tasks("t")
    assert (task.concurrency_key, task.rate_limit_starts, task.rate_limit_seconds) == ("k", 1, HOUR)
    assert await claim(driver) == []


# ---- end to end ----------------------------------------------------------------------------


class StartCounter:
    """A plain task executor counting the tasks it ran."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ran: list[int] = []

    def run(self, task: Task) -> Any:
        with self._lock:
            self.ran.append(task.get_parameters())
        return None


def enqueue_rated(w: WorkflowInstance, ev: object) -> Decision:
    """Ten tasks of one key, over two names, at most 3 starts a minute."""
    for n in range(10):
        w.enqueue_task(
            "a" if n % 2 else "b",
            n,
            concurrency_key="api",
            rate_limit=RateLimit(3, timedelta(minutes=1)),
        )
    return w.continue_([])


async def test_two_managers_start_no_more_than_the_rate(make_manager: MakeManager) -> None:
    # Given two Managers over one store, each with four workers per task name
    counter = StartCounter()
    executors = {"a": counter.run, "b": counter.run}
    first = register(make_manager(), {WF: Flow(enqueue_rated)}, executors, workers=4)
    second = register(make_manager(), tasks=executors, workers=4)
    await first.start()
    await second.start()

    # When a run enqueues ten tasks of a key allowing 3 a minute
    await first.enqueue_workflow(WF, INST)

    # Then three run, and the other seven wait queued through many polls of both
    # Managers (every 50 ms), neither failed nor started
    await eventually(lambda: len(counter.ran) == 3, what="three tasks started")
    await asyncio.sleep(0.5)
    assert len(counter.ran) == 3
    queued = await first.list_tasks("a") + await first.list_tasks("b")
    assert sorted(task.state for task in queued) == ["queued"] * 7
    assert (await first.get_workflow_instance(WF, INST)).is_running()


# ---- bad input -----------------------------------------------------------------------------

BAD = [
    pytest.param({"rate_limit": RateLimit(2, 1.0)}, ValueError, "concurrency_key", id="no-key"),
    pytest.param(
        {"concurrency_key": "k", "rate_limit": (2, 1.0)}, TypeError, "rate_limit", id="tuple"
    ),
    pytest.param(
        {"concurrency_key": "k", "rate_limit": "2/s"}, TypeError, "rate_limit", id="string"
    ),
]


@pytest.mark.parametrize(("options", "error", "field"), BAD)
async def test_a_bad_rate_limit_fails_the_run_and_stores_no_task(
    make_manager: MakeManager, options: dict[str, Any], error: type[Exception], field: str
) -> None:
    exc, text = await a_bad_enqueue_fails_the_run(
        make_manager, lambda w: w.enqueue_task("t", 2, **options)
    )
    assert isinstance(exc, error)
    assert field in text, text


@pytest.mark.parametrize(
    ("starts", "per", "error", "text"),
    [
        (0, 1.0, ValueError, "starts must be from 1 to 10000"),
        (10_001, 1.0, ValueError, "starts must be from 1 to 10000"),
        (True, 1.0, TypeError, "starts must be an int"),
        (2.5, 1.0, TypeError, "starts must be an int"),
        (2, 0.0, ValueError, "per must be from"),
        (2, timedelta(days=367), ValueError, "per must be from"),
        (2, float("nan"), ValueError, "per must be from"),
        (2, "1s", TypeError, "per must be a timedelta or seconds"),
    ],
)
def test_a_rate_limit_out_of_bounds_is_refused(
    starts: Any, per: Any, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        RateLimit(starts, per)
