"""Resuming a task lease by its token (``Driver.resume_task_lease``), fenced by that token.

What ``cereal serve`` uses to take up a lease its client re-presents after a
server restart: a live lease is taken up, and its result applied once; a lease
that ended, expired or was claimed again is never brought back.
"""

from __future__ import annotations

import pytest

from cereal import errors
from cereal.drivers import Driver
from cereal.models import NewTask, TaskStatus
from tests._waiting import wait_until
from tests.conformance._driver_helpers import WF, started, sweep

pytestmark = pytest.mark.requires("resumable_leases")


async def _completions(driver: Driver) -> list[tuple[TaskStatus, bytes | None]]:
    """The task results queued for the one instance (its claim is then released)."""
    [(events, completer)] = await driver.claim_workflows([WF], max_events=8)
    async with completer:
        results = [e.task_result for e in events]
        return [(r.status, r.result) for r in results if r is not None]


async def test_a_resumed_lease_reports_once_and_the_old_completer_is_spent(
    driver: Driver,
) -> None:
    await started(driver, tasks=[NewTask("t", b"1")])
    [(task, original)] = await driver.dequeue_tasks("t", 1)
    assert original.lease_token

    # When the lease is taken up again by its id and token
    data, resumed = await driver.resume_task_lease(task.metadata.task_id, original.lease_token)

    # Then it is the same task and lease, and its report is applied exactly once
    assert (data.name, data.parameters, data.metadata.attempt) == ("t", b"1", 1)
    assert data.metadata.task_id == task.metadata.task_id
    assert resumed.lease_token == original.lease_token
    await resumed.heartbeat()
    await resumed.succeed(b"2")
    with pytest.raises(errors.TaskLostError):
        await original.succeed(b"3")
    with pytest.raises(errors.TaskLostError):
        await driver.resume_task_lease(task.metadata.task_id, original.lease_token)
    assert await _completions(driver) == [(TaskStatus.SUCCESS, b"2")]


async def test_a_wrong_token_or_task_takes_up_nothing(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1")])
    [(task, original)] = await driver.dequeue_tasks("t", 1)
    assert original.lease_token
    other_token = original.lease_token[::-1]

    for task_id, token in [
        (task.metadata.task_id, other_token),
        (task.metadata.task_id, "not a token"),
        ("999999", original.lease_token),
        ("not a number", original.lease_token),
    ]:
        with pytest.raises(errors.TaskLostError):
            await driver.resume_task_lease(task_id, token)

    await original.succeed(b"2")  # the lease was left alone
    assert await _completions(driver) == [(TaskStatus.SUCCESS, b"2")]


async def test_a_lease_claimed_again_is_not_resurrected(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1")])
    [(task, first)] = await driver.dequeue_tasks("t", 1)
    assert first.lease_token
    assert await first.hand_back()
    [(_, second)] = await driver.dequeue_tasks("t", 1)

    with pytest.raises(errors.TaskLostError):
        await driver.resume_task_lease(task.metadata.task_id, first.lease_token)

    await second.succeed(b"2")
    assert await _completions(driver) == [(TaskStatus.SUCCESS, b"2")]


async def test_an_expired_lease_is_not_resurrected(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1")])
    [(task, lease)] = await driver.dequeue_tasks("t", 1, task_expiry=0.2)
    assert lease.lease_token

    async def swept() -> bool:
        return (await sweep(driver, 3600.0)).expired_tasks == 1

    await wait_until(swept, what="the lease expired and was swept")
    with pytest.raises(errors.TaskLostError):
        await driver.resume_task_lease(task.metadata.task_id, lease.lease_token)
    assert await _completions(driver) == [(TaskStatus.LOST, None)]
