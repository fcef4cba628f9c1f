"""The driver contract for batch claims: ``claim_workflows``.

One claim takes up to ``max_instances`` instances, each with up to
``max_events`` of its oldest events, and one completer decides a whole batch.
A driver still on the base class's one-event default claims one event of one
instance; these tests expect exactly that from it, and full batches from a
driver that overrides the method.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cereal import errors
from cereal.drivers import Driver
from cereal.drivers.base import Driver as BaseDriver
from cereal.models import NewTask, TaskStatus, WorkflowEventType, WorkflowInstanceStatus
from tests.conformance._driver_helpers import INST, WF, started, take


def batches(driver: Driver) -> bool:
    """True when ``driver`` claims real batches (it overrides the one-event default)."""
    return type(driver).claim_workflows is not BaseDriver.claim_workflows


def fit(driver: Driver, wanted: int) -> int:
    """How many of ``wanted`` events or instances one claim returns on ``driver``."""
    return wanted if batches(driver) else 1


async def three_events(driver: Driver) -> None:
    """A running instance with 3 tasks, then: t1 done, t2 failed, a cancel (3 events)."""
    await started(driver, tasks=[NewTask("t", b"1"), NewTask("t", b"2"), NewTask("t", b"3")])
    claimed = await driver.dequeue_tasks("t", 2)
    assert [data.parameters for data, _ in claimed] == [b"1", b"2"]
    await claimed[0][1].succeed(b'"one"')
    await claimed[1][1].fail("two broke")
    await driver.cancel_workflow(WF, INST)


EXPECTED = [
    (WorkflowEventType.TASK_COMPLETE, 3, 1),
    (WorkflowEventType.TASK_COMPLETE, 3, 2),
    (WorkflowEventType.CANCEL, 3, 2),
]
"""(type, enqueued count, completed count) of the events :func:`three_events` queues."""


async def test_a_batch_holds_an_instances_events_in_order_with_their_counts(
    driver: Driver,
) -> None:
    await three_events(driver)

    [(events, completer)] = await driver.claim_workflows([WF], max_events=10)

    async with completer:
        shape = [(e.type, e.enqueued_task_count, e.completed_task_count) for e in events]
        assert shape == EXPECTED[: fit(driver, 3)]
        assert {e.instance.instance_name for e in events} == {INST}
        first = events[0].task_result
        assert first is not None
        assert (first.status, first.parameters, first.result) == (
            TaskStatus.SUCCESS,
            b"1",
            b'"one"',
        )
        if len(events) > 1:
            second = events[1].task_result
            assert second is not None
            assert (second.status, second.parameters, second.error_text) == (
                TaskStatus.FAILED,
                b"2",
                "two broke",
            )
            assert events[2].task_result is None
        assert [e.enqueued_at for e in events] == sorted(e.enqueued_at for e in events)


async def test_max_events_caps_the_batch(driver: Driver) -> None:
    await three_events(driver)

    [(events, completer)] = await driver.claim_workflows([WF], max_events=2)

    async with completer:
        shape = [(e.type, e.enqueued_task_count, e.completed_task_count) for e in events]
        assert shape == EXPECTED[: fit(driver, 2)]


async def test_continue_consumes_every_event_of_the_batch(driver: Driver) -> None:
    await three_events(driver)
    [(events, completer)] = await driver.claim_workflows([WF], max_events=10)

    async with completer:
        await completer.continue_(b'"after"', [NewTask("t", b"4"), NewTask("t", b"5")])

    for expected in EXPECTED[len(events) :]:
        # events the batch did not hold come next, with the counts the decision stored
        event, left_completer = await take(driver)
        async with left_completer:
            assert (event.type, event.completed_task_count) == (expected[0], expected[2])
            assert event.enqueued_task_count == 5
            await left_completer.continue_(event.instance.payload, [])
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)
    got = await driver.get_workflow_instance(WF, INST)
    assert (got.status, got.payload) == (WorkflowInstanceStatus.RUNNING, b'"after"')
    # the decision set the completed count to the batch's last: the next completion is 3rd
    [(_, task)] = await driver.dequeue_tasks("t", 1)
    await task.succeed(None)
    event, last = await take(driver)
    async with last:
        assert (event.enqueued_task_count, event.completed_task_count) == (5, 3)


async def test_close_without_decision_redelivers_the_whole_batch_with_identical_counts(
    driver: Driver,
) -> None:
    await three_events(driver)

    [(first, completer)] = await driver.claim_workflows([WF], max_events=10)
    await completer.close()
    await completer.close()  # idempotent
    [(again, completer)] = await driver.claim_workflows([WF], max_events=10)
    async with completer:
        pass  # leaving the context manager closes too
    [(third, completer)] = await driver.claim_workflows([WF], max_events=10)
    await completer.close()

    assert len(first) == fit(driver, 3)
    assert first == again == third  # same events, counts, results and times


async def test_max_instances_claims_distinct_instances_oldest_first(driver: Driver) -> None:
    for name in ("a", "b", "c"):
        await driver.enqueue_workflow(WF, name, None)
    await driver.enqueue_workflow("other", "x", None)
    await driver.cancel_workflow(WF, "a")

    claimed = await driver.claim_workflows([WF, "other"], max_instances=3, max_events=10)

    names = [events[0].instance.instance_name for events, _ in claimed]
    assert names == ["a", "b", "c"][: fit(driver, 3)]
    if batches(driver):
        assert [len(events) for events, _ in claimed] == [2, 1, 1]  # a: start and cancel
    for _, completer in claimed:
        await completer.close()


async def test_a_claim_spans_workflow_names_in_event_order(driver: Driver) -> None:
    await driver.enqueue_workflow("one", "a", None)
    await driver.enqueue_workflow("two", "b", None)
    await driver.enqueue_workflow("one", "c", None)

    claimed = await driver.claim_workflows(["two", "one"], max_instances=10)

    keys = [(e[0].instance.workflow_name, e[0].instance.instance_name) for e, _ in claimed]
    assert keys == [("one", "a"), ("two", "b"), ("one", "c")][: fit(driver, 3)]
    for _, completer in claimed:
        await completer.close()


async def test_an_instance_claimed_in_a_batch_is_not_claimed_again(
    driver: Driver, driver_factory: Callable[[], Driver]
) -> None:
    await driver.enqueue_workflow(WF, "a", None)
    await driver.cancel_workflow(WF, "a")
    [(events, held)] = await driver.claim_workflows([WF], max_events=1)
    assert events[0].instance.instance_name == "a"
    await driver.enqueue_workflow(WF, "b", None)
    second = driver_factory()
    await second.init()
    try:
        for claimer in (driver, second):
            claimed = await claimer.claim_workflows([WF], max_instances=10, max_events=10)
            assert [e[0].instance.instance_name for e, _ in claimed] == ["b"]
            for _, completer in claimed:
                await completer.close()
        assert await second.claim_workflows(["nope"], max_instances=10) == []

        await held.close()
        [(events, completer)] = await second.claim_workflows([WF], max_events=10)
        assert events[0].instance.instance_name == "a"
        await completer.close()
    finally:
        await second.close()


@pytest.mark.parametrize("decision", ["continue", "done", "fail"])
async def test_kill_during_a_batch_makes_the_decision_raise(driver: Driver, decision: str) -> None:
    await three_events(driver)
    [(_, completer)] = await driver.claim_workflows([WF], max_events=10)

    await driver.kill_workflow(WF, INST, "killed")

    with pytest.raises(errors.WorkflowClaimLostError):
        if decision == "continue":
            await completer.continue_(b'"late"', [NewTask("t")])
        elif decision == "done":
            await completer.done(b'"late"')
        else:
            await completer.fail("late")
    await completer.close()
    got = await driver.get_workflow_instance(WF, INST)
    assert (got.status, got.result, got.err) == (WorkflowInstanceStatus.COMPLETED, None, "killed")
    assert await driver.dequeue_tasks("t", 10) == []
    assert await driver.claim_workflows([WF], max_events=10) == []


@pytest.mark.parametrize("decision", ["done", "fail"])
async def test_finishing_in_a_batch_removes_the_events_it_did_not_hold(
    driver: Driver, decision: str
) -> None:
    await three_events(driver)
    [(events, completer)] = await driver.claim_workflows([WF], max_events=2)
    assert len(events) == fit(driver, 2)
    await driver.cancel_workflow(WF, INST)  # one more, after the claim

    async with completer:
        if decision == "done":
            await completer.done(b'"ok"')
        else:
            await completer.fail("stop")

    assert await driver.claim_workflows([WF], max_events=10) == []
    assert await driver.dequeue_tasks("t", 10) == []
    assert not (await driver.get_workflow_instance(WF, INST)).is_running()


async def test_events_arriving_after_the_claim_wait_for_the_next_claim(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1"), NewTask("t", b"2")])
    first, second = await driver.dequeue_tasks("t", 2)
    await first[1].succeed(b'"one"')
    [(events, completer)] = await driver.claim_workflows([WF], max_events=10)
    assert [(e.type, e.completed_task_count) for e in events] == [
        (WorkflowEventType.TASK_COMPLETE, 1)
    ]

    await second[1].succeed(b'"two"')  # both land while the batch is held
    await driver.cancel_workflow(WF, INST)
    assert await driver.claim_workflows([WF], max_events=10) == []  # still claimed
    async with completer:
        await completer.continue_(b'"p"', [])

    claimed = await driver.claim_workflows([WF], max_events=10)
    later = [event for events, completer in claimed for event in events]
    assert [(e.type, e.enqueued_task_count, e.completed_task_count) for e in later] == [
        (WorkflowEventType.TASK_COMPLETE, 2, 2),
        (WorkflowEventType.CANCEL, 2, 2),
    ][: fit(driver, 2)]
    assert later[0].task_result is not None and later[0].task_result.result == b'"two"'
    assert later[0].instance.payload == b'"p"'
    for _, held in claimed:
        await held.close()


async def test_nothing_ready_gives_an_empty_list(driver: Driver) -> None:
    assert await driver.claim_workflows([WF], max_instances=5, max_events=5) == []
    await driver.enqueue_workflow("other", INST, None)
    assert await driver.claim_workflows([WF], max_instances=5, max_events=5) == []


@pytest.mark.parametrize(("instances", "events"), [(0, 1), (1, 0), (-1, 5)])
async def test_batch_sizes_below_one_are_refused(
    driver: Driver, instances: int, events: int
) -> None:
    await driver.enqueue_workflow(WF, INST, None)
    with pytest.raises(ValueError, match="max_instances"):
        await driver.claim_workflows([WF], max_instances=instances, max_events=events)
    event, completer = await take(driver)  # nothing was claimed
    await completer.close()
    assert event.type == WorkflowEventType.START
