"""patterns.single_task through cereal.testing: start, task outcome, cancel, registration."""

from __future__ import annotations

import pytest

from cereal import Manager, RetryPolicy, Task, TaskStatus, testing
from cereal.drivers.memory import MemoryDriver
from cereal.patterns import SingleTaskWorkflowExecutor, register_single_task_workflow_executor
from cereal.patterns.single_task import CANCELLED
from tests._waiting import wait_until
from tests.plugins.manager import FAST_OPTIONS


async def started(executor: SingleTaskWorkflowExecutor, parameters=None):
    w = testing.make_instance("resize", "img", parameters=parameters)
    decision = await testing.run_callback(executor, "on_start", w, testing.start_event())
    return w, decision


async def test_start_enqueues_one_task_with_the_workflow_parameters() -> None:
    _, decision = await started(SingleTaskWorkflowExecutor("resize"), [1, "two", {"3": None}])

    assert testing.assert_continuing(decision) is None
    (task,) = testing.assert_tasks_enqueued(decision, "resize", 1)
    assert task.get_parameters() == [1, "two", {"3": None}]


async def test_task_result_becomes_the_workflow_result() -> None:
    executor = SingleTaskWorkflowExecutor("resize")
    w, decision = await started(executor, {"w": 800})
    (task,) = testing.enqueued_tasks(decision)

    done = await testing.run_callback(
        executor,
        "on_task_complete",
        testing.next_instance(w, decision, completed_tasks=1),
        task.complete_event(result={"w": 400}),
    )

    assert testing.assert_complete(done) == {"w": 400}


async def test_empty_task_result_completes_with_none() -> None:
    executor = SingleTaskWorkflowExecutor("t")
    done = await testing.run_callback(
        executor, "on_task_complete", testing.make_instance(), testing.task_complete_event("t")
    )

    assert testing.assert_complete(done) is None


async def test_task_error_fails_the_workflow_with_its_text() -> None:
    executor = SingleTaskWorkflowExecutor("t")
    failed = await testing.run_callback(
        executor,
        "on_task_complete",
        testing.make_instance(),
        testing.task_complete_event("t", error=ValueError("bad image")),
    )

    testing.assert_failed(failed, "bad image")


async def test_lost_task_fails_the_workflow() -> None:
    failed = await testing.run_callback(
        SingleTaskWorkflowExecutor("t"),
        "on_task_complete",
        testing.make_instance(),
        testing.task_complete_event("t", status=TaskStatus.LOST),
    )

    testing.assert_failed(failed, "task lost before reporting its status")


async def test_cancel_allowed_fails_with_cancelled() -> None:
    decision = await testing.run_callback(
        SingleTaskWorkflowExecutor("t", allow_cancel=True),
        "on_cancel",
        testing.make_instance(),
        testing.cancel_event(),
    )

    testing.assert_failed(decision, CANCELLED)
    assert CANCELLED == "cancelled"


async def test_cancel_not_allowed_keeps_running() -> None:
    decision = await testing.run_callback(
        SingleTaskWorkflowExecutor("t"),
        "on_cancel",
        testing.make_instance(payload={"kept": True}),
        testing.cancel_event(),
    )

    assert testing.assert_continuing(decision) == {"kept": True}
    assert testing.enqueued_tasks(decision) == []


def test_register_honours_workers_and_timeout() -> None:
    manager = Manager(MemoryDriver())

    register_single_task_workflow_executor(
        manager, "resize", lambda task: None, allow_cancel=True, workers=3, timeout=2.5
    )

    registration = manager._task_registrations["resize"]
    assert (registration.workers, registration.timeout) == (3, 2.5)
    executor = manager._workflow_executors["resize"]
    assert isinstance(executor, SingleTaskWorkflowExecutor)
    assert (executor.task_name, executor.allow_cancel) == ("resize", True)


def test_register_refuses_bad_options_and_duplicates() -> None:
    manager = Manager(MemoryDriver())
    with pytest.raises(ValueError, match="workers"):
        register_single_task_workflow_executor(manager, "a", lambda task: None, workers=0)
    with pytest.raises(ValueError, match="timeout"):
        register_single_task_workflow_executor(manager, "b", lambda task: None, timeout=-1)

    register_single_task_workflow_executor(manager, "c", lambda task: None)
    with pytest.raises(RuntimeError, match="registered already"):
        register_single_task_workflow_executor(manager, "c", lambda task: None)


async def test_register_gives_the_task_its_retry_policy() -> None:
    # Given a single-task workflow whose task fails its first attempt, with 2 attempts
    attempts: list[int] = []

    def flaky(task: Task) -> str:
        attempts.append(task.metadata.attempt)
        if task.metadata.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "resized"

    manager = Manager(MemoryDriver(), **FAST_OPTIONS)
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01)
    register_single_task_workflow_executor(manager, "resize", flaky, retry=retry)
    with pytest.raises(TypeError, match="retry"):
        register_single_task_workflow_executor(manager, "other", flaky, retry=2)  # type: ignore[arg-type]

    # When it runs
    async with manager:
        await manager.enqueue_workflow("resize", "img")

        async def finished() -> bool:
            return not (await manager.get_workflow_instance("resize", "img")).is_running()

        await wait_until(finished, what="the workflow ended")
        done = await manager.get_workflow_instance("resize", "img")

    # Then the second attempt's result is the workflow's
    assert attempts == [1, 2]
    assert done.get_result() == "resized"
