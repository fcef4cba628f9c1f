"""Workflow instances through the Manager (BEHAVIOUR 1): decisions, values, counts, lookups."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from cereal import Decision, WorkflowInstance, WorkflowInstanceStatus, errors
from tests.conformance._executors import (
    INST,
    PROBE_WF,
    WF,
    Completions,
    Flow,
    PlainBlocker,
    PlainFlow,
    echo,
    enqueue,
    is_running_with_payload,
    register,
    status_of,
    stay_running,
    summary,
    sync_point,
    wait_all_finished,
)
from tests.plugins.manager import MakeManager, eventually, wait_finished


@dataclass
class Order:
    customer: str
    quantity: int


async def test_simple_workflow_runs_its_tasks_and_completes_with_a_result(
    make_manager: MakeManager,
) -> None:
    # Given a workflow that doubles three numbers in tasks
    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        done = [*(w.get_payload() or []), ev.result.get()]
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(sorted(done))
        return w.continue_(done)

    flow = Flow(enqueue(("double", 1), ("double", 2), ("double", 3)), on_task_complete)
    manager = register(make_manager(), {WF: flow}, {"double": lambda t: t.get_parameters() * 2})
    await manager.start()

    # When it is enqueued
    await manager.enqueue_workflow(WF, INST)

    # Then it finishes with the tasks' results
    done = await wait_finished(manager, WF, INST)
    assert done.get_result() == [2, 4, 6]
    assert done.err() is None
    assert not done.is_running()


async def test_parameters_and_payload_round_trip_with_dataclass_decoding(
    make_manager: MakeManager,
) -> None:
    # Given a workflow that reads its parameters as a dataclass and keeps a payload
    seen: list[Any] = []

    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        seen.append(w.get_parameters(Order))
        seen.append(w.get_payload())
        w.enqueue_task("noop", None)
        return w.continue_({"step": 1, "tags": ["a", "b"], "ratio": 0.5})

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        seen.append(w.get_payload())
        seen.append(w.get_parameters())
        return w.complete({"ordered": w.get_parameters(Order).quantity})

    manager = register(make_manager(), {WF: Flow(on_start, on_task_complete)}, {"noop": echo})
    await manager.start()

    # When it is enqueued with a dataclass
    await manager.enqueue_workflow(WF, INST, Order("ann", 3))
    done = await wait_finished(manager, WF, INST)

    # Then the callbacks and the snapshot decode the same values
    assert seen == [
        Order("ann", 3),
        None,
        {"step": 1, "tags": ["a", "b"], "ratio": 0.5},
        {"customer": "ann", "quantity": 3},
    ]
    assert done.get_parameters(Order) == Order("ann", 3)
    assert done.get_parameters() == {"customer": "ann", "quantity": 3}
    assert done.get_result() == {"ordered": 3}


async def test_payload_is_visible_through_get_workflow_instance_while_running(
    make_manager: MakeManager,
) -> None:
    # Given a workflow that continues with a payload and waits on a blocked task
    blocker = PlainBlocker()

    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("block", None)
        return w.continue_({"stage": "waiting for block"})

    flow = Flow(on_start, lambda w, ev: w.complete("done"))
    manager = register(make_manager(), {WF: flow}, {"block": blocker})
    await manager.start()
    try:
        # When it is running
        await manager.enqueue_workflow(WF, INST, {"p": 1})
        await eventually(lambda: len(blocker.started) == 1, what="task started")

        # Then its payload and parameters are visible, and it has no result yet
        running = await manager.get_workflow_instance(WF, INST)
        assert running.is_running()
        assert running.get_payload() == {"stage": "waiting for block"}
        assert running.get_parameters() == {"p": 1}
        assert await status_of(manager, WF, INST) == WorkflowInstanceStatus.RUNNING
        with pytest.raises(errors.WorkflowNotCompleteError):
            running.get_result()
    finally:
        blocker.release.set()
    assert (await wait_finished(manager, WF, INST)).get_result() == "done"


async def test_task_counts_include_this_callbacks_tasks_and_this_events_completion(
    make_manager: MakeManager,
) -> None:
    # Given a workflow that records its counters around each enqueue
    counts: list[tuple[str, int, int]] = []

    def record(label: str, w: WorkflowInstance) -> None:
        counts.append((label, w.total_enqueued_tasks(), w.total_completed_tasks()))

    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        record("start-before", w)
        w.enqueue_task("t", 1)
        w.enqueue_task("t", 2)
        record("start-after", w)
        return w.continue_()

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        record("task", w)
        if w.total_completed_tasks() == 1:
            w.enqueue_task("t", 3)
            record("task-after-enqueue", w)
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete()
        return w.continue_()

    manager = register(make_manager(), {WF: Flow(on_start, on_task_complete)}, {"t": echo})
    await manager.start()

    # When it runs to the end
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)

    # Then each callback saw the stored counts plus its own enqueues and its own completion
    assert counts == [
        ("start-before", 0, 0),
        ("start-after", 2, 0),
        ("task", 2, 1),
        ("task-after-enqueue", 3, 1),
        ("task", 3, 2),
        ("task", 3, 3),
    ]


async def test_count_to_n_workflow(make_manager: MakeManager) -> None:
    # Given a workflow that counts to N one task at a time
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("inc", 0)
        return w.continue_()

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        value = ev.result.get()
        if value == w.get_parameters():
            return w.complete({"value": value, "completed": w.total_completed_tasks()})
        w.enqueue_task("inc", value)
        return w.continue_()

    manager = register(
        make_manager(),
        {WF: Flow(on_start, on_task_complete)},
        {"inc": lambda t: t.get_parameters() + 1},
    )
    await manager.start()

    # When asked to count to 7
    await manager.enqueue_workflow(WF, INST, 7)

    # Then it ends at 7 after 7 tasks
    done = await wait_finished(manager, WF, INST)
    assert done.get_result() == {"value": 7, "completed": 7}


async def test_fail_decision_fails_the_instance_with_its_text(make_manager: MakeManager) -> None:
    # Given a workflow that fails at once
    flow = Flow(lambda w, ev: w.fail("the input was rejected"))
    manager = register(make_manager(), {WF: flow})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then get_result raises WorkflowFailedError with the text, and err() is set
    with pytest.raises(errors.WorkflowFailedError) as failure:
        done.get_result()
    assert str(failure.value) == "the input was rejected"
    assert isinstance(done.err(), errors.WorkflowFailedError)
    assert str(done.err()) == "the input was rejected"


async def test_complete_with_tasks_enqueued_in_the_same_step_fails(
    make_manager: MakeManager,
) -> None:
    # Given a workflow that enqueues a task and completes in one callback
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("t", None)
        return w.complete("should not complete")

    manager = register(make_manager(), {WF: Flow(on_start)}, {"t": echo})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then it failed with the original's message
    assert str(done.err()) == "enqueue_task and complete called in same workflow step"


async def test_raising_callback_fails_the_instance_once_with_type_and_message(
    make_manager: MakeManager,
) -> None:
    # Given a workflow whose on_start raises
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        raise ValueError("bad input here")

    flow = Flow(on_start)
    manager = register(make_manager(), {WF: flow, PROBE_WF: Flow()})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)
    await sync_point(manager)

    # Then it failed with "<ExceptionType>: <message>" and the event was not redelivered
    assert str(done.err()) == "ValueError: bad input here"
    assert flow.count("start", INST) == 1


async def test_callback_returning_none_fails_with_a_type_error_text(
    make_manager: MakeManager,
) -> None:
    # Given a workflow whose on_start forgets to return a decision
    flow = Flow(lambda w, ev: None)
    manager = register(make_manager(), {WF: flow, PROBE_WF: Flow()})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)
    await sync_point(manager)

    # Then it failed with a TypeError text, once
    assert str(done.err()).startswith("TypeError")
    assert flow.count("start", INST) == 1


async def test_fail_with_none_uses_a_generic_text(make_manager: MakeManager) -> None:
    # Given a workflow that fails with no error
    manager = register(make_manager(), {WF: Flow(lambda w, ev: w.fail(None))})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then it failed with some non-empty generic text
    assert str(done.err() or "") not in ("", "None")


async def test_duplicate_enqueue_while_running_raises_and_keeps_parameters(
    make_manager: MakeManager,
) -> None:
    # Given a running instance
    manager = register(make_manager(), {WF: Flow(stay_running)})
    await manager.start()
    await manager.enqueue_workflow(WF, INST, {"v": 1})
    await eventually(lambda: is_running_with_payload(manager, WF, INST), what="running")

    # When the same names are enqueued again
    with pytest.raises(errors.WorkflowInstanceExistsError):
        await manager.enqueue_workflow(WF, INST, {"v": 2})

    # Then the live instance keeps its parameters
    assert (await manager.get_workflow_instance(WF, INST)).get_parameters() == {"v": 1}


async def test_reenqueue_after_finish_creates_a_fresh_run(make_manager: MakeManager) -> None:
    # Given an instance that finished
    flow = Flow()  # completes with its parameters
    manager = register(make_manager(), {WF: flow})
    await manager.start()
    await manager.enqueue_workflow(WF, INST, "first")
    assert (await wait_finished(manager, WF, INST)).get_result() == "first"

    # When the same names are enqueued again
    await manager.enqueue_workflow(WF, INST, "second")

    # Then a new run starts and finishes with its own parameters
    await eventually(lambda: flow.count("start", INST) == 2, what="second start")
    done = await wait_finished(manager, WF, INST)
    assert done.get_result() == "second"
    assert done.get_parameters() == "second"


async def test_same_instance_name_under_two_workflow_names(make_manager: MakeManager) -> None:
    # Given two workflows, each completing with its own name
    manager = register(
        make_manager(),
        {
            "wf-a": Flow(lambda w, ev: w.complete(f"a:{w.get_parameters()}")),
            "wf-b": Flow(lambda w, ev: w.complete(f"b:{w.get_parameters()}")),
        },
    )

    # When the same instance name is enqueued under both (both live at once)
    await manager.enqueue_workflow("wf-a", INST, 1)
    await manager.enqueue_workflow("wf-b", INST, 2)
    await manager.start()

    # Then both run independently
    assert (await wait_finished(manager, "wf-a", INST)).get_result() == "a:1"
    assert (await wait_finished(manager, "wf-b", INST)).get_result() == "b:2"


async def test_completing_with_pending_tasks_abandons_them(make_manager: MakeManager) -> None:
    # Given a workflow that completes on its first task result, with other tasks still pending
    blocker = PlainBlocker()

    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("fast", "fast")
        w.enqueue_task("block", "block")
        return w.continue_()

    flow = Flow(on_start, lambda w, ev: w.complete(summary(ev.result)))
    manager = register(
        make_manager(), {WF: flow, PROBE_WF: Flow()}, {"fast": echo, "block": blocker}
    )
    await manager.start()
    try:
        # When it runs to the end while the blocked task still runs
        await manager.enqueue_workflow(WF, INST)
        done = await wait_finished(manager, WF, INST)
    finally:
        blocker.release.set()
    await eventually(lambda: len(blocker.finished) == len(blocker.started), what="blocker ended")
    await sync_point(manager)

    # Then on_task_complete fired only for the task that finished first
    assert done.get_result()["task"] == "fast"
    assert flow.count("task", INST) == 1


async def test_on_task_complete_fires_exactly_once_per_task(make_manager: MakeManager) -> None:
    # Given a workflow fanning out 50 tasks
    numbers = list(range(50))
    flow = Flow(enqueue(*(("echo", n) for n in numbers)))
    manager = register(
        make_manager(), {WF: flow}, {"echo": lambda t: t.get_parameters()}, workers=5
    )
    await manager.start()

    # When it runs to the end
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST, timeout=60)

    # Then each task was reported exactly once
    results = done.get_result()
    assert sorted(entry["result"] for entry in results) == numbers
    assert sorted(ev.result.get() for ev in flow.task_events(INST)) == numbers


async def test_list_workflow_instances_filters_and_prefers_the_live_run(
    make_manager: MakeManager,
) -> None:
    # Given a finished pair, a pair finished then re-enqueued (live), and a live pair elsewhere
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        if w.get_parameters() == "finish":
            return w.complete("result")
        return w.continue_("payload")

    flow = Flow(on_start)
    manager = register(make_manager(), {"wf-a": flow, "wf-b": flow})
    await manager.start()
    for workflow, instance, mode in [("wf-a", "done", "finish"), ("wf-a", "again", "finish")]:
        await manager.enqueue_workflow(workflow, instance, mode)
    await manager.enqueue_workflow("wf-b", "done", "stay")
    await wait_all_finished(manager, "wf-a", ["done", "again"])
    await manager.enqueue_workflow("wf-a", "again", "stay")
    for workflow, instance in [("wf-a", "again"), ("wf-b", "done")]:
        await eventually(lambda w=workflow, i=instance: is_running_with_payload(manager, w, i))

    async def pairs(**where: Any) -> set[tuple[str, str]]:
        found = await manager.list_workflow_instances(**where)
        return {(entry.workflow_name, entry.instance_name) for entry in found}

    # When listing with each filter / Then
    assert await pairs() == {("wf-a", "done"), ("wf-a", "again"), ("wf-b", "done")}
    assert len(await manager.list_workflow_instances()) == 3
    assert await pairs(workflow_name="wf-a") == {("wf-a", "done"), ("wf-a", "again")}
    assert await pairs(instance_name="done") == {("wf-a", "done"), ("wf-b", "done")}
    assert await pairs(is_running=True) == {("wf-a", "again"), ("wf-b", "done")}
    assert await pairs(is_running=False) == {("wf-a", "done")}
    assert await pairs(workflow_name="wf-b", is_running=False) == set()
    assert await pairs(workflow_name="nothing-here") == set()

    listed = await manager.list_workflow_instances()
    by_pair = {(e.workflow_name, e.instance_name): e for e in listed}
    finished, live = by_pair[("wf-a", "done")], by_pair[("wf-a", "again")]
    assert finished.status == WorkflowInstanceStatus.COMPLETED
    assert not finished.is_running() and finished.get_result() == "result"
    assert finished.get_parameters() == "finish"
    assert finished.payload is None and finished.err is None
    assert live.is_running()
    assert live.status == WorkflowInstanceStatus.RUNNING
    assert live.get_parameters() == "stay"
    assert live.get_payload() == "payload"
    assert live.result is None and live.err is None


async def test_get_workflow_instance_of_unknown_names_raises_not_found(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await manager.get_workflow_instance(WF, "never-enqueued")


async def test_on_workflow_complete_fires_for_complete_fail_and_raising_callback(
    make_manager: MakeManager,
) -> None:
    # Given workflows that complete, fail, and raise
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        mode = w.get_parameters()
        if mode == "raise":
            raise RuntimeError("boom")
        return w.complete("ok") if mode == "complete" else w.fail("failed")

    completions = Completions()
    manager = register(make_manager(on_workflow_complete=completions), {WF: Flow(on_start)})
    await manager.start()

    # When each runs
    for mode in ("complete", "fail", "raise"):
        await manager.enqueue_workflow(WF, mode, mode)

    # Then the hook saw each end once, with the instance that ended
    await eventually(lambda: len(completions.events) >= 3, what="three completions")
    assert sorted(completions.instance_names()) == ["complete", "fail", "raise"]
    assert {event.instance.workflow_name for event in completions.events} == {WF}


async def test_async_and_plain_callbacks_both_work(make_manager: MakeManager) -> None:
    # Given one workflow with plain methods and one with async methods
    async def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("t", "async")
        return w.continue_()

    async def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        return w.complete(f"{ev.result.get()} done")

    plain = PlainFlow()
    manager = register(
        make_manager(),
        {"plain": plain, "async": Flow(on_start, on_task_complete)},
        {"t": lambda t: t.get_parameters()},
    )
    await manager.start()

    # When both run
    await manager.enqueue_workflow("plain", INST)
    await manager.enqueue_workflow("async", INST)

    # Then both complete
    assert (await wait_finished(manager, "plain", INST)).get_result() == "plain done"
    assert (await wait_finished(manager, "async", INST)).get_result() == "async done"
    assert plain.threads and plain.threads[0] is not threading.current_thread()


async def test_callback_raising_cancelled_error_fails_its_instance_and_the_runner_goes_on(
    make_manager: MakeManager,
) -> None:
    # Given an async on_start that raises CancelledError of its own (not a stop)
    async def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        raise asyncio.CancelledError("gave up waiting")

    flow = Flow(on_start)
    manager = register(make_manager(), {WF: flow, "after": Flow()})
    await manager.start()

    # When it runs, and another workflow is enqueued after it
    await manager.enqueue_workflow(WF, INST)
    failed = await wait_finished(manager, WF, INST)
    await manager.enqueue_workflow("after", INST, {"ok": True})
    after = await wait_finished(manager, "after", INST)

    # Then the callback failed its instance like any raise, and the runner still works
    assert str(failed.err()) == "CancelledError: gave up waiting"
    assert flow.count("start", INST) == 1
    assert after.get_result() == {"ok": True}
