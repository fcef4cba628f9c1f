"""Task retries under a RetryPolicy (API.md Additions): backoff, non-retryable, expiry, poison."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from cereal import Decision, RetryPolicy, Task, TaskStatus, WorkflowInstance
from cereal.drivers import Driver
from cereal.retry import load_policy
from tests._waiting import wait_for_record
from tests.conformance._executors import INST, WF, Flow, enqueue, register
from tests.plugins.manager import MakeManager, eventually, wait_finished


def outcome(w: WorkflowInstance, ev: Any) -> Decision:
    """Complete with how the one task ended, as the workflow saw it."""
    result = ev.result
    failure = result.err()
    return w.complete(
        {
            "status": str(result.status),
            "attempts": result.attempts,
            "value": None if failure is not None else result.get(),
            "error": None if failure is None else str(failure),
        }
    )


class Attempts:
    """A plain task executor that fails its first ``failures`` attempts; records each attempt."""

    def __init__(self, failures: int, error: type[Exception] = RuntimeError) -> None:
        self.failures = failures
        self.error = error
        self.started: list[tuple[int, float]] = []  # (attempt, wall clock at start)
        self.failed: list[float] = []  # wall clock just before raising

    def run(self, task: Task) -> str:
        attempt = task.metadata.attempt
        self.started.append((attempt, time.time()))
        if len(self.started) <= self.failures:
            self.failed.append(time.time())
            raise self.error(f"attempt {attempt} failed")
        return f"done at attempt {attempt}"


async def test_a_task_failing_twice_then_succeeding_is_one_success_after_three_attempts(
    make_manager: MakeManager,
) -> None:
    # Given an executor registered with 3 attempts and a 0.3 s backoff doubling each time
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.3, multiplier=2.0, jitter=0.1)
    flaky = Attempts(failures=2)
    flow = Flow(enqueue(("flaky", None)), outcome)
    manager = register(make_manager(), {WF: flow}, {"flaky": flaky}, retry=policy)
    await manager.start()

    # When a workflow runs the task
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then the workflow saw one outcome only: success, after 3 attempts
    assert done.get_result() == {
        "status": "success",
        "attempts": 3,
        "value": "done at attempt 3",
        "error": None,
    }
    assert [name for name, _ in flow.calls].count("task") == 1
    assert [attempt for attempt, _ in flaky.started] == [1, 2, 3]
    # and no attempt started before its backoff (the least one, jitter included) had passed
    for attempt in (1, 2):
        least = 0.3 * 2.0 ** (attempt - 1) * (1 - 0.1)
        waited = flaky.started[attempt][1] - flaky.failed[attempt - 1]
        assert waited >= least, f"attempt {attempt + 1} began {waited:.3f} s after the failure"


async def test_a_per_task_policy_overrides_the_executors(make_manager: MakeManager) -> None:
    # Given an executor with 5 attempts that always fails, and a task enqueued with 2
    always = Attempts(failures=100)
    flow = Flow(
        enqueue(("flaky", None), retry=RetryPolicy(max_attempts=2, initial_backoff=0)), outcome
    )
    manager = register(
        make_manager(), {WF: flow}, {"flaky": always}, retry=RetryPolicy(max_attempts=5)
    )
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then the task's own policy decided: failed after 2 attempts, with the last error
    assert done.get_result() == {
        "status": "failed",
        "attempts": 2,
        "value": None,
        "error": "attempt 2 failed",
    }
    assert [attempt for attempt, _ in always.started] == [1, 2]


async def test_a_non_retryable_exception_fails_the_task_at_once(make_manager: MakeManager) -> None:
    # Given a policy with 5 attempts where LookupError (and so KeyError) is not retried
    policy = RetryPolicy(max_attempts=5, initial_backoff=0, non_retryable=(LookupError,))
    broken = Attempts(failures=100, error=KeyError)
    flow = Flow(enqueue(("broken", None), retry=policy), outcome)
    manager = register(make_manager(), {WF: flow}, {"broken": broken})
    await manager.start()

    # When the task raises KeyError
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then it failed after its first attempt
    assert done.get_result()["status"] == "failed"
    assert done.get_result()["attempts"] == 1
    assert len(broken.started) == 1


async def test_a_timed_out_attempt_is_retried(make_manager: MakeManager) -> None:
    # Given a task whose first attempt hangs past its timeout
    cancelled: list[int] = []

    async def hangs_once(task: Task) -> str:
        if task.metadata.attempt == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(task.metadata.attempt)
                raise
        return f"attempt {task.metadata.attempt}"

    policy = RetryPolicy(max_attempts=2, initial_backoff=0)
    manager = register(
        make_manager(),
        {WF: Flow(enqueue(("hangs", None)), outcome)},
        {"hangs": hangs_once},
        timeout=0.3,
        retry=policy,
    )
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then the timed-out attempt was cancelled and the second one succeeded
    assert cancelled == [1]
    assert done.get_result() == {
        "status": "success",
        "attempts": 2,
        "value": "attempt 2",
        "error": None,
    }


async def test_a_task_whose_lease_expires_on_every_attempt_is_given_up_as_lost_with_a_warning(
    make_manager: MakeManager,
    driver_factory: Callable[[], Driver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given a sweeping Manager running a workflow whose "poison" task has 2 attempts
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.05)
    sweeping = register(
        make_manager(), {WF: Flow(enqueue(("poison", None), retry=policy), outcome)}
    )
    await sweeping.start()
    # and a holder that claims the task with a 0.2 s lease and never heartbeats (it "dies")
    holder = driver_factory()
    await holder.init()
    claims: list[Any] = []
    try:
        await sweeping.enqueue_workflow(WF, INST)
        for attempt in (1, 2):

            async def claim(wanted: int = attempt) -> bool:
                claims.extend(await holder.dequeue_tasks("poison", 1, task_expiry=0.2))
                return len(claims) == wanted

            # When the holder takes each attempt and loses it by lease expiry
            await eventually(claim, what=f"attempt {attempt} claimed")
        done = await wait_finished(sweeping, WF, INST, timeout=30)
    finally:
        await holder.close()

    # Then the first expiry queued it again (attempt 2, same stored policy) ...
    assert [data.metadata.attempt for data, _ in claims] == [1, 2]
    assert {load_policy(data.retry_policy) for data, _ in claims} == {load_policy(policy.to_json())}
    # ... and the second gave it up: LOST after 2 attempts, said at WARNING
    assert done.get_result()["status"] == str(TaskStatus.LOST)
    assert done.get_result()["attempts"] == 2
    task_id = claims[0][0].metadata.task_id
    # the sweep logs after its transaction committed: the workflow may finish first
    await wait_for_record(
        caplog,
        lambda record: (
            record.levelno == logging.WARNING
            and "poison task" in record.getMessage()
            and f"poison (id {task_id}) after 2 attempts" in record.getMessage()
        ),
        what="the sweep's warning about the poison task",
    )


async def test_a_retried_attempt_logs_at_info_and_the_final_failure_keeps_its_details(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")

    def details(w: WorkflowInstance, ev: Any) -> Decision:
        result = ev.result
        return w.complete(
            {
                "attempts": result.attempts,
                "error_type": result.error_type,
                "traceback_names_it": "attempt 2 failed" in (result.error_traceback or ""),
            }
        )

    # Given a task that fails both of its 2 attempts
    always = Attempts(failures=100)
    policy = RetryPolicy(max_attempts=2, initial_backoff=0)
    flow = Flow(enqueue(("flaky", None)), details)
    manager = register(make_manager(), {WF: flow}, {"flaky": always}, retry=policy)
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then the workflow sees the last attempt's exception type and traceback
    assert done.get_result() == {
        "attempts": 2,
        "error_type": "RuntimeError",
        "traceback_names_it": True,
    }
    # and the first attempt was logged at INFO as a retry, the last once at WARNING
    events = [
        (record.levelno, getattr(record, "event", None), getattr(record, "attempt", None))
        for record in caplog.records
        if getattr(record, "event", None) in ("task_retry", "task_failed")
    ]
    assert events == [(logging.INFO, "task_retry", 1), (logging.WARNING, "task_failed", 2)]
