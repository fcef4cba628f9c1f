"""Dead letters: tasks that ended failed or lost are listed, and requeued into their live run.

Every case runs on every driver setup (memory, SQLite, PostgreSQL, gRPC).
"""

from __future__ import annotations

from typing import Any

import pytest

from cereal import Decision, Manager, RequeueOutcome, Task, TaskStatus, WorkflowInstance
from cereal.drivers import Driver
from cereal.models import FailureDetails, HistoryRetention, NewTask
from tests.conformance._driver_helpers import (
    ODD_NAMES,
    WF,
    eventually,
    finished,
    started,
    sweep,
    take,
)
from tests.conformance._executors import INST, Flow, enqueue, register
from tests.plugins.manager import MakeManager, wait_finished

BOOM = FailureDetails("boom", "RuntimeError", "Traceback...\nRuntimeError: boom\n")


async def _fail_one(driver: Driver, task_name: str = "t") -> str:
    """Claim the next ``task_name`` task and fail it with :data:`BOOM`; its task id."""
    [(task, completer)] = await driver.dequeue_tasks(task_name, 1, task_expiry=3600)
    await completer.fail_with_details(BOOM)
    return task.metadata.task_id


async def test_a_failed_task_is_listed_with_its_error_and_a_success_is_not(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b'{"n": 1}'), NewTask("t", b'{"n": 2}')])
    [(_, ok)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    await ok.succeed(b"1")
    task_id = await _fail_one(driver)

    [dead] = await driver.list_dead_tasks()
    assert dead.task_id == task_id
    assert (dead.task_name, dead.workflow_name, dead.instance_name) == ("t", WF, "inst")
    assert dead.status is TaskStatus.FAILED
    assert (dead.error_text, dead.error_type) == ("boom", "RuntimeError")
    assert dead.error_traceback is not None and "RuntimeError: boom" in dead.error_traceback
    assert dead.get_parameters() == {"n": 2}
    assert dead.attempts == 1
    assert dead.run_live
    assert dead.died_at >= dead.enqueued_at


async def test_a_lost_task_is_listed_as_lost(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", None)])
    await driver.dequeue_tasks("t", 1, task_expiry=0.05)

    async def lost() -> bool:
        await sweep(driver, 0.05)
        return bool(await driver.list_dead_tasks())

    await eventually(lost, what="the expired lease settled as LOST")
    [dead] = await driver.list_dead_tasks()
    assert dead.status is TaskStatus.LOST
    assert dead.error_type is None


async def test_requeue_queues_a_new_task_whose_result_reaches_the_run(driver: Driver) -> None:
    await started(driver, tasks=[NewTask("t", b'{"n": 7}')])
    task_id = await _fail_one(driver)
    failed_event, completer = await take(driver)
    async with completer:
        assert failed_event.task_result is not None
        assert failed_event.task_result.status is TaskStatus.FAILED
        await completer.continue_(b'"waiting"', [])

    assert await driver.requeue_dead_tasks([task_id]) == {task_id: RequeueOutcome.REQUEUED}
    assert await driver.list_dead_tasks() == []
    [queued] = await driver.list_tasks("t")
    assert queued.task_id != task_id
    assert (queued.state, queued.attempt, queued.get_parameters()) == ("queued", 0, {"n": 7})

    [(_, again)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    await again.succeed(b'"second time lucky"')
    event, completer = await take(driver)
    async with completer:
        assert event.task_result is not None
        assert event.task_result.status is TaskStatus.SUCCESS
        assert event.task_result.result == b'"second time lucky"'
        assert (event.enqueued_task_count, event.completed_task_count) == (2, 2)
        await completer.done(None)

    # requeued once: a second requeue, and an id never seen, find nothing
    assert await driver.requeue_dead_tasks([task_id, "987654321"]) == {
        task_id: RequeueOutcome.NOT_FOUND,
        "987654321": RequeueOutcome.NOT_FOUND,
    }


async def test_a_dead_task_of_a_finished_run_stays_listed_and_is_not_requeued(
    driver: Driver,
) -> None:
    await started(driver, tasks=[NewTask("t", None)])
    task_id = await _fail_one(driver)
    _, completer = await take(driver)
    async with completer:
        await completer.fail("a task failed")

    [dead] = await driver.list_dead_tasks()
    assert not dead.run_live
    assert await driver.requeue_dead_tasks([task_id]) == {task_id: RequeueOutcome.RUN_FINISHED}
    assert [d.task_id for d in await driver.list_dead_tasks()] == [task_id]
    assert await driver.list_tasks("t") == []


async def test_a_killed_run_leaves_its_dead_tasks_listed_but_not_requeueable(
    driver: Driver,
) -> None:
    await started(driver, tasks=[NewTask("t", None)])
    task_id = await _fail_one(driver)
    await driver.kill_workflow(WF, "inst", "killed")
    assert await driver.requeue_dead_tasks([task_id]) == {task_id: RequeueOutcome.RUN_FINISHED}


async def test_trimming_a_finished_run_trims_its_dead_tasks(driver: Driver) -> None:
    await started(driver, "wf", "old", tasks=[NewTask("t", None)])
    await _fail_one(driver)
    _, completer = await take(driver)
    async with completer:
        await completer.fail("a task failed")
    await started(driver, "wf", "live", tasks=[NewTask("t", None)])
    live_id = await _fail_one(driver)

    await driver.trim_history(HistoryRetention(max_rows=0, margin_rows=0))

    # the finished run's dead task went with its history; the live run's stays
    assert [d.task_id for d in await driver.list_dead_tasks()] == [live_id]


async def test_filters_and_pages_newest_first(driver: Driver) -> None:
    for instance in ("a", "b"):
        await started(driver, "wf", instance, tasks=[NewTask("t", None), NewTask("u", None)])
    await started(driver, "other", "c", tasks=[NewTask("t", None)])
    ids = [await _fail_one(driver, "t") for _ in range(3)] + [
        await _fail_one(driver, "u") for _ in range(2)
    ]
    everything = await driver.list_dead_tasks()
    assert [d.task_id for d in everything] == sorted(ids, key=int, reverse=True)
    assert {d.task_name for d in await driver.list_dead_tasks(task_name="u")} == {"u"}
    assert len(await driver.list_dead_tasks(task_name="t")) == 3
    assert len(await driver.list_dead_tasks(workflow_name="other")) == 1
    assert len(await driver.list_dead_tasks(task_name="t", workflow_name="wf")) == 2

    walked: list[str] = []
    page = await driver.list_dead_tasks(limit=2)
    while page:
        walked.extend(d.task_id for d in page)
        page = await driver.list_dead_tasks(limit=2, before=page[-1].task_id)
    assert walked == [d.task_id for d in everything]


async def test_any_valid_name_round_trips(driver: Driver) -> None:
    for name in ODD_NAMES:
        await started(driver, name, name, tasks=[NewTask(name, None)])
        task_id = await _fail_one(driver, name)
        [dead] = await driver.list_dead_tasks(task_name=name, workflow_name=name)
        assert (dead.task_id, dead.task_name, dead.workflow_name, dead.instance_name) == (
            task_id,
            name,
            name,
            name,
        )


class FailsFirst:
    """A task executor that raises on its first run and returns ``"fixed"`` after."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, task: Task) -> str:
        self.runs += 1
        if self.runs == 1:
            raise ValueError("bad input, fixed by hand")
        return "fixed"


def wait_for_a_success(w: WorkflowInstance, ev: Any) -> Decision:
    """Complete with the first successful result; a failure keeps the run waiting."""
    if ev.result.err() is not None:
        return w.continue_({"failures": (w.get_payload() or {}).get("failures", 0) + 1})
    return w.complete({"result": ev.result.get(), **(w.get_payload() or {})})


async def test_a_requeued_task_reaches_its_workflow_through_the_manager(
    make_manager: MakeManager,
) -> None:
    # Given a run whose only task fails for good (one attempt) and which waits for a success
    executor = FailsFirst()
    manager = register(
        make_manager(),
        {WF: Flow(enqueue(("fragile", {"order": 12})), wait_for_a_success)},
        {"fragile": executor},
    )
    await manager.start()
    await manager.enqueue_workflow(WF, INST)

    async def died() -> bool:
        return bool(await manager.list_dead_tasks(task_name="fragile"))

    await eventually(died, what="the task's failure listed as a dead letter")
    [dead] = await manager.list_dead_tasks()
    assert dead.error_type == "ValueError"
    assert dead.error_text == "bad input, fixed by hand"
    assert dead.error_traceback is not None and "ValueError" in dead.error_traceback

    # When it is requeued
    assert await manager.requeue_dead_tasks([dead.task_id]) == {
        dead.task_id: RequeueOutcome.REQUEUED
    }

    # Then the new run of the task reaches the workflow, which completes with its result
    done = await wait_finished(manager, WF, INST)
    assert done.get_result() == {"result": "fixed", "failures": 1}
    assert executor.runs == 2
    assert await manager.list_dead_tasks() == []


@pytest.mark.parametrize(
    ("task_ids", "error", "words"),
    [
        ([], ValueError, "no task id given"),
        ("12", TypeError, "sequence"),
        ([12], TypeError, "str"),
        (["x1"], ValueError, "not a task id"),
        (["-1"], ValueError, "not a task id"),
        (["1" * 30], ValueError, "not a task id"),
        ([str(n) for n in range(1001)], ValueError, "at most 1000"),
    ],
    ids=repr,
)
async def test_the_manager_refuses_bad_requeue_ids(
    driver: Driver, task_ids: Any, error: type[Exception], words: str
) -> None:
    await started(driver, tasks=[NewTask("t", None)])
    task_id = await _fail_one(driver)
    with pytest.raises(error, match=words):
        await Manager(driver).requeue_dead_tasks(task_ids)
    assert [d.task_id for d in await driver.list_dead_tasks()] == [task_id]


@pytest.mark.parametrize(
    ("arguments", "error", "field"),
    [
        ({"task_name": ""}, ValueError, "task name"),
        ({"workflow_name": "w\x00"}, ValueError, "workflow name"),
        ({"limit": 0}, ValueError, "limit"),
        ({"before": "x"}, ValueError, "before"),
        ({"before": 4}, TypeError, "before"),
    ],
    ids=repr,
)
async def test_the_manager_refuses_bad_listing_arguments(
    driver: Driver, arguments: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        await Manager(driver).list_dead_tasks(**arguments)


# ---- failed runs ------------------------------------------------------------------


async def test_failed_runs_are_listed_newest_first_with_their_error(driver: Driver) -> None:
    await finished(driver, "wf", "ok")
    await finished(driver, "wf", "bad-1", error="first", parameters=b'{"n": 1}')
    await finished(driver, "other", "bad-2", error="second")
    await started(driver, "wf", "running")

    runs = await driver.list_failed_runs()
    assert [(r.workflow_name, r.instance_name, r.error_text) for r in runs] == [
        ("other", "bad-2", "second"),
        ("wf", "bad-1", "first"),
    ]
    assert runs[1].get_parameters() == {"n": 1}
    assert runs[1].ended_at >= runs[1].started_at
    assert int(runs[0].run_id) > int(runs[1].run_id)
    assert [r.instance_name for r in await driver.list_failed_runs(workflow_name="wf")] == ["bad-1"]
    [newest] = await driver.list_failed_runs(limit=1)
    assert newest.instance_name == "bad-2"
    older = await driver.list_failed_runs(limit=1, before=newest.run_id)
    assert [r.instance_name for r in older] == ["bad-1"]


async def test_a_killed_run_is_a_failed_run(driver: Driver) -> None:
    await started(driver, "wf", "doomed")
    await driver.kill_workflow("wf", "doomed", "killed")
    [run] = await driver.list_failed_runs()
    assert (run.instance_name, run.error_text) == ("doomed", "killed")


async def test_requeue_starts_a_failed_run_again_once(driver: Driver) -> None:
    await finished(driver, "wf", "bad", error="boom", parameters=b'{"n": 5}')
    [run] = await driver.list_failed_runs()

    assert await driver.requeue_failed_runs([run.run_id]) == {run.run_id: RequeueOutcome.REQUEUED}
    event, completer = await take(driver)
    async with completer:
        assert event.instance.instance_name == "bad"
        assert event.instance.parameters == b'{"n": 5}'
        await completer.done(b'"fine now"')
    # requeued: no longer listed, and a second requeue finds nothing
    assert await driver.list_failed_runs() == []
    assert await driver.requeue_failed_runs([run.run_id, "99999"]) == {
        run.run_id: RequeueOutcome.NOT_FOUND,
        "99999": RequeueOutcome.NOT_FOUND,
    }
    assert (await driver.get_workflow_instance("wf", "bad")).result == b'"fine now"'


async def test_a_failed_run_whose_names_are_live_is_left_alone(driver: Driver) -> None:
    await finished(driver, "wf", "bad", error="boom")
    [run] = await driver.list_failed_runs()
    await started(driver, "wf", "bad")

    assert await driver.requeue_failed_runs([run.run_id]) == {run.run_id: RequeueOutcome.RUN_LIVE}
    assert [r.run_id for r in await driver.list_failed_runs()] == [run.run_id]


async def test_a_completed_run_is_not_found_by_requeue(driver: Driver) -> None:
    await finished(driver, "wf", "ok")
    await finished(driver, "wf", "bad", error="boom")
    [bad] = await driver.list_failed_runs()
    # the completed run's id is the failed one's minus one in every store: both are runs
    completed_id = str(int(bad.run_id) - 1)
    assert await driver.requeue_failed_runs([completed_id]) == {
        completed_id: RequeueOutcome.NOT_FOUND
    }


async def test_the_manager_requeues_a_failed_run_which_then_completes(
    make_manager: MakeManager,
) -> None:
    # Given a workflow that fails while its input is bad, and completes once it is fixed
    fixed: list[bool] = []

    def on_start(w: WorkflowInstance, ev: object) -> Decision:
        if not fixed:
            return w.fail("the input was bad")
        return w.complete({"order": w.get_parameters()["order"], "done": True})

    manager = register(make_manager(), {WF: Flow(on_start)})
    await manager.start()
    await manager.enqueue_workflow(WF, INST, {"order": 3})

    async def failed() -> bool:
        return bool(await manager.list_failed_runs(workflow_name=WF))

    await eventually(failed, what="the failed run listed")
    [run] = await manager.list_failed_runs()
    assert run.error_text == "the input was bad"

    # When the cause is fixed and the run requeued
    fixed.append(True)
    assert await manager.requeue_failed_runs([run.run_id]) == {run.run_id: RequeueOutcome.REQUEUED}

    # Then a new run with the same parameters completes
    done = await wait_finished(manager, WF, INST)
    assert done.get_result() == {"order": 3, "done": True}
    assert await manager.list_failed_runs() == []


async def test_the_manager_refuses_bad_run_ids(driver: Driver) -> None:
    with pytest.raises(ValueError, match="not a run id"):
        await Manager(driver).requeue_failed_runs(["r1"])
    with pytest.raises(ValueError, match="no run id given"):
        await Manager(driver).requeue_failed_runs([])
    with pytest.raises(ValueError, match="run id"):
        await Manager(driver).list_failed_runs(before="r1")
