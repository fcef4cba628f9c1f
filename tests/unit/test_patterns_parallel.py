"""patterns.parallel (and the multiworkflow alias) through cereal.testing."""

from __future__ import annotations

import pytest

from cereal import errors, multiworkflow, testing, values
from cereal.checks.times import utcnow
from cereal.instance import (
    ENQUEUE_AND_COMPLETE_ERROR,
    ImmutableWorkflowInstance,
    TaskCompleteEvent,
    TaskResult,
)
from cereal.models import TaskResultData, TaskStatus, WorkflowInstanceData, WorkflowInstanceStatus
from cereal.patterns import ParallelWorkflowExecutor, ParallelWorkflowInstance
from cereal.patterns._common import WorkflowState
from cereal.patterns.parallel import NO_EXECUTOR, UNROUTABLE_TASK, parallel_parameters

complete_at_once = testing.make_executor(on_start=lambda w, ev: w.complete(w.get_parameters()))


def one_task(name: str = "work", on_cancel=None):
    def start(w, ev):
        w.enqueue_task(name, {"p": w.get_parameters()})
        return w.continue_("waiting")

    def task_done(w, ev):
        return w.complete({"got": ev.result.get(), "params": ev.result.get_parameters()})

    return testing.make_executor(start, task_done, on_cancel)


def parent(params: dict, **kwargs) -> testing.RecordingInstance:
    return testing.make_instance("par", "p1", parameters=parallel_parameters(params), **kwargs)


def states(decision) -> dict[str, dict]:
    body = decision.get_payload() if decision.is_continuing else decision.get_result()
    return body["State"]


async def start(executor, params):
    w = parent(params)
    return w, await testing.run_callback(executor, "on_start", w, testing.start_event())


# ---- construction and parameters -------------------------------------------------------------


def test_parallel_parameters_keep_key_order() -> None:
    assert parallel_parameters({"b": 1, "a": None}) == {
        "SubworkflowKeys": ["b", "a"],
        "WorkflowParams": {"b": 1, "a": None},
    }
    with pytest.raises(TypeError, match="mapping"):
        parallel_parameters([("a", 1)])
    with pytest.raises(TypeError, match="keys must be str"):
        parallel_parameters({1: "x"})


def test_refuses_a_lookup_that_is_neither_mapping_nor_function() -> None:
    with pytest.raises(TypeError, match="mapping"):
        ParallelWorkflowExecutor(3)
    with pytest.raises(TypeError, match="on_start"):
        ParallelWorkflowExecutor({"a": object()})


async def test_bad_parameters_fail() -> None:
    decision = await testing.run_callback(
        ParallelWorkflowExecutor({}),
        "on_start",
        testing.make_instance(parameters=[1]),
        testing.start_event(),
    )

    assert "enqueue_parallel_workflow" in testing.assert_failed(decision)


async def test_no_sub_workflows_completes_at_once() -> None:
    _, decision = await start(ParallelWorkflowExecutor({}), {})

    assert testing.assert_complete(decision) == {"State": {}}


# ---- start ------------------------------------------------------------------------------------


async def test_all_completing_at_once_completes() -> None:
    _, decision = await start(
        ParallelWorkflowExecutor({"a": complete_at_once, "b": complete_at_once}), {"a": 1, "b": 2}
    )

    result = testing.assert_complete(decision)["State"]
    assert list(result) == ["a", "b"]
    assert {key: s["Result"] for key, s in result.items()} == {"a": 1, "b": 2}


async def test_function_lookup() -> None:
    lookup = {"x": complete_at_once}.get
    _, decision = await start(ParallelWorkflowExecutor(lookup), {"x": "hi"})

    assert testing.assert_complete(decision)["State"]["x"]["Result"] == "hi"


@pytest.mark.parametrize("order", [["busy", "quick"], ["quick", "busy"]])
async def test_one_sub_workflows_tasks_never_fail_anothers_complete(order) -> None:
    """The original's order-dependent bug, fixed: each decision is judged on its own."""
    executors = {"busy": one_task(), "quick": complete_at_once}
    _, decision = await start(ParallelWorkflowExecutor(executors), {key: key for key in order})

    (task,) = testing.assert_tasks_enqueued(decision, "work", 1)
    assert task.get_parameters() == {"p": "busy", "__key": "busy"}
    by_key = states(decision)
    assert by_key["quick"]["Result"] == "quick"
    assert by_key["quick"]["Err"] == ""
    assert by_key["busy"]["IsFinished"] is False


async def test_sub_workflow_completing_with_tasks_fails_alone() -> None:
    def enqueue_and_complete(w, ev):
        w.enqueue_task("t")
        return w.complete()

    executors = {"bad": testing.make_executor(enqueue_and_complete), "ok": one_task()}
    _, decision = await start(ParallelWorkflowExecutor(executors), {"bad": 1, "ok": 2})

    testing.assert_tasks_enqueued(decision, "work", 1)
    testing.assert_tasks_enqueued(decision, "t", 0)
    assert states(decision)["bad"]["Err"] == ENQUEUE_AND_COMPLETE_ERROR


async def test_failed_sub_workflow_is_recorded_and_the_rest_finish() -> None:
    executors = {
        "bad": testing.make_executor(lambda w, ev: w.fail(ValueError("nope"))),
        "ok": complete_at_once,
    }
    _, decision = await start(ParallelWorkflowExecutor(executors), {"bad": 1, "ok": 2})

    result = testing.assert_complete(decision)["State"]
    assert (result["bad"]["Err"], result["ok"]["Result"]) == ("nope", 2)


async def test_missing_executor_fails_before_any_callback_runs() -> None:
    calls: list[str] = []

    def record(w, ev):
        calls.append("a")
        return w.complete()

    executor = ParallelWorkflowExecutor({"a": testing.make_executor(record)})
    _, decision = await start(executor, {"a": 1, "ghost": 2})

    testing.assert_failed(decision, f"{NO_EXECUTOR} 'ghost'")
    assert calls == []


async def test_raising_sub_workflow_fails_alone() -> None:
    def boom(w, ev):
        raise LookupError("gone")

    executors = {"boom": testing.make_executor(boom), "ok": one_task()}
    _, decision = await start(ParallelWorkflowExecutor(executors), {"boom": 1, "ok": 2})

    testing.assert_continuing(decision)
    assert states(decision)["boom"]["Err"] == "LookupError: gone"


# ---- task completion --------------------------------------------------------------------------


async def test_tasks_route_by_key_until_all_finish() -> None:
    executor = ParallelWorkflowExecutor({"a": one_task("ta"), "b": one_task("tb")})
    w, decision = await start(executor, {"a": "A", "b": "B"})
    task_a, task_b = testing.enqueued_tasks(decision)
    assert [task_a.task_name, task_b.task_name] == ["ta", "tb"]

    w2 = testing.next_instance(w, decision, completed_tasks=1)
    step = await testing.run_callback(
        executor, "on_task_complete", w2, task_b.complete_event(result="rb")
    )
    by_key = states(step)
    assert by_key["b"]["Result"] == {"got": "rb", "params": {"p": "B"}}
    assert by_key["a"]["IsFinished"] is False
    assert testing.enqueued_tasks(step) == []

    w3 = testing.next_instance(w2, step, completed_tasks=1)
    done = await testing.run_callback(
        executor, "on_task_complete", w3, task_a.complete_event(error="bad")
    )
    result = testing.assert_complete(done)["State"]
    # one_task's on_task_complete calls ev.result.get(), which raises for a failed task
    assert result["a"]["Err"] == "TaskFailedError: bad"
    assert result["b"]["Result"]["got"] == "rb"


async def test_sub_workflow_sees_task_failures() -> None:
    def task_done(w, ev):
        return w.fail(ev.result.err())

    executor = ParallelWorkflowExecutor(
        {"a": testing.make_executor(one_task().on_start, task_done)}
    )
    w, decision = await start(executor, {"a": 1})
    (task,) = testing.enqueued_tasks(decision)

    done = await testing.run_callback(
        executor,
        "on_task_complete",
        testing.next_instance(w, decision, completed_tasks=1),
        task.complete_event(error=OSError("disk")),
    )

    assert testing.assert_complete(done)["State"]["a"]["Err"] == "disk"


async def test_sub_workflow_sees_the_failures_type_traceback_and_attempts() -> None:
    def task_done(w, ev):
        result = ev.result
        return w.fail(f"{result.error_type} after {result.attempts}: {result.error_traceback}")

    executor = ParallelWorkflowExecutor(
        {"a": testing.make_executor(one_task().on_start, task_done)}
    )
    w, decision = await start(executor, {"a": 1})
    (task,) = testing.enqueued_tasks(decision)
    # the stored result of a task whose third attempt raised OSError
    routed = task.complete_event(error=OSError("disk")).result
    data = TaskResultData(
        task_name=routed.task_name,
        status=TaskStatus.FAILED,
        parameters=values.encode(routed.get_parameters(), where="test"),
        error_text="disk",
        error_type="OSError",
        error_traceback="Traceback: disk full",
        attempts=3,
    )

    done = await testing.run_callback(
        executor,
        "on_task_complete",
        testing.next_instance(w, decision, completed_tasks=1),
        TaskCompleteEvent(routed.task_name, TaskResult(data), utcnow()),
    )

    failed = testing.assert_complete(done)["State"]["a"]["Err"]
    assert failed == "OSError after 3: Traceback: disk full"


async def test_task_of_a_finished_sub_workflow_is_counted_only() -> None:
    finished = WorkflowState(result=1, enqueued_tasks=2, completed_tasks=1, is_finished=True)
    running = WorkflowState(payload="x", enqueued_tasks=1)
    w = parent(
        {"a": 1, "b": 2}, payload={"State": {"a": finished.to_json(), "b": running.to_json()}}
    )

    decision = await testing.run_callback(
        ParallelWorkflowExecutor({"a": testing.make_executor(), "b": testing.make_executor()}),
        "on_task_complete",
        w,
        testing.task_complete_event("t", parameters={"__key": "a"}),
    )

    by_key = states(decision)
    assert by_key["a"]["CompletedTasks"] == 2
    assert by_key["b"] == running.to_json()


@pytest.mark.parametrize("parameters", [None, ["a"], {"x": 1}, {"__key": "zzz"}, {"__key": 1}])
async def test_unroutable_task_fails_the_composite(parameters) -> None:
    w = parent({"a": 1}, payload={"State": {"a": WorkflowState().to_json()}})

    decision = await testing.run_callback(
        ParallelWorkflowExecutor({"a": testing.make_executor()}),
        "on_task_complete",
        w,
        testing.task_complete_event("t", parameters=parameters),
    )

    assert testing.assert_failed(decision).startswith(UNROUTABLE_TASK)


async def test_executor_gone_for_a_running_sub_workflow_fails() -> None:
    w = parent({"a": 1}, payload={"State": {"a": WorkflowState().to_json()}})

    decision = await testing.run_callback(
        ParallelWorkflowExecutor(lambda key: None),
        "on_task_complete",
        w,
        testing.task_complete_event("t", parameters={"__key": "a"}),
    )

    testing.assert_failed(decision, f"{NO_EXECUTOR} 'a'")


async def test_corrupt_payload_is_a_bug() -> None:
    w = parent({"a": 1}, payload={"State": [1]})

    decision = await testing.run_callback(
        ParallelWorkflowExecutor({"a": testing.make_executor()}),
        "on_cancel",
        w,
        testing.cancel_event(),
    )

    assert testing.assert_failed(decision).startswith("BUG: invalid parallel payload")


# ---- cancel -----------------------------------------------------------------------------------


async def test_cancel_reaches_every_unfinished_sub_workflow() -> None:
    cancelled: list[str] = []

    def on_cancel(w, ev):
        cancelled.append(w.get_parameters())
        return w.fail("cancelled")

    executor = ParallelWorkflowExecutor(
        {
            "a": one_task(on_cancel=on_cancel),
            "b": one_task(on_cancel=lambda w, ev: w.continue_("ignoring")),
            "done": complete_at_once,
        }
    )
    w, decision = await start(executor, {"a": "a", "b": "b", "done": "d"})

    step = await testing.run_callback(
        executor, "on_cancel", testing.next_instance(w, decision), testing.cancel_event()
    )

    assert cancelled == ["a"]
    testing.assert_continuing(step)
    by_key = states(step)
    assert (by_key["a"]["Err"], by_key["b"]["Payload"], by_key["done"]["Result"]) == (
        "cancelled",
        "ignoring",
        "d",
    )


async def test_cancel_completes_when_all_finish() -> None:
    executor = ParallelWorkflowExecutor({"a": one_task(on_cancel=lambda w, ev: w.complete("c"))})
    w, decision = await start(executor, {"a": 1})

    done = await testing.run_callback(
        executor, "on_cancel", testing.next_instance(w, decision), testing.cancel_event()
    )

    assert testing.assert_complete(done)["State"]["a"]["Result"] == "c"


# ---- reader and alias -------------------------------------------------------------------------


def test_reader() -> None:
    body = b'{"State":{"a":{"Payload":null,"Result":1,"Err":"","EnqueuedTasks":0,'
    body += b'"CompletedTasks":0,"IsFinished":true},"b":{"Payload":null,"Result":null,'
    body += b'"Err":"bad","EnqueuedTasks":0,"CompletedTasks":0,"IsFinished":true}}}'
    data = WorkflowInstanceData(
        "par",
        "p1",
        WorkflowInstanceStatus.COMPLETED,
        parameters=b'{"SubworkflowKeys":["a","b"],"WorkflowParams":{"a":"A","b":"B"}}',
        result=body,
    )
    reader = ParallelWorkflowInstance(ImmutableWorkflowInstance(data))

    assert reader.list_sub_workflows() == ["a", "b"]
    assert reader.get_parameters() == {"a": "A", "b": "B"}
    assert not reader.is_running() and reader.err() is None
    assert reader.get_sub_workflow("a").get_result() == 1
    assert reader.get_sub_workflow("a").get_parameters() == "A"
    with pytest.raises(errors.WorkflowFailedError, match="bad"):
        reader.get_sub_workflow("b").get_result()
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        reader.get_sub_workflow("c")


def test_multiworkflow_is_an_alias_of_parallel() -> None:
    from cereal.patterns import parallel

    assert multiworkflow.MultiWorkflowExecutor is ParallelWorkflowExecutor
    assert multiworkflow.MultiWorkflowInstance is ParallelWorkflowInstance
    assert multiworkflow.enqueue_multi_workflow is parallel.enqueue_parallel_workflow
    assert multiworkflow.get_multi_workflow_instance is parallel.get_parallel_workflow_instance
