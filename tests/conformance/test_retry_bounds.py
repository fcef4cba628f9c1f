"""Retry policy bounds at the Manager's entry points, and a policy at the bounds, on every driver.

Issue 17, point 4: a policy out of the bounds every store can hold (e.g. a
backoff that overflows a timestamp) must never be stored; one at the bounds
must work on every store.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from cereal import Manager, RetryPolicy, WorkflowInstance
from cereal.checks.times import utcnow
from cereal.drivers import Driver
from cereal.models import NewTask
from cereal.retry import MAX_BACKOFF
from tests._waiting import wait_until
from tests.conformance._driver_helpers import started, sweep
from tests.conformance._executors import INST, WF, Flow, echo, register
from tests.plugins.manager import MakeManager, wait_finished


def overflowing() -> RetryPolicy:
    """A policy altered after construction to a backoff no store's timestamps can hold."""
    policy = RetryPolicy(max_attempts=3)
    object.__setattr__(policy, "initial_backoff", 1e13)
    object.__setattr__(policy, "max_backoff", 1e13)
    return policy


async def test_a_policy_out_of_bounds_is_refused_at_register_and_at_enqueue(
    make_manager: MakeManager,
) -> None:
    # Given a Manager: registering an executor with the policy is refused, nothing registered
    manager = make_manager()
    with pytest.raises(ValueError, match="initial_backoff must be between 0"):
        manager.register_task_executor("t", echo, retry=overflowing())
    assert "t" not in manager.task_names

    # When a workflow callback enqueues a task with it
    def on_start(w: WorkflowInstance, ev: object) -> object:
        w.enqueue_task("t", None, retry=overflowing())
        return w.continue_()

    register(manager, {WF: Flow(on_start)}, {"t": echo})
    await manager.start()
    await manager.enqueue_workflow(WF, INST)

    # Then the instance fails with the reason, and no task was stored
    done = await wait_finished(manager, WF, INST)
    assert "initial_backoff must be between 0" in str(done.err())
    assert (await manager.task_queue_stats()) == []


async def test_a_policy_at_the_bounds_fits_every_store(driver: Driver) -> None:
    # Given a task whose policy waits the longest backoff allowed before its second attempt
    policy = RetryPolicy(
        max_attempts=2, initial_backoff=MAX_BACKOFF, max_backoff=MAX_BACKOFF, jitter=0
    )
    await started(driver, tasks=[NewTask("t", b"1", retry_policy=policy.to_json())])
    [_] = await driver.dequeue_tasks("t", 1, task_expiry=0.01)

    # When its lease expires and a sweep queues it again
    async def retried() -> bool:
        return (await sweep(driver, task_expiry=3600)).retried_tasks == 1

    await wait_until(retried, what="the expired lease queued again")

    # Then it waits in the store, due 366 days from now, and reads back as such
    [task] = await Manager(driver).list_instance_tasks(WF, INST)
    assert task.state == "queued"
    assert task.start_after > utcnow() + timedelta(days=365)
