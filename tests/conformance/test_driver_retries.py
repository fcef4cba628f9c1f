"""The driver contract for retries and hand-back: stored policy, backoff, attempts, hand-backs."""

from __future__ import annotations

import pytest

from cereal import RetryPolicy, errors
from cereal.drivers import Driver, TaskCompleter
from cereal.models import NewTask, TaskData, TaskStatus
from cereal.retry import DEFAULT_MAX_HAND_BACKS, load_policy
from tests._waiting import wait_until
from tests.conformance._driver_helpers import started, take

POLICY = RetryPolicy(max_attempts=3, initial_backoff=0.01).to_json()


async def test_a_retry_waits_for_its_backoff_and_the_next_claim_is_the_next_attempt(
    driver: Driver,
) -> None:
    # Given a task claimed once (attempt 1), its policy stored at enqueue
    await started(driver, tasks=[NewTask("t", b"1", retry_policy=POLICY)])
    [(first, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    assert first.metadata.attempt == 1
    assert load_policy(first.retry_policy) == load_policy(POLICY)

    # When it is queued again with an hour's backoff
    await completer.retry("boom", 3600)

    # Then nothing is due, the old lease is gone, and the workflow heard nothing
    assert await driver.dequeue_tasks("t", 1, task_expiry=3600) == []
    with pytest.raises(errors.TaskLostError):
        await completer.succeed(None)
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)


async def test_a_retry_with_no_backoff_is_claimed_as_the_second_attempt(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1", retry_policy=POLICY)])
    [(_, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    await completer.retry("boom", 0)
    claimed: list[tuple[TaskData, TaskCompleter]] = []

    async def claim() -> bool:
        claimed.extend(await driver.dequeue_tasks("t", 1, task_expiry=3600))
        return bool(claimed)

    await wait_until(claim, what="the retried task claimed")
    [(second, again)] = claimed
    assert second.metadata.attempt == 2
    await again.succeed(b"2")
    event, workflow = await take(driver)
    async with workflow:
        assert event.task_result is not None
        assert (event.task_result.status, event.task_result.attempts) == (TaskStatus.SUCCESS, 2)


async def test_the_claimers_policy_is_stored_only_for_a_task_without_one(driver: Driver) -> None:
    own = RetryPolicy(max_attempts=7).to_json()
    await started(driver, tasks=[NewTask("t", b"1", retry_policy=own), NewTask("t", b"2")])
    claimed = await driver.dequeue_tasks("t", 2, task_expiry=3600, retry_policy=POLICY)
    policies = {data.parameters: load_policy(data.retry_policy) for data, _ in claimed}
    assert policies == {b"1": load_policy(own), b"2": load_policy(POLICY)}


async def test_a_hand_back_requeues_at_once_without_an_attempt_until_the_limit(
    driver: Driver,
) -> None:
    await started(driver, tasks=[NewTask("t", b"1")])
    for _ in range(DEFAULT_MAX_HAND_BACKS):
        [(data, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
        assert data.metadata.attempt == 1
        assert await completer.hand_back() is True
        with pytest.raises(errors.TaskLostError):
            await completer.hand_back()
    [(data, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)

    # one more hand-back than the limit: reported LOST instead
    assert await completer.hand_back() is False
    event, workflow = await take(driver)
    async with workflow:
        assert event.task_result is not None
        assert (event.task_result.status, event.task_result.attempts) == (TaskStatus.LOST, 1)


async def test_a_task_handed_back_unstarted_is_never_counted_towards_the_limit(
    driver: Driver,
) -> None:
    # Given a task a stop keeps catching in a claim, more often than the hand-back limit
    await started(driver, tasks=[NewTask("t", b"1")])
    for _ in range(DEFAULT_MAX_HAND_BACKS + 2):
        [(data, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
        assert data.metadata.attempt == 1
        assert await completer.hand_back_unstarted() is True
        with pytest.raises(errors.TaskLostError):
            await completer.hand_back_unstarted()

    # Then it is queued still, and a task that ran keeps its whole limit of counted hand-backs
    for _ in range(DEFAULT_MAX_HAND_BACKS):
        [(data, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
        assert await completer.hand_back() is True
    [(data, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    assert data.metadata.attempt == 1
    assert await completer.hand_back() is False
    event, workflow = await take(driver)
    async with workflow:
        assert event.task_result is not None
        assert (event.task_result.status, event.task_result.attempts) == (TaskStatus.LOST, 1)
