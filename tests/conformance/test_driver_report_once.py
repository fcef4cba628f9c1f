"""The driver contract: one lease, one report, however many reports race for it.

Two reports on the same lease are sent concurrently (``asyncio.gather``: both
are issued before either can finish). Exactly one may win; the other gets the
error a stale lease gets (``TaskLostError``), and the workflow sees the task
finish at most once. On PostgreSQL both reports reach the same group commit
(see ``tests/drivers/test_postgres_batching.py`` for the merged statement held
behind a busy group).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from cereal import errors
from cereal.drivers import Driver, TaskCompleter
from cereal.models import NewTask, TaskStatus, WorkflowEventType
from tests.conformance._driver_helpers import WF, started

Report = Callable[[TaskCompleter], Awaitable[object]]

# reports that end the lease with a result the workflow sees
FINAL: dict[str, tuple[Report, TaskStatus]] = {
    "succeed": (lambda c: c.succeed(b'"won"'), TaskStatus.SUCCESS),
    "succeed-again": (lambda c: c.succeed(b'"also won"'), TaskStatus.SUCCESS),
    "fail": (lambda c: c.fail("broke"), TaskStatus.FAILED),
    "abandon": (lambda c: c.abandon(), TaskStatus.LOST),
}

# reports that end the lease and queue the task again (the workflow sees nothing)
REQUEUE: dict[str, Report] = {
    "retry": lambda c: c.retry("again", 0.0),
    "hand_back": lambda c: c.hand_back(),
    "hand_back_unstarted": lambda c: c.hand_back_unstarted(),
}


async def _race(completer: TaskCompleter, first: Report, second: Report) -> list[bool]:
    """Send both reports at once; which of them succeeded (the rest must be TaskLostError)."""
    outcomes: list[bool] = []
    for outcome in await _gather(first(completer), second(completer)):
        if isinstance(outcome, errors.TaskLostError):
            outcomes.append(False)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            outcomes.append(True)
    return outcomes


async def _gather(*calls: Awaitable[object]) -> list[object | BaseException]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def _completion_events(driver: Driver) -> list[TaskStatus]:
    """Consume every pending event of the instance; the statuses of its task results."""
    statuses: list[TaskStatus] = []
    while True:
        try:
            events, completer = (await driver.claim_workflows([WF], max_events=16))[0]
        except IndexError:
            return statuses
        async with completer:
            for event in events:
                assert event.type == WorkflowEventType.TASK_COMPLETE
                assert event.task_result is not None
                statuses.append(event.task_result.status)
            await completer.continue_(None, [])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("succeed", "succeed-again"),
        ("succeed", "abandon"),
        ("fail", "succeed"),
        ("abandon", "fail"),
    ],
)
async def test_two_final_reports_on_one_lease_one_wins(
    driver: Driver, first: str, second: str
) -> None:
    await started(driver, tasks=[NewTask("t")])
    [(_, completer)] = await driver.dequeue_tasks("t", 1)

    won = await _race(completer, FINAL[first][0], FINAL[second][0])

    assert sorted(won) == [False, True], f"exactly one report may win, got {won}"
    winner = first if won[0] else second
    assert await _completion_events(driver) == [FINAL[winner][1]]
    with pytest.raises(errors.TaskLostError):
        await completer.heartbeat()


@pytest.mark.parametrize("final", ["succeed", "abandon"])
@pytest.mark.parametrize("requeue", ["retry", "hand_back", "hand_back_unstarted"])
async def test_a_final_report_racing_a_requeue_on_one_lease_one_wins(
    driver: Driver, final: str, requeue: str
) -> None:
    await started(driver, tasks=[NewTask("t")])
    [(_, completer)] = await driver.dequeue_tasks("t", 1)

    won = await _race(completer, FINAL[final][0], REQUEUE[requeue])

    assert sorted(won) == [False, True], f"exactly one report may win, got {won}"
    events = await _completion_events(driver)
    queued = await driver.dequeue_tasks("t", 5)
    if won[0]:  # the result reached the workflow; nothing is queued again
        assert (events, queued) == ([FINAL[final][1]], [])
    else:  # queued again; the workflow saw nothing
        assert (events, len(queued)) == ([], 1)


@pytest.mark.parametrize("live_first", [False, True])
async def test_a_stale_lease_report_racing_the_live_lease_report_loses(
    driver: Driver, live_first: bool
) -> None:
    await started(driver, tasks=[NewTask("t")])
    [(_, stale)] = await driver.dequeue_tasks("t", 1)
    await stale.retry("again", 0.0)
    [(_, live)] = await driver.dequeue_tasks("t", 1)

    reports = [stale.succeed(b'"stale"'), live.succeed(b'"live"')]
    if live_first:
        reports.reverse()
    outcomes = await _gather(*reports)
    if live_first:
        outcomes.reverse()

    assert isinstance(outcomes[0], errors.TaskLostError), outcomes
    assert outcomes[1] is None, outcomes
    assert await _completion_events(driver) == [TaskStatus.SUCCESS]
