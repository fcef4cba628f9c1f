"""cereal.testing: instances, events, run_callback and the assertion helpers."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from cereal import TaskStatus, errors, testing
from cereal.checks.times import utcnow
from cereal.drivers.memory import MemoryDriver
from cereal.engine.workflow_runner import WorkflowRunner
from cereal.instance import ENQUEUE_AND_COMPLETE_ERROR, LiveWorkflowInstance
from cereal.models import WorkflowEvent, WorkflowEventType, WorkflowInstanceData
from cereal.models import WorkflowInstanceStatus as Status


@dataclass
class Params:
    n: int


class Counter:
    """Enqueues n tasks, completes with the sum of their results."""

    def on_start(self, w, ev):
        n = w.get_parameters(Params).n
        for i in range(n):
            w.enqueue_task("add", {"i": i})
        return w.continue_({"sum": 0})

    def on_task_complete(self, w, ev):
        total = w.get_payload()["sum"] + ev.result.get()
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(total)
        return w.continue_({"sum": total})

    def on_cancel(self, w, ev):
        return w.fail("cancelled")


class AsyncCallbacks:
    def __init__(self) -> None:
        self.thread: int | None = None

    async def on_start(self, w, ev):
        await asyncio.sleep(0)
        self.thread = threading.get_ident()
        return w.complete("async")

    async def on_task_complete(self, w, ev):
        raise KeyError("missing")

    async def on_cancel(self, w, ev):
        return "not a decision"


# ---- instances -------------------------------------------------------------------------------


def test_make_instance_defaults_and_values() -> None:
    w = testing.make_instance(
        parameters={"a": 1}, payload=[1, 2], enqueued_tasks=3, completed_tasks=2
    )

    assert isinstance(w, LiveWorkflowInstance)
    assert (w.workflow_name, w.instance_name) == ("test", "test")
    assert w.get_parameters() == {"a": 1}
    assert w.get_payload() == [1, 2]
    assert (w.total_enqueued_tasks(), w.total_completed_tasks()) == (3, 2)


def test_make_instance_refuses_non_json() -> None:
    with pytest.raises(TypeError, match="make_instance"):
        testing.make_instance(parameters=object())


def test_recording_instance_keeps_decisions() -> None:
    w = testing.make_instance()
    with pytest.raises(AssertionError, match="no decision"):
        _ = w.decision

    first = w.continue_(1)
    second = w.fail(ValueError("boom"))

    assert w.decisions == [first, second]
    assert w.decision is second


def test_complete_after_enqueue_fails_as_in_production() -> None:
    w = testing.make_instance()
    w.enqueue_task("t")

    testing.assert_failed(w.complete("done"), ENQUEUE_AND_COMPLETE_ERROR)


def test_next_instance_carries_payload_and_counts() -> None:
    w = testing.make_instance("wf", "one", parameters={"n": 2}, enqueued_tasks=1)
    w.enqueue_task("t")
    w.enqueue_task("t")
    decision = w.continue_({"step": 1})

    w2 = testing.next_instance(w, decision, completed_tasks=1)

    assert (w2.workflow_name, w2.instance_name) == ("wf", "one")
    assert w2.get_parameters() == {"n": 2}
    assert w2.get_payload() == {"step": 1}
    assert (w2.total_enqueued_tasks(), w2.total_completed_tasks()) == (3, 1)
    assert w2.enqueued == ()


def test_next_instance_of_an_ended_instance_is_an_assertion() -> None:
    w = testing.make_instance()
    with pytest.raises(AssertionError, match="continuing"):
        testing.next_instance(w, w.complete())


# ---- events -----------------------------------------------------------------------------------


def test_start_and_cancel_events() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    assert testing.start_event(when).enqueued_at == when
    assert testing.cancel_event().enqueued_at <= utcnow()


def test_task_complete_event_success() -> None:
    ev = testing.task_complete_event("t", result={"x": 1}, parameters={"p": 2})

    assert ev.task_name == "t"
    assert ev.result.status is TaskStatus.SUCCESS
    assert ev.result.get() == {"x": 1}
    assert ev.result.get_parameters() == {"p": 2}
    assert ev.result.err() is None


def test_task_complete_event_error_keeps_the_text_only() -> None:
    ev = testing.task_complete_event("t", error=OSError("disk full"))

    assert ev.result.status is TaskStatus.FAILED
    failure = ev.result.err()
    assert isinstance(failure, errors.TaskFailedError)
    assert str(failure) == "disk full"
    with pytest.raises(errors.TaskFailedError):
        ev.result.get()


def test_task_complete_event_lost() -> None:
    ev = testing.task_complete_event("t", status=TaskStatus.LOST)

    assert isinstance(ev.result.err(), errors.TaskLostError)


def test_task_complete_event_refuses_result_and_error() -> None:
    with pytest.raises(ValueError, match="not both"):
        testing.task_complete_event("t", result=1, error="x")


# ---- run_callback -----------------------------------------------------------------------------


async def test_run_callback_drives_a_plain_executor_end_to_end() -> None:
    executor = Counter()
    w = testing.make_instance(parameters={"n": 2})

    started = await testing.run_callback(executor, "on_start", w, testing.start_event())

    assert testing.assert_continuing(started) == {"sum": 0}
    first, second = testing.assert_tasks_enqueued(started, "add", 2)
    assert [first.get_parameters(), second.get_parameters()] == [{"i": 0}, {"i": 1}]

    w2 = testing.next_instance(w, started, completed_tasks=1)
    step = await testing.run_callback(
        executor, "on_task_complete", w2, first.complete_event(result=5)
    )
    assert testing.assert_continuing(step) == {"sum": 5}
    assert testing.enqueued_tasks(step) == []

    w3 = testing.next_instance(w2, step, completed_tasks=1)
    done = await testing.run_callback(
        executor, "on_task_complete", w3, second.complete_event(result=7)
    )
    assert testing.assert_complete(done) == 12


async def test_run_callback_runs_plain_callbacks_in_a_thread() -> None:
    seen: list[int] = []

    class Plain:
        def on_start(self, w, ev):
            seen.append(threading.get_ident())
            return w.continue_()

        on_task_complete = on_cancel = on_start

    await testing.run_callback(Plain(), "on_start", testing.make_instance(), testing.start_event())

    assert seen and seen[0] != threading.get_ident()


async def test_run_callback_awaits_async_callbacks_on_the_loop() -> None:
    executor = AsyncCallbacks()

    decision = await testing.run_callback(
        executor, "on_start", testing.make_instance(), testing.start_event()
    )

    assert testing.assert_complete(decision) == "async"
    assert executor.thread == threading.get_ident()


async def test_a_raising_callback_becomes_the_engines_failure() -> None:
    decision = await testing.run_callback(
        AsyncCallbacks(),
        "on_task_complete",
        testing.make_instance(),
        testing.task_complete_event("t"),
    )

    testing.assert_failed(decision, "KeyError: 'missing'")


async def test_a_callback_returning_no_decision_fails() -> None:
    decision = await testing.run_callback(
        AsyncCallbacks(), "on_cancel", testing.make_instance(), testing.cancel_event()
    )

    text = testing.assert_failed(decision)
    assert text.startswith("TypeError: on_cancel returned str, not a Decision")


async def test_run_callback_checks_its_arguments() -> None:
    w = testing.make_instance()
    with pytest.raises(ValueError, match="on_start, on_task_complete, on_cancel"):
        await testing.run_callback(Counter(), "on_finish", w, testing.start_event())
    with pytest.raises(TypeError, match="takes a StartEvent"):
        await testing.run_callback(Counter(), "on_start", w, testing.cancel_event())


@pytest.mark.parametrize(
    ("executor", "callback", "event"),
    [
        (AsyncCallbacks(), "on_task_complete", testing.task_complete_event("t")),
        (AsyncCallbacks(), "on_cancel", testing.cancel_event()),
        (Counter(), "on_start", testing.start_event()),
    ],
)
async def test_run_callback_matches_the_workflow_runner(executor, callback, event) -> None:
    """The same callback gives the same decision here and in the engine's runner."""
    runner = WorkflowRunner(
        MemoryDriver(),
        {"wf": executor},
        poll_interval=1.0,
        heartbeat_interval=3600.0,
        claim_expiry=7200.0,
        max_value_bytes=1 << 20,
        on_tasks_enqueued=lambda names: None,
        on_workflow_complete=None,
    )
    kind = {
        "on_start": WorkflowEventType.START,
        "on_cancel": WorkflowEventType.CANCEL,
        "on_task_complete": WorkflowEventType.TASK_COMPLETE,
    }[callback]
    data = WorkflowInstanceData("wf", "i", Status.RUNNING, parameters=b'{"n":1}')
    task_result = None
    if kind is WorkflowEventType.TASK_COMPLETE:
        from cereal.models import TaskResultData

        task_result = TaskResultData(task_name="t", status=TaskStatus.SUCCESS)
    workflow_event = WorkflowEvent(kind, data, 0, 0, event.enqueued_at, task_result)
    by_engine = (await runner._decide_batch(executor, [workflow_event])).decision
    by_testing = await testing.run_callback(
        executor, callback, testing.make_instance("wf", "i", parameters={"n": 1}), event
    )

    assert by_testing == by_engine


# ---- assertions -------------------------------------------------------------------------------


def test_assert_complete_returns_the_result_typed() -> None:
    decision = testing.make_instance().complete({"n": 4})

    assert testing.assert_complete(decision, Params) == Params(4)
    with pytest.raises(AssertionError, match="expected a continuing decision, got one complete"):
        testing.assert_continuing(decision)


def test_assert_continuing_returns_the_payload() -> None:
    decision = testing.make_instance().continue_({"n": 1})

    assert testing.assert_continuing(decision) == {"n": 1}
    with pytest.raises(AssertionError, match="expected a complete decision, got one continuing"):
        testing.assert_complete(decision)


def test_assert_failed_compares_texts() -> None:
    decision = testing.make_instance().fail(RuntimeError("nope"))

    assert testing.assert_failed(decision) == "nope"
    testing.assert_failed(decision, RuntimeError("nope"))
    with pytest.raises(AssertionError, match="expected failure 'other', got 'nope'"):
        testing.assert_failed(decision, "other")
    with pytest.raises(AssertionError, match="expected a failed decision"):
        testing.assert_failed(testing.make_instance().continue_())


def test_assert_tasks_enqueued_counts_by_name() -> None:
    w = testing.make_instance()
    later = datetime(2030, 1, 1, tzinfo=UTC)
    w.enqueue_task("a", {"k": 1}, start_after=later)
    w.enqueue_task("b")
    decision = w.continue_()

    (task,) = testing.assert_tasks_enqueued(decision, "a", 1)
    assert task.start_after == later
    assert testing.assert_tasks_enqueued(decision, "c", 0) == []
    with pytest.raises(AssertionError, match=r"expected 2 task\(s\) named 'b'.*\['a', 'b'\]"):
        testing.assert_tasks_enqueued(decision, "b", 2)
    assert [t.task_name for t in testing.enqueued_tasks(decision)] == ["a", "b"]


def test_next_instance_holds_the_runs_task_keys_as_the_engine_does() -> None:
    w = testing.make_instance()
    w.enqueue_task("t", 1, idempotency_key="a")
    w2 = testing.next_instance(w, w.continue_(), completed_tasks=1)

    w2.enqueue_task("t", 2, idempotency_key="a")  # the run holds "a": dropped
    w2.enqueue_task("t", 3, idempotency_key="b")

    assert w2.total_enqueued_tasks() == 2
    assert [task.idempotency_key for task in w2.enqueued] == ["b"]
    w3 = testing.next_instance(w2, w2.continue_(), completed_tasks=1)
    assert w3.held_keys == {"a", "b"}
