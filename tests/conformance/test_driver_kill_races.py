"""Kill or finish racing an in-flight decision and an in-flight task completion.

The in-flight side is held open by the test itself (a claimed event's
completer, a claimed task's lease) while the other side lands. Afterwards a
new run of the same names must see nothing of the old one: no stray event,
no claimable task.
"""

from __future__ import annotations

import pytest

from cereal import errors
from cereal.drivers import Driver, TaskCompleter
from cereal.models import NewTask, WorkflowEventType, WorkflowInstanceStatus
from tests.conformance._driver_helpers import INST, WF, started, take


async def claim_one(driver: Driver, task_name: str = "t") -> TaskCompleter:
    [(_, completer)] = await driver.dequeue_tasks(task_name, 1)
    return completer


async def assert_nothing_left(driver: Driver) -> None:
    """No task or event of the ended run survives: a new run sees only its start."""
    assert await driver.dequeue_tasks("t", 10) == []
    await driver.enqueue_workflow(WF, INST, None)
    event, completer = await take(driver)
    async with completer:
        assert event.type == WorkflowEventType.START
        await completer.done(None)
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)


async def test_kill_with_a_decision_and_a_completion_in_flight(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t"), NewTask("t")])
    first = await claim_one(driver)
    second = await claim_one(driver)
    await first.succeed(b"1")
    _, decision = await take(driver)  # a callback runs for the first result

    await driver.kill_workflow(WF, INST, "killed")

    with pytest.raises(errors.WorkflowClaimLostError):
        await decision.continue_(b'"late"', [NewTask("t")])
    await decision.close()
    with pytest.raises(errors.TaskLostError):
        await second.succeed(b"2")
    got = await driver.get_workflow_instance(WF, INST)
    assert (got.status, got.err) == (WorkflowInstanceStatus.COMPLETED, "killed")
    await assert_nothing_left(driver)


@pytest.mark.parametrize("decision", ["done", "fail"])
async def test_finish_removes_a_completion_that_landed_during_the_callback(
    driver: Driver, decision: str
) -> None:
    await started(driver, tasks=[NewTask("t"), NewTask("t")])
    first = await claim_one(driver)
    second = await claim_one(driver)
    await first.succeed(b"1")
    _, completer = await take(driver)

    await second.succeed(b"2")  # lands while the callback decides to finish

    if decision == "done":
        await completer.done(b'"r"')
    else:
        await completer.fail("stopped")
    await completer.close()
    await assert_nothing_left(driver)


async def test_a_completion_after_finish_is_lost(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t")])
    task = await claim_one(driver)
    await driver.cancel_workflow(WF, INST)
    _, completer = await take(driver)
    async with completer:
        await completer.done(None)

    with pytest.raises(errors.TaskLostError):
        await task.succeed(b"1")
    with pytest.raises(errors.TaskLostError):
        await task.heartbeat()
    await assert_nothing_left(driver)
