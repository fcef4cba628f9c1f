"""The driver contract, workflow side: instances, events, claims, decisions, cancel, kill.

Every test talks to a driver directly through :mod:`cereal.drivers.base` and
runs once per driver (``--drivers`` narrows the set).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC

import pytest

from cereal import errors
from cereal.drivers import Driver
from cereal.models import (
    ListWorkflowFilter,
    NewTask,
    TaskStatus,
    WorkflowEventType,
    WorkflowInstanceStatus,
)
from tests.conformance._driver_helpers import (
    INST,
    ODD_NAMES,
    WF,
    Wakeups,
    eventually,
    finished,
    started,
    take,
)

# ---- enqueue -------------------------------------------------------------------------


async def test_enqueue_creates_a_starting_instance(driver: Driver) -> None:
    await driver.enqueue_workflow(WF, INST, b'{"n": 1}')

    got = await driver.get_workflow_instance(WF, INST)
    assert (got.workflow_name, got.instance_name) == (WF, INST)
    assert got.status == WorkflowInstanceStatus.STARTING
    assert got.is_running()
    assert got.parameters == b'{"n": 1}'
    assert (got.payload, got.result, got.err, got.ended_at) == (None, None, None, None)
    assert got.started_at is not None and got.started_at.utcoffset() == UTC.utcoffset(None)


async def test_none_parameters_stay_none(driver: Driver) -> None:
    await driver.enqueue_workflow(WF, INST, None)

    event, completer = await take(driver)
    async with completer:
        assert event.instance.parameters is None
        await completer.continue_(None, [])
    got = await driver.get_workflow_instance(WF, INST)
    assert (got.parameters, got.payload) == (None, None)


async def test_duplicate_enqueue_raises_and_stores_nothing(driver: Driver) -> None:
    await driver.enqueue_workflow(WF, INST, b"1")

    with pytest.raises(errors.WorkflowInstanceExistsError):
        await driver.enqueue_workflow(WF, INST, b"2")

    assert (await driver.get_workflow_instance(WF, INST)).parameters == b"1"
    event, completer = await take(driver)
    async with completer:
        assert event.type == WorkflowEventType.START
        await completer.continue_(None, [])
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)  # no second start event was stored


async def test_duplicate_enqueue_raises_while_running(driver: Driver) -> None:
    await started(driver)

    with pytest.raises(errors.WorkflowInstanceExistsError):
        await driver.enqueue_workflow(WF, INST, b"2")


async def test_reenqueue_after_finish_starts_a_fresh_run(driver: Driver) -> None:
    await finished(driver, result=b'"first"', parameters=b"1")

    await driver.enqueue_workflow(WF, INST, b"2")

    got = await driver.get_workflow_instance(WF, INST)
    assert got.status == WorkflowInstanceStatus.STARTING
    assert (got.parameters, got.result, got.err) == (b"2", None, None)
    event, completer = await take(driver)
    async with completer:
        assert event.type == WorkflowEventType.START
        assert (event.enqueued_task_count, event.completed_task_count) == (0, 0)
        await completer.done(b'"second"')
    assert (await driver.get_workflow_instance(WF, INST)).result == b'"second"'


async def test_same_instance_name_under_two_workflow_names(driver: Driver) -> None:
    await driver.enqueue_workflow("a", INST, b'"a"')
    await driver.enqueue_workflow("b", INST, b'"b"')

    assert (await driver.get_workflow_instance("a", INST)).parameters == b'"a"'
    assert (await driver.get_workflow_instance("b", INST)).parameters == b'"b"'
    event_b, completer_b = await take(driver, ["b"])
    async with completer_b:
        assert event_b.instance.workflow_name == "b"
        await completer_b.done(None)
    assert (await driver.get_workflow_instance("a", INST)).is_running()
    assert not (await driver.get_workflow_instance("b", INST)).is_running()


async def test_get_unknown_instance_raises(driver: Driver) -> None:
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.get_workflow_instance(WF, "nope")


# ---- dequeue ordering and claims ------------------------------------------------------


async def test_dequeue_nothing_raises(driver: Driver) -> None:
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)
    await driver.enqueue_workflow("other", INST, None)
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver, [WF])  # only the requested names are considered


async def test_events_are_dequeued_in_sequence_order(driver: Driver) -> None:
    await driver.enqueue_workflow(WF, "a", None)
    await driver.enqueue_workflow("other", "b", None)
    await driver.cancel_workflow(WF, "a")
    await driver.enqueue_workflow(WF, "c", None)

    seen = []
    for _ in range(4):
        event, completer = await take(driver, [WF, "other"])
        async with completer:
            seen.append((event.instance.instance_name, event.type))
            await completer.continue_(None, [])
    assert seen == [
        ("a", WorkflowEventType.START),
        ("b", WorkflowEventType.START),
        ("a", WorkflowEventType.CANCEL),
        ("c", WorkflowEventType.START),
    ]


async def test_a_claimed_instance_yields_no_event_but_others_do(driver: Driver) -> None:
    await driver.enqueue_workflow(WF, "a", None)
    await driver.cancel_workflow(WF, "a")
    await driver.enqueue_workflow(WF, "b", None)

    first, held = await take(driver)
    second, other = await take(driver)
    assert (first.instance.instance_name, first.type) == ("a", WorkflowEventType.START)
    assert (second.instance.instance_name, second.type) == ("b", WorkflowEventType.START)
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)  # a's cancel waits while a is claimed

    await held.continue_(None, [])
    await held.close()
    third, completer = await take(driver)
    assert (third.instance.instance_name, third.type) == ("a", WorkflowEventType.CANCEL)
    await completer.close()
    await other.close()


async def test_claims_hold_across_drivers_sharing_a_store(
    driver: Driver, driver_factory: Callable[[], Driver]
) -> None:
    second = driver_factory()
    await second.init()
    try:
        await driver.enqueue_workflow(WF, INST, None)
        _, completer = await take(driver)
        with pytest.raises(errors.NoWorkflowInstancesError):
            await take(second)
        await completer.close()
        event, again = await take(second)
        assert event.type == WorkflowEventType.START
        await again.close()
    finally:
        await second.close()


async def test_close_without_decision_redelivers_with_identical_counts(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1"), NewTask("t", b"2")])
    (_, task_completer), *_ = await driver.dequeue_tasks("t", 1)
    await task_completer.succeed(b'"r"')

    first, completer = await take(driver)
    await completer.close()
    await completer.close()  # idempotent
    again, completer = await take(driver)
    async with completer:
        pass  # leaving the context manager closes too

    third, completer = await take(driver)
    await completer.close()
    for event in (first, again, third):
        assert event.type == WorkflowEventType.TASK_COMPLETE
        assert (event.enqueued_task_count, event.completed_task_count) == (2, 1)
        assert event.enqueued_at == first.enqueued_at
        assert event.task_result == first.task_result
    assert first.task_result is not None
    assert first.task_result.status == TaskStatus.SUCCESS
    assert first.task_result.result == b'"r"'


async def test_start_event_shows_the_instance(driver: Driver) -> None:
    await driver.enqueue_workflow(WF, INST, b"[1]")

    event, completer = await take(driver)
    async with completer:
        assert event.type == WorkflowEventType.START
        assert event.instance.status == WorkflowInstanceStatus.STARTING
        assert event.instance.parameters == b"[1]"
        assert event.instance.payload is None
        assert (event.enqueued_task_count, event.completed_task_count) == (0, 0)
        assert event.task_result is None
        assert event.enqueued_at.utcoffset() is not None


async def test_concurrent_consumers_never_share_an_instance(driver: Driver) -> None:
    names = [f"i{n}" for n in range(12)]
    for name in names:
        await driver.enqueue_workflow(WF, name, None)
        await driver.cancel_workflow(WF, name)
    busy: set[str] = set()
    seen: list[tuple[str, WorkflowEventType]] = []

    async def consume() -> None:
        while True:
            try:
                event, completer = await take(driver)
            except errors.NoWorkflowInstancesError:
                return
            async with completer:
                name = event.instance.instance_name
                assert name not in busy
                busy.add(name)
                await asyncio.sleep(0)  # let the other consumers run meanwhile
                seen.append((name, event.type))
                busy.discard(name)
                await completer.continue_(None, [])

    await asyncio.gather(*(consume() for _ in range(4)))

    assert sorted(seen) == sorted(
        [(name, WorkflowEventType.START) for name in names]
        + [(name, WorkflowEventType.CANCEL) for name in names]
    )
    for name in names:  # per instance, the start came before the cancel
        mine = [kind for who, kind in seen if who == name]
        assert mine == [WorkflowEventType.START, WorkflowEventType.CANCEL]


# ---- decisions --------------------------------------------------------------------------


async def test_continue_stores_payload_counts_and_tasks_at_once(driver: Driver) -> None:
    await started(driver, payload=b'{"step": 1}', tasks=[NewTask("t", b"1"), NewTask("u", None)])

    got = await driver.get_workflow_instance(WF, INST)
    assert got.status == WorkflowInstanceStatus.RUNNING
    assert got.payload == b'{"step": 1}'
    claimed_t = await driver.dequeue_tasks("t", 10)
    claimed_u = await driver.dequeue_tasks("u", 10)
    assert [data.parameters for data, _ in claimed_t] == [b"1"]
    assert [data.parameters for data, _ in claimed_u] == [None]

    await claimed_t[0][1].succeed(None)
    event, completer = await take(driver)
    async with completer:
        assert event.instance.payload == b'{"step": 1}'
        assert (event.enqueued_task_count, event.completed_task_count) == (2, 1)
        await completer.continue_(b'{"step": 2}', [NewTask("t", b"3")])
    await claimed_u[0][1].fail("boom")
    event, completer = await take(driver)
    async with completer:
        assert event.instance.payload == b'{"step": 2}'
        assert (event.enqueued_task_count, event.completed_task_count) == (3, 2)
        await completer.continue_(None, [])
    assert (await driver.get_workflow_instance(WF, INST)).payload is None


async def test_continue_with_many_tasks(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", str(n).encode()) for n in range(300)])

    claimed = await driver.dequeue_tasks("t", 1000)

    assert sorted(int(data.parameters or b"") for data, _ in claimed) == list(range(300))
    await driver.cancel_workflow(WF, INST)
    event, completer = await take(driver)
    async with completer:
        assert (event.enqueued_task_count, event.completed_task_count) == (300, 0)


async def test_done_writes_history_and_removes_everything(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b"1"), NewTask("t", b"2")])
    [(_, running)] = await driver.dequeue_tasks("t", 1)
    await driver.cancel_workflow(WF, INST)

    event, completer = await take(driver)
    async with completer:
        assert event.type == WorkflowEventType.CANCEL
        await completer.done(b'{"answer": 42}')

    got = await driver.get_workflow_instance(WF, INST)
    assert got.status == WorkflowInstanceStatus.COMPLETED
    assert not got.is_running()
    assert (got.parameters, got.payload) == (b'{"p": 1}', None)
    assert (got.result, got.err) == (b'{"answer": 42}', None)
    assert got.started_at is not None and got.ended_at is not None
    assert got.started_at <= got.ended_at
    assert got.get_result() == {"answer": 42}
    assert await driver.dequeue_tasks("t", 10) == []  # the queued task went with it
    with pytest.raises(errors.TaskLostError):
        await running.heartbeat()  # the running one lost its lease
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)


async def test_done_with_none_result(driver: Driver) -> None:
    await finished(driver, result=None)

    got = await driver.get_workflow_instance(WF, INST)
    assert (got.result, got.err) == (None, None)
    assert got.get_result() is None


async def test_fail_writes_the_error_text(driver: Driver) -> None:
    await finished(driver, error="it broke: 'badly'")

    got = await driver.get_workflow_instance(WF, INST)
    assert got.status == WorkflowInstanceStatus.COMPLETED
    assert (got.result, got.err) == (None, "it broke: 'badly'")
    with pytest.raises(errors.WorkflowFailedError, match="it broke"):
        got.get_result()


async def test_pending_events_vanish_when_the_instance_ends(driver: Driver) -> None:
    await driver.enqueue_workflow(WF, INST, None)
    await driver.cancel_workflow(WF, INST)
    await driver.cancel_workflow(WF, INST)

    _, completer = await take(driver)
    async with completer:
        await completer.fail("stop")
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)


# ---- listing ----------------------------------------------------------------------------


async def test_list_returns_one_entry_per_pair(driver: Driver) -> None:
    await finished(driver, WF, "done", result=b"2")
    await finished(driver, WF, "again", result=b'"old"')
    await driver.enqueue_workflow(WF, "again", b'"new"')  # live row wins over history
    await finished(driver, "other", "done", error="x")
    await finished(driver, "other", "twice", result=b"1")
    await finished(driver, "other", "twice", result=b"2")  # newest history row wins
    await driver.enqueue_workflow(WF, "live", b"1")

    every = await driver.list_workflow_instances(ListWorkflowFilter())
    by_key = {(i.workflow_name, i.instance_name): i for i in every}
    assert len(every) == len(by_key) == 5
    assert by_key[(WF, "live")].status == WorkflowInstanceStatus.STARTING
    assert (by_key[(WF, "live")].result, by_key[(WF, "live")].err) == (None, None)
    assert by_key[(WF, "done")].result == b"2"
    assert by_key[(WF, "done")].payload is None
    assert by_key[(WF, "again")].is_running()
    assert by_key[(WF, "again")].parameters == b'"new"'
    assert by_key[(WF, "again")].result is None
    assert by_key[("other", "done")].err == "x"
    assert by_key[("other", "twice")].result == b"2"


async def test_list_filters(driver: Driver) -> None:
    await finished(driver, WF, "done")
    await finished(driver, "other", "live")
    await driver.enqueue_workflow(WF, "live", None)

    async def keys(**where: object) -> set[tuple[str, str]]:
        found = await driver.list_workflow_instances(ListWorkflowFilter(**where))  # type: ignore[arg-type]
        return {(i.workflow_name, i.instance_name) for i in found}

    assert await keys(is_running=True) == {(WF, "live")}
    assert await keys(is_running=False) == {(WF, "done"), ("other", "live")}
    assert await keys(workflow_name=WF) == {(WF, "live"), (WF, "done")}
    assert await keys(instance_name="live") == {(WF, "live"), ("other", "live")}
    assert await keys(instance_name="live", is_running=False) == {("other", "live")}
    assert await keys(workflow_name="other", instance_name="live") == {("other", "live")}
    assert await keys(workflow_name="nope") == set()


async def test_list_pages_in_name_order(driver: Driver) -> None:
    await finished(driver, "b", "2")
    await finished(driver, "a", "10")
    await finished(driver, "c", "1")
    await driver.enqueue_workflow("a", "9", None)
    await driver.enqueue_workflow("b", "1", None)

    async def names(**window: object) -> list[tuple[str, str]]:
        found = await driver.list_workflow_instances(
            ListWorkflowFilter(**window)  # type: ignore[arg-type]
        )
        return [(i.workflow_name, i.instance_name) for i in found]

    whole = [("a", "10"), ("a", "9"), ("b", "1"), ("b", "2"), ("c", "1")]
    assert await names() == whole
    assert await names(limit=2) == whole[:2]
    assert await names(limit=2, offset=2) == whole[2:4]
    assert await names(limit=2, offset=4) == whole[4:]
    assert await names(offset=3) == whole[3:]
    assert await names(offset=9) == []
    assert await names(limit=1, is_running=True) == [("a", "9")]
    assert await names(limit=5, offset=1, workflow_name="b") == [("b", "2")]


async def test_list_of_an_empty_store(driver: Driver) -> None:
    assert await driver.list_workflow_instances(ListWorkflowFilter()) == []


# ---- cancel and kill ----------------------------------------------------------------------


async def test_cancel_unknown_or_finished_raises(driver: Driver) -> None:
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.cancel_workflow(WF, INST)
    await finished(driver)
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.cancel_workflow(WF, INST)


async def test_each_cancel_adds_an_event(driver: Driver) -> None:
    await started(driver)
    await driver.cancel_workflow(WF, INST)
    await driver.cancel_workflow(WF, INST)

    for _ in range(2):
        event, completer = await take(driver)
        async with completer:
            assert event.type == WorkflowEventType.CANCEL
            assert event.instance.status == WorkflowInstanceStatus.RUNNING
            await completer.continue_(None, [])
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)


async def test_kill_finishes_at_once(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t")])
    await driver.cancel_workflow(WF, INST)

    await driver.kill_workflow(WF, INST, "killed")

    got = await driver.get_workflow_instance(WF, INST)
    assert got.status == WorkflowInstanceStatus.COMPLETED
    assert (got.err, got.result, got.parameters) == ("killed", None, b'{"p": 1}')
    assert await driver.dequeue_tasks("t", 10) == []
    with pytest.raises(errors.NoWorkflowInstancesError):
        await take(driver)
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.kill_workflow(WF, INST, "killed")  # a second kill finds nothing


async def test_kill_unknown_raises(driver: Driver) -> None:
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.kill_workflow(WF, INST, "killed")


@pytest.mark.parametrize("decision", ["continue_", "done", "fail"])
async def test_kill_while_claimed_loses_the_claim(driver: Driver, decision: str) -> None:
    await driver.enqueue_workflow(WF, INST, None)
    _, completer = await take(driver)

    await driver.kill_workflow(WF, INST, "killed")

    with pytest.raises(errors.WorkflowClaimLostError):
        if decision == "continue_":
            await completer.continue_(b"1", [NewTask("t")])
        elif decision == "done":
            await completer.done(b"1")
        else:
            await completer.fail("late")
    await completer.close()
    got = await driver.get_workflow_instance(WF, INST)
    assert (got.status, got.err, got.result) == (WorkflowInstanceStatus.COMPLETED, "killed", None)
    assert await driver.dequeue_tasks("t", 10) == []
    history = await driver.list_workflow_instances(ListWorkflowFilter(is_running=False))
    assert len(history) == 1


async def test_a_killed_claim_cannot_touch_the_next_run(driver: Driver) -> None:
    await driver.enqueue_workflow(WF, INST, b"1")
    _, stale = await take(driver)
    await driver.kill_workflow(WF, INST, "killed")
    await driver.enqueue_workflow(WF, INST, b"2")

    with pytest.raises(errors.WorkflowClaimLostError):
        await stale.done(b'"stale"')
    await stale.close()

    got = await driver.get_workflow_instance(WF, INST)
    assert (got.status, got.parameters) == (WorkflowInstanceStatus.STARTING, b"2")
    event, completer = await take(driver)  # the new run's start is still there
    async with completer:
        assert event.instance.parameters == b"2"


# ---- wakeups ----------------------------------------------------------------------------


async def test_wakeups_announce_new_work(driver: Driver) -> None:
    heard = Wakeups()
    driver.add_wakeup_listener(heard)

    await driver.enqueue_workflow(WF, INST, None)
    await eventually(lambda: heard.saw("workflow", WF))

    heard.calls.clear()
    _, completer = await take(driver)
    async with completer:
        await completer.continue_(None, [NewTask("t"), NewTask("u"), NewTask("t")])
    await eventually(lambda: heard.saw("task", "t") and heard.saw("task", "u"))

    heard.calls.clear()
    [(_, task)] = await driver.dequeue_tasks("u", 1)
    await task.succeed(None)
    await eventually(lambda: heard.saw("workflow", WF))

    heard.calls.clear()
    await driver.cancel_workflow(WF, INST)
    await eventually(lambda: heard.saw("workflow", WF))

    driver.remove_wakeup_listener(heard)
    driver.remove_wakeup_listener(heard)  # unknown listeners are ignored


async def test_a_broken_listener_does_not_break_the_driver(driver: Driver) -> None:
    def broken(kind: object, name: object) -> None:
        raise RuntimeError("listener bug")

    driver.add_wakeup_listener(broken)
    await driver.enqueue_workflow(WF, INST, None)
    assert (await driver.get_workflow_instance(WF, INST)).is_running()


# ---- names and lifecycle ------------------------------------------------------------------


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_odd_names_round_trip(driver: Driver, name: str) -> None:
    await driver.enqueue_workflow(name, name, b'"x"')
    await driver.enqueue_workflow(WF, name, None)

    event, completer = await take(driver, [name])
    async with completer:
        assert (event.instance.workflow_name, event.instance.instance_name) == (name, name)
        await completer.continue_(None, [NewTask(name, b"1")])
    [(data, task)] = await driver.dequeue_tasks(name, 1)
    assert data.name == name
    assert (data.metadata.workflow_name, data.metadata.instance_name) == (name, name)
    await task.succeed(None)
    event, completer = await take(driver, [name])
    async with completer:
        assert event.task_result is not None and event.task_result.task_name == name
        await completer.done(b'"r"')

    got = await driver.get_workflow_instance(name, name)
    assert (got.workflow_name, got.instance_name, got.result) == (name, name, b'"r"')
    found = await driver.list_workflow_instances(ListWorkflowFilter(instance_name=name))
    assert {(i.workflow_name, i.instance_name) for i in found} == {(name, name), (WF, name)}
    await driver.cancel_workflow(WF, name)
    await driver.kill_workflow(WF, name, "killed")


async def test_data_survives_close_and_init(driver: Driver) -> None:
    await finished(driver, WF, "done")
    await driver.enqueue_workflow(WF, INST, b"1")

    while driver.is_open:
        await driver.close()
    await driver.close()  # closing a closed driver is a no-op
    await driver.init()

    assert (await driver.get_workflow_instance(WF, INST)).parameters == b"1"
    assert (await driver.get_workflow_instance(WF, "done")).result == b'"ok"'


async def test_init_and_close_are_reference_counted(driver: Driver) -> None:
    await driver.init()
    await driver.close()
    assert driver.is_open
    await driver.enqueue_workflow(WF, INST, None)
