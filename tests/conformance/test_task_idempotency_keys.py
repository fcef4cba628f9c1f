"""Task idempotency keys: a run gets at most one task per key for as long as it lives.

A task enqueued with a key the run already has (in the same decision, an
earlier one, or from a task that has ended) is not stored and not counted;
the run sees one task and one completion. Keys are per run. Every case runs
on every driver setup (memory, SQLite, PostgreSQL, gRPC).
"""

from __future__ import annotations

from typing import Any

import pytest

from cereal import Decision, RequeueOutcome, Task, WorkflowInstance, testing
from cereal.drivers import Driver
from cereal.models import FailureDetails, NewTask
from cereal.patterns import ParallelWorkflowExecutor, enqueue_parallel_workflow
from tests.conformance._driver_helpers import INST, ODD_NAMES, WF, finished, started, take
from tests.conformance._executors import Flow, a_bad_enqueue_fails_the_run, register
from tests.plugins.manager import MakeManager, wait_finished


def keyed(n: int, key: str | None) -> NewTask:
    """A task ``t`` with parameters ``n`` and the idempotency key ``key``."""
    return NewTask("t", str(n).encode(), idempotency_key=key)


async def queued(driver: Driver) -> list[tuple[Any, str | None]]:
    """The queued ``t`` tasks as (parameters, idempotency key), in enqueue order."""
    return [(task.get_parameters(), task.idempotency_key) for task in await driver.list_tasks("t")]


async def next_event_counts(driver: Driver, tasks: list[NewTask] | None = None) -> int:
    """Take the next event and continue with ``tasks``; the stored enqueued count it saw."""
    event, completer = await take(driver)
    async with completer:
        await completer.continue_(None, tasks or [])
    return event.enqueued_task_count


async def finish_one(driver: Driver) -> None:
    """Claim the next ``t`` task and succeed it."""
    [(_, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    await completer.succeed(b"null")


# ---- the store, at the driver ---------------------------------------------------------------


async def test_one_decision_stores_the_first_task_of_each_key(driver: Driver) -> None:
    # Given a decision with two tasks of key "a", one without a key and one of key "b"
    await started(driver, tasks=[keyed(1, "a"), keyed(2, "a"), keyed(3, None), keyed(4, "b")])

    # Then the second task of "a" is not stored, and the listing shows each key
    assert await queued(driver) == [(1, "a"), (3, None), (4, "b")]
    # and the run counts the three stored tasks
    await finish_one(driver)
    assert await next_event_counts(driver) == 3


async def test_a_key_the_run_has_drops_a_later_task_even_once_that_task_ended(
    driver: Driver,
) -> None:
    # Given a run whose task of key "a" has run and been reported
    await started(driver, tasks=[keyed(1, "a")])
    await finish_one(driver)

    # When a later decision enqueues key "a" again, and a new key "b"
    assert await next_event_counts(driver, [keyed(2, "a"), keyed(3, "b")]) == 1

    # Then only "b" is stored, and the run counts two tasks in all
    assert await queued(driver) == [(3, "b")]
    await finish_one(driver)
    assert await next_event_counts(driver, [keyed(4, "b"), keyed(5, "a")]) == 2
    assert await queued(driver) == []


async def test_keys_belong_to_one_run(driver: Driver) -> None:
    # Given two instances that enqueue a task of the same key
    await started(driver, instance_name="one", tasks=[keyed(1, "k")])
    await started(driver, instance_name="two", tasks=[keyed(2, "k")])

    # Then each has its task
    assert await queued(driver) == [(1, "k"), (2, "k")]


async def test_a_new_run_of_the_same_names_starts_with_no_keys(driver: Driver) -> None:
    # Given a run of the names that finished after its task of key "k" ran
    await started(driver, tasks=[keyed(1, "k")])
    await finish_one(driver)
    _, completer = await take(driver)
    async with completer:
        await completer.done(b'"ok"')

    # When a new run of the same names enqueues key "k"
    await started(driver, tasks=[keyed(2, "k")])

    # Then it is stored
    assert await queued(driver) == [(2, "k")]


async def test_a_finished_run_at_its_start_leaves_no_key_behind(driver: Driver) -> None:
    await finished(driver)
    await started(driver, tasks=[keyed(1, "k")])

    assert await queued(driver) == [(1, "k")]


async def test_a_requeued_dead_task_takes_over_its_key(driver: Driver) -> None:
    # Given a run whose task of key "k" died, and was reported to the run
    await started(driver, tasks=[keyed(1, "k")])
    [(dead, completer)] = await driver.dequeue_tasks("t", 1, task_expiry=3600)
    await completer.fail_with_details(FailureDetails("boom", "RuntimeError", "tb"))
    await next_event_counts(driver)

    # When it is requeued
    task_id = dead.metadata.task_id
    assert await driver.requeue_dead_tasks([task_id]) == {task_id: RequeueOutcome.REQUEUED}

    # Then the new task carries the key, and the key still keeps a second task out
    assert await queued(driver) == [(1, "k")]
    await finish_one(driver)
    assert await next_event_counts(driver, [keyed(2, "k")]) == 2
    assert await queued(driver) == []


@pytest.mark.parametrize("key", ODD_NAMES)
async def test_any_name_round_trips_as_a_key(driver: Driver, key: str) -> None:
    await started(driver, tasks=[keyed(1, key), keyed(2, key)])

    assert await queued(driver) == [(1, key)]


# ---- a run, end to end ----------------------------------------------------------------------


async def test_a_run_gets_one_task_and_one_completion_per_key(make_manager: MakeManager) -> None:
    counted: list[int] = []

    def on_start(w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("t", 1, idempotency_key="a")
        w.enqueue_task("t", 1, idempotency_key="a")  # dropped at once: not counted
        w.enqueue_task("t", 2, idempotency_key="b")
        counted.append(w.total_enqueued_tasks())
        return w.continue_([])

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        seen = [*(w.get_payload() or []), ev.result.get()]
        # a key an earlier step used: dropped, and not counted, so the last
        # step's counts match and the run completes
        w.enqueue_task("t", 3, idempotency_key="a")
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(sorted(seen))
        return w.continue_(seen)

    ran: list[Any] = []

    def run(task: Task) -> Any:
        ran.append(task.get_parameters())
        return task.get_parameters()

    manager = register(make_manager(), {WF: Flow(on_start, on_task_complete)}, {"t": run})
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    assert done.get_result() == [1, 2]
    assert sorted(ran) == [1, 2]
    assert counted == [2]


async def test_a_step_asking_for_a_held_key_sees_the_counts_without_it(
    make_manager: MakeManager,
) -> None:
    # Given a run whose first task holds key "a"; each step records its counts after
    # asking for "a" again
    after_asking: list[tuple[int, int]] = []

    def on_start(w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("t", 1, idempotency_key="a")
        w.enqueue_task("t", 2)
        return w.continue_([])

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("t", 3, idempotency_key="a")
        after_asking.append((w.total_completed_tasks(), w.total_enqueued_tasks()))
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete("done")
        return w.continue_()

    manager = register(
        make_manager(), {WF: Flow(on_start, on_task_complete)}, {"t": Task.get_parameters}
    )
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)

    # Then the step deciding each event saw two tasks enqueued, never three (a step
    # whose held key the store had to report was called again, knowing it)
    # (the last call for each event is the one whose decision was applied)
    decided = {counts[0]: counts for counts in after_asking}
    assert decided == {1: (1, 2), 2: (2, 2)}, after_asking


@pytest.mark.parametrize(
    ("key", "error"),
    [("", ValueError), ("x" * 256, ValueError), ("a\x00b", ValueError), (7, TypeError)],
)
async def test_a_bad_key_fails_the_run_and_stores_nothing(
    make_manager: MakeManager, key: Any, error: type[Exception]
) -> None:
    exc, text = await a_bad_enqueue_fails_the_run(
        make_manager, lambda w: w.enqueue_task("t", 2, idempotency_key=key)
    )
    assert isinstance(exc, error)
    assert "idempotency_key" in text, text


async def test_the_run_finishes_when_its_keyed_tasks_are_done(make_manager: MakeManager) -> None:
    def on_start(w: WorkflowInstance, ev: object) -> Decision:
        for n in (1, 2, 1, 2, 3):
            w.enqueue_task("t", n, idempotency_key=f"n{n}")
        return w.continue_([])

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        seen = [*(w.get_payload() or []), ev.result.get()]
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(sorted(seen))
        return w.continue_(seen)

    manager = register(
        make_manager(), {WF: Flow(on_start, on_task_complete)}, {"t": Task.get_parameters}
    )
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    assert done.get_result() == [1, 2, 3]


# ---- sub-workflows (the parallel and chain patterns) ----------------------------------------


async def test_a_sub_workflows_key_keeps_a_second_task_out_and_its_fields_pass_on(
    make_manager: MakeManager,
) -> None:
    # Given a parallel workflow of two sub-workflows, each enqueuing a task of key "once"
    # (with a priority) and asking for it again at its completion
    def start(w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("t", {"n": 1}, idempotency_key="once", priority=7)
        return w.continue_()

    def done(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("t", {"n": 2}, idempotency_key="once")  # held: dropped
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(w.total_completed_tasks())
        return w.continue_()

    seen: list[tuple[Any, int, str | None]] = []
    manager = make_manager()

    async def run(task: Task) -> None:
        [listed] = [t for t in await manager.list_tasks("t") if t.task_id == task.metadata.task_id]
        seen.append((task.get_parameters(), listed.priority, listed.idempotency_key))

    sub = testing.make_executor(start, done)
    manager.register_workflow_executor("par", ParallelWorkflowExecutor({"a": sub, "b": sub}))
    manager.register_task_executor("t", run)
    await manager.start()
    await enqueue_parallel_workflow(manager, "par", "p", {"a": 1, "b": 2})
    done_run = await wait_finished(manager, "par", "p")

    # Then each sub-workflow ran its one task, with its priority, under its own key
    assert done_run.err() is None, done_run.err()
    assert sorted((p["__key"], p["n"], prio, key) for p, prio, key in seen) == [
        ("a", 1, 7, "__key=a/once"),
        ("b", 1, 7, "__key=b/once"),
    ]
