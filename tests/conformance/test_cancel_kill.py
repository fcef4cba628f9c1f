"""Cancel (cooperative, via on_cancel) and kill (forced) through the Manager (BEHAVIOUR 2)."""

from __future__ import annotations

from typing import Any

import pytest

from cereal import Decision, WorkflowInstance, errors
from tests.conformance._executors import (
    INST,
    PROBE_WF,
    WF,
    AsyncBlocker,
    Completions,
    Flow,
    PlainBlocker,
    echo,
    register,
    stay_running,
    sync_point,
)
from tests.plugins.manager import MakeManager, eventually, wait_finished


async def running(manager: Any, instance: str = INST) -> bool:
    found = await manager.get_workflow_instance(WF, instance)
    return found.is_running() and found.get_payload() is not None


async def start_running(manager: Any, instance: str = INST) -> None:
    await manager.enqueue_workflow(WF, instance)
    await eventually(lambda: running(manager, instance), what=f"{instance} running")


async def test_cancel_runs_on_cancel_and_its_complete_keeps_the_result(
    make_manager: MakeManager,
) -> None:
    # Given a running instance whose on_cancel completes
    flow = Flow(stay_running, on_cancel=lambda w, ev: w.complete({"cancelled": True}))
    manager = register(make_manager(), {WF: flow})
    await manager.start()
    await start_running(manager)

    # When it is cancelled
    await manager.cancel_workflow(WF, INST)

    # Then on_cancel ran and its result is kept
    done = await wait_finished(manager, WF, INST)
    assert done.get_result() == {"cancelled": True}
    assert done.err() is None
    assert flow.count("cancel", INST) == 1


async def test_cancel_with_a_fail_decision_keeps_the_error(make_manager: MakeManager) -> None:
    # Given a running instance whose on_cancel fails
    flow = Flow(stay_running, on_cancel=lambda w, ev: w.fail("stopped by the operator"))
    manager = register(make_manager(), {WF: flow})
    await manager.start()
    await start_running(manager)

    # When it is cancelled
    await manager.cancel_workflow(WF, INST)

    # Then it failed with on_cancel's error
    done = await wait_finished(manager, WF, INST)
    assert str(done.err()) == "stopped by the operator"


async def test_cancel_with_continue_keeps_running_until_a_later_complete(
    make_manager: MakeManager,
) -> None:
    # Given an instance whose on_cancel continues the first time and completes the second
    def on_cancel(w: WorkflowInstance, ev: Any) -> Decision:
        seen = w.get_payload()["cancels"] + 1
        if seen == 1:
            return w.continue_({"state": "ignored a cancel", "cancels": seen})
        return w.complete({"cancels": seen})

    flow = Flow(lambda w, ev: w.continue_({"state": "waiting", "cancels": 0}), on_cancel=on_cancel)
    manager = register(make_manager(), {WF: flow})
    await manager.start()
    await start_running(manager)

    # When it is cancelled once
    await manager.cancel_workflow(WF, INST)

    # Then it keeps running with on_cancel's payload
    async def ignored_once() -> bool:
        found = await manager.get_workflow_instance(WF, INST)
        return found.get_payload() == {"state": "ignored a cancel", "cancels": 1}

    await eventually(ignored_once, what="first cancel handled")
    assert (await manager.get_workflow_instance(WF, INST)).is_running()

    # When it is cancelled again / Then the second on_cancel completes it
    await manager.cancel_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)
    assert done.get_result() == {"cancels": 2}
    assert flow.count("cancel", INST) == 2


async def test_cancels_after_on_cancel_ended_the_instance_vanish(
    make_manager: MakeManager,
) -> None:
    # Given an instance cancelled three times before any Manager processed it
    flow = Flow(stay_running, on_cancel=lambda w, ev: w.complete("cancelled"))
    manager = register(make_manager(), {WF: flow, PROBE_WF: Flow()})
    await manager.enqueue_workflow(WF, INST)
    for _ in range(3):
        await manager.cancel_workflow(WF, INST)

    # When the Manager processes its events
    await manager.start()
    done = await wait_finished(manager, WF, INST)
    await sync_point(manager)

    # Then on_start ran first, on_cancel once, and the other cancels vanished
    assert done.get_result() == "cancelled"
    assert [kind for kind, name in flow.calls if name == INST] == ["start", "cancel"]


async def test_cancel_of_an_unknown_or_finished_instance_raises_not_found(
    make_manager: MakeManager,
) -> None:
    manager = register(make_manager(), {WF: Flow()})
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await manager.cancel_workflow(WF, "never-enqueued")

    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await manager.cancel_workflow(WF, INST)


async def test_kill_finishes_with_killed_and_runs_no_callback(make_manager: MakeManager) -> None:
    # Given a running instance
    completions = Completions()
    flow = Flow(stay_running, on_cancel=lambda w, ev: w.complete("cancelled"))
    manager = register(make_manager(on_workflow_complete=completions), {WF: flow, PROBE_WF: Flow()})
    await manager.start()
    await start_running(manager)

    # When it is killed
    await manager.kill_workflow(WF, INST)

    # Then it is finished at once with the error "killed", and neither on_cancel nor the hook ran
    killed = await manager.get_workflow_instance(WF, INST)
    assert not killed.is_running()
    assert str(killed.err()) == "killed"
    with pytest.raises(errors.WorkflowFailedError, match=r"^killed$"):
        killed.get_result()
    await sync_point(manager)
    await eventually(lambda: "probe" in completions.instance_names(), what="probe completion")
    assert flow.count("cancel") == 0
    assert completions.instance_names() == ["probe"]


async def test_second_kill_raises_not_found(make_manager: MakeManager) -> None:
    # Given a killed instance
    manager = register(make_manager(), {WF: Flow(stay_running)})
    await manager.enqueue_workflow(WF, INST)
    await manager.kill_workflow(WF, INST)

    # When it is killed again / Then
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await manager.kill_workflow(WF, INST)
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await manager.kill_workflow(WF, "never-enqueued")


def enqueue_blocked(w: WorkflowInstance, ev: Any) -> Decision:
    w.enqueue_task("block", None)
    return w.continue_({"state": "task running"})


async def test_running_async_task_of_a_killed_workflow_is_cancelled_and_dropped(
    make_manager: MakeManager,
) -> None:
    # Given an instance whose async task is running
    blocker = AsyncBlocker()
    flow = Flow(enqueue_blocked)
    manager = register(make_manager(), {WF: flow, PROBE_WF: Flow()}, {"block": blocker})
    await manager.start()
    try:
        await manager.enqueue_workflow(WF, INST)
        await eventually(lambda: len(blocker.started) == 1, what="task started")

        # When the instance is killed
        await manager.kill_workflow(WF, INST)

        # Then the task gets CancelledError within about a heartbeat, and its result is dropped
        await eventually(lambda: len(blocker.cancelled) == 1, what="task cancelled")
    finally:
        blocker.release.set()
    await sync_point(manager)
    assert flow.count("task") == 0
    assert blocker.finished == []
    assert str((await manager.get_workflow_instance(WF, INST)).err()) == "killed"


async def test_running_plain_task_of_a_completed_workflow_sees_is_cancelled_and_is_dropped(
    make_manager: MakeManager,
) -> None:
    # Given an instance with a plain task running and another task that completes it
    blocker = PlainBlocker()

    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("block", None)
        return w.continue_({"state": "task running"})

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        return w.complete(ev.result.task_name)

    def on_cancel(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("finisher", None)
        return w.continue_({"state": "finishing"})

    flow = Flow(on_start, on_task_complete, on_cancel)
    manager = register(
        make_manager(), {WF: flow, PROBE_WF: Flow()}, {"block": blocker, "finisher": echo}
    )
    await manager.start()
    try:
        await manager.enqueue_workflow(WF, INST)
        await eventually(lambda: len(blocker.started) == 1, what="task started")

        # When the instance completes (after its finisher task) while the plain task runs
        await manager.cancel_workflow(WF, INST)
        done = await wait_finished(manager, WF, INST)
        assert done.get_result() == "finisher"

        # Then the plain task sees is_cancelled() turn true, and its result is dropped
        await eventually(lambda: len(blocker.saw_cancel) == 1, what="task saw the cancel")
    finally:
        blocker.release.set()
    await sync_point(manager)
    assert [ev.result.task_name for ev in flow.task_events(INST)] == ["finisher"]
