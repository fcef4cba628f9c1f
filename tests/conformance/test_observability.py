"""Failure details, traceparents and queue depths (issue 10), on every driver."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cereal import Decision, Task, TaskStatus, WorkflowInstance
from cereal.drivers.base import Driver
from cereal.models import MAX_TRACEBACK_CHARS, FailureDetails, NewTask
from tests.conformance._executors import INST, WF, Flow, enqueue, register
from tests.plugins.manager import MakeManager, wait_finished


class DiskFull(Exception):
    """A user exception with a module-qualified name."""


def _nested_failure(depth: int) -> None:
    if depth == 0:
        raise DiskFull("disk full")
    _nested_failure(depth - 1)


def failure_details(w: WorkflowInstance, ev: Any) -> Decision:
    result = ev.result
    return w.complete(
        {
            "status": str(result.status),
            "err": str(result.err()),
            "error_type": result.error_type,
            "error_traceback": result.error_traceback,
        }
    )


async def test_failed_task_keeps_exception_type_and_traceback(make_manager: MakeManager) -> None:
    # Given a task executor that raises a user exception deep in its own calls
    def explode(task: Task) -> None:
        _nested_failure(3)

    manager = register(make_manager(), {WF: Flow(enqueue(("boom", None)), failure_details)}, {
        "boom": explode
    })  # fmt: skip
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    seen = (await wait_finished(manager, WF, INST)).get_result()

    # Then the workflow sees the unchanged text, plus the qualified type and the traceback
    assert seen["status"] == str(TaskStatus.FAILED)
    assert seen["err"] == "disk full"
    assert seen["error_type"] == f"{__name__}.DiskFull"
    traceback = seen["error_traceback"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert "_nested_failure" in traceback
    assert traceback.rstrip().endswith("DiskFull: disk full")


async def test_traceback_is_bounded_to_its_end(make_manager: MakeManager) -> None:
    # Given a task failing with a message far longer than the traceback bound
    def explode(task: Task) -> None:
        raise ValueError("x" * (MAX_TRACEBACK_CHARS * 2) + "-the-end")

    manager = register(make_manager(), {WF: Flow(enqueue(("boom", None)), failure_details)}, {
        "boom": explode
    })  # fmt: skip
    await manager.start()

    await manager.enqueue_workflow(WF, INST)
    seen = (await wait_finished(manager, WF, INST)).get_result()

    # Then the stored traceback keeps its last characters only; the text is whole
    assert seen["error_type"] == "ValueError"
    assert len(seen["error_traceback"]) == MAX_TRACEBACK_CHARS
    assert seen["error_traceback"].rstrip().endswith("-the-end")
    assert seen["err"].endswith("-the-end") and len(seen["err"]) > MAX_TRACEBACK_CHARS


async def test_other_outcomes_have_no_failure_details(make_manager: MakeManager) -> None:
    # Given a succeeding task and a task that times out (a failure that raised nothing)
    async def slow(task: Task) -> None:
        import asyncio

        await asyncio.Event().wait()

    manager = make_manager()
    register(manager, {WF: Flow(enqueue(("ok", None)), failure_details),
                       "wf-2": Flow(enqueue(("slow", None)), failure_details)}, {})  # fmt: skip
    manager.register_task_executor("ok", lambda task: 1)
    manager.register_task_executor("slow", slow, timeout=0.05)
    await manager.start()

    await manager.enqueue_workflow(WF, INST)
    await manager.enqueue_workflow("wf-2", INST)
    ok = (await wait_finished(manager, WF, INST)).get_result()
    timed_out = (await wait_finished(manager, "wf-2", INST)).get_result()

    assert (ok["error_type"], ok["error_traceback"]) == (None, None)
    assert timed_out["status"] == str(TaskStatus.FAILED)
    assert (timed_out["error_type"], timed_out["error_traceback"]) == (None, None)


async def test_failure_is_logged_once_at_warning_with_its_story(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a failing task and a succeeding one in two workflows
    def explode(task: Task) -> None:
        _nested_failure(1)

    manager = register(
        make_manager(),
        {WF: Flow(enqueue(("boom", None)), failure_details),
         "wf-ok": Flow(enqueue(("fine", None)), failure_details)},
        {"boom": explode, "fine": lambda task: "done"},
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger="cereal")
    await manager.start()

    await manager.enqueue_workflow(WF, INST)
    await manager.enqueue_workflow("wf-ok", INST)
    await wait_finished(manager, WF, INST)
    await wait_finished(manager, "wf-ok", INST)
    await manager.stop()

    # Then one WARNING names the task, its instance, the exception type, text and traceback
    failed = [r for r in caplog.records if getattr(r, "event", None) == "task_failed"]
    assert len(failed) == 1
    record = failed[0]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"task boom of {WF}/{INST} failed" in message
    assert f"{__name__}.DiskFull: disk full" in message
    assert "Traceback (most recent call last):" in message and "_nested_failure" in message
    # and each finished task and workflow is logged at INFO with its duration
    succeeded = [r for r in caplog.records if getattr(r, "event", None) == "task_succeeded"]
    assert [(r.levelno, r.task_name) for r in succeeded] == [(logging.INFO, "fine")]  # type: ignore[attr-defined]
    assert isinstance(succeeded[0].duration, float)  # type: ignore[attr-defined]
    completed = [r for r in caplog.records if getattr(r, "event", None) == "workflow_completed"]
    assert sorted(r.workflow_name for r in completed) == sorted([WF, "wf-ok"])  # type: ignore[attr-defined]
    assert all(r.levelno == logging.INFO and " completed in " in r.getMessage() for r in completed)


async def test_raising_callback_is_logged_with_its_traceback(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(w: WorkflowInstance, ev: Any) -> Decision:
        _nested_failure(0)
        raise AssertionError("unreachable")

    manager = register(make_manager(), {WF: Flow(broken)}, {})
    caplog.set_level(logging.INFO, logger="cereal")
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)
    await manager.stop()

    raised = [r for r in caplog.records if getattr(r, "event", None) == "callback_failed"]
    assert len(raised) == 1 and raised[0].exc_info is not None
    assert isinstance(raised[0].exc_info[1], DiskFull)
    failed = [r for r in caplog.records if getattr(r, "event", None) == "workflow_failed"]
    assert len(failed) == 1 and "DiskFull: disk full" in failed[0].getMessage()


# ---- driver level ----------------------------------------------------------------------


async def _claim_one(driver: Driver, task_name: str) -> Any:
    claimed = await driver.dequeue_tasks(task_name, 1)
    assert len(claimed) == 1
    return claimed[0]


async def _start_instance(driver: Driver, workflow: str, tasks: list[NewTask]) -> None:
    await driver.enqueue_workflow(workflow, INST, None)
    [(_, completer)] = await driver.claim_workflows([workflow])
    await completer.continue_(None, tasks)
    await completer.close()


async def test_driver_stores_failure_details_and_traceparent(driver: Driver) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await _start_instance(driver, WF, [NewTask("t", None, traceparent=traceparent),
                                       NewTask("u", None)])  # fmt: skip

    data, completer = await _claim_one(driver, "t")
    assert data.metadata.traceparent == traceparent
    other, other_completer = await _claim_one(driver, "u")
    assert other.metadata.traceparent is None

    await completer.fail_with_details(FailureDetails("boom", "pkg.Boom", "Traceback...\nBoom"))
    await other_completer.fail("plain failure")

    [(events, wf_completer)] = await driver.claim_workflows([WF], max_events=10)
    results = {event.task_result.task_name: event.task_result for event in events
               if event.task_result is not None}  # fmt: skip
    assert results["t"].status is TaskStatus.FAILED
    assert (results["t"].error_text, results["t"].error_type, results["t"].error_traceback) == (
        "boom",
        "pkg.Boom",
        "Traceback...\nBoom",
    )
    assert (results["u"].error_text, results["u"].error_type) == ("plain failure", None)
    assert results["u"].error_traceback is None
    await wf_completer.close()


async def test_queue_depths_count_ready_work_only(driver: Driver) -> None:
    from datetime import timedelta

    from cereal.checks.times import utcnow

    assert await driver.queue_depths() == []
    # Given two queued tasks of "t", one of "u", one "t" not due yet and one "v" claimed
    later = utcnow() + timedelta(hours=1)
    await _start_instance(driver, WF, [NewTask("t"), NewTask("t"), NewTask("u"),
                                       NewTask("t", start_after=later), NewTask("v")])  # fmt: skip
    await _claim_one(driver, "v")
    # and instances: one ready ("wf-a" x2), one claimed ("wf-b")
    before = utcnow()
    await driver.enqueue_workflow("wf-a", "one", None)
    await driver.enqueue_workflow("wf-a", "two", None)
    await driver.enqueue_workflow("wf-b", "one", None)
    [(_, held)] = await driver.claim_workflows(["wf-b"])

    depths = {(d.kind, d.name): d for d in await driver.queue_depths()}

    # Then only ready, unclaimed work counts, each with its oldest item's time
    assert {key: d.depth for key, d in depths.items()} == {
        ("task", "t"): 2,
        ("task", "u"): 1,
        ("workflow", "wf-a"): 2,
    }
    for depth in depths.values():
        assert depth.oldest_at is not None and depth.oldest_at.tzinfo is not None
    slack = timedelta(seconds=5)  # PostgreSQL's clock vs this host's
    assert depths[("workflow", "wf-a")].oldest_at >= before - slack  # type: ignore[operator]
    await held.close()


async def test_failed_run_keeps_what_failed_it(make_manager: MakeManager) -> None:
    # Given four ways to fail: a raising callback, a re-raised task failure,
    # w.fail(exception) and w.fail(text)
    def raising(w: WorkflowInstance, ev: Any) -> Decision:
        _nested_failure(2)
        raise AssertionError("unreachable")

    def reraise(w: WorkflowInstance, ev: Any) -> Decision:
        return w.complete(ev.result.get())

    def fail_with_exception(w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail(KeyError("gone"))

    def fail_with_text(w: WorkflowInstance, ev: Any) -> Decision:
        return w.fail("plain words")

    def explode(task: Task) -> None:
        _nested_failure(0)

    manager = register(
        make_manager(),
        {"raising": Flow(raising), "reraise": Flow(enqueue(("boom", None)), reraise),
         "exception": Flow(fail_with_exception), "text": Flow(fail_with_text)},
        {"boom": explode},
    )  # fmt: skip
    await manager.start()
    for name in ("raising", "reraise", "exception", "text"):
        await manager.enqueue_workflow(name, INST)
    found = {name: await wait_finished(manager, name, INST)
             for name in ("raising", "reraise", "exception", "text")}  # fmt: skip

    # Then each failed run's text is as before, with the type and traceback beside it
    raising_run = await manager.driver.get_workflow_instance("raising", INST)
    assert raising_run.err == "DiskFull: disk full"
    assert raising_run.error_type == f"{__name__}.DiskFull"
    assert raising_run.error_traceback is not None and "in raising" in raising_run.error_traceback
    reraised = await manager.driver.get_workflow_instance("reraise", INST)
    assert reraised.err == "TaskFailedError: disk full"
    assert reraised.error_type == f"{__name__}.DiskFull"  # the task's, the root cause
    assert reraised.error_traceback is not None and "in explode" in reraised.error_traceback
    exception = await manager.driver.get_workflow_instance("exception", INST)
    assert (exception.err, exception.error_type, exception.error_traceback) == (
        "'gone'",
        "KeyError",
        None,  # never raised: no traceback
    )
    text = await manager.driver.get_workflow_instance("text", INST)
    assert (text.err, text.error_type, text.error_traceback) == ("plain words", None, None)
    assert all(not data.is_running() for data in found.values())
