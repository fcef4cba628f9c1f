"""patterns.chain through cereal.testing, event by event."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cereal import errors, testing
from cereal.instance import ENQUEUE_AND_COMPLETE_ERROR, ImmutableWorkflowInstance
from cereal.models import WorkflowInstanceData, WorkflowInstanceStatus
from cereal.patterns import ChainWorkflowExecutor, ChainWorkflowInstance
from cereal.patterns._common import SubWorkflowInstance, WorkflowState
from cereal.patterns.chain import INCORRECT_PARAMETERS, UNROUTABLE_TASK, chain_parameters

complete_at_once = testing.make_executor(on_start=lambda w, ev: w.complete(w.get_parameters()))
fail_at_once = testing.make_executor(on_start=lambda w, ev: w.fail("link broke"))


def one_task(name: str = "work", on_cancel=None):
    """Enqueues one task, completes with its result; cancel as given."""

    def start(w, ev):
        w.enqueue_task(name, {"p": w.get_parameters()})
        return w.continue_({"waiting": name})

    def task_done(w, ev):
        return w.complete({"got": ev.result.get(), "params": ev.result.get_parameters()})

    return testing.make_executor(start, task_done, on_cancel)


def parent(params: list, **kwargs) -> testing.RecordingInstance:
    return testing.make_instance("chain", "c1", parameters=chain_parameters(params), **kwargs)


def states(decision) -> list[dict]:
    body = decision.get_payload() if decision.is_continuing else decision.get_result()
    return body["State"]


async def start(executor, params):
    w = parent(params)
    return w, await testing.run_callback(executor, "on_start", w, testing.start_event())


# ---- construction and parameters -------------------------------------------------------------


def test_needs_at_least_one_executor() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ChainWorkflowExecutor()


def test_refuses_an_object_without_callbacks() -> None:
    with pytest.raises(TypeError, match="on_start"):
        ChainWorkflowExecutor(object())


def test_chain_parameters() -> None:
    assert chain_parameters([1, None]) == {"WorkflowParams": [1, None]}
    with pytest.raises(ValueError, match="empty"):
        chain_parameters([])
    with pytest.raises(TypeError, match="sequence"):
        chain_parameters("ab")


async def test_wrong_number_of_parameters_fails() -> None:
    _, decision = await start(ChainWorkflowExecutor(complete_at_once), [1, 2])

    assert testing.assert_failed(decision).startswith(INCORRECT_PARAMETERS)


async def test_parameters_not_made_by_enqueue_chain_workflow_fail() -> None:
    w = testing.make_instance(parameters=[1])
    decision = await testing.run_callback(
        ChainWorkflowExecutor(complete_at_once), "on_start", w, testing.start_event()
    )

    assert "enqueue_chain_workflow" in testing.assert_failed(decision)


# ---- start ------------------------------------------------------------------------------------


async def test_links_that_complete_at_once_complete_the_chain() -> None:
    _, decision = await start(ChainWorkflowExecutor(complete_at_once, complete_at_once), ["a", "b"])

    result = testing.assert_complete(decision)
    assert result["Cancelled"] is False
    assert [s["Result"] for s in result["State"]] == ["a", "b"]
    assert result["State"][0] == {
        "Payload": None,
        "Result": "a",
        "Err": "",
        "EnqueuedTasks": 0,
        "CompletedTasks": 0,
        "IsFinished": True,
    }


async def test_first_link_continuing_enqueues_its_routed_task() -> None:
    _, decision = await start(ChainWorkflowExecutor(one_task(), complete_at_once), [7, 8])

    assert testing.assert_continuing(decision)["Cancelled"] is False
    (task,) = testing.assert_tasks_enqueued(decision, "work", 1)
    assert task.get_parameters() == {"p": 7, "__idx": 0}
    [state] = states(decision)
    assert state["Payload"] == {"waiting": "work"}
    assert (state["EnqueuedTasks"], state["IsFinished"]) == (1, False)


async def test_a_completed_link_starts_the_next_in_the_same_callback() -> None:
    _, decision = await start(ChainWorkflowExecutor(complete_at_once, one_task("second")), [1, 2])

    (task,) = testing.assert_tasks_enqueued(decision, "second", 1)
    assert task.get_parameters() == {"p": 2, "__idx": 1}
    assert [s["IsFinished"] for s in states(decision)] == [True, False]


async def test_a_failed_link_stops_and_completes_the_chain() -> None:
    _, decision = await start(ChainWorkflowExecutor(fail_at_once, complete_at_once), [1, 2])

    [state] = testing.assert_complete(decision)["State"]
    assert (state["Err"], state["IsFinished"]) == ("link broke", True)


async def test_link_completing_with_tasks_fails_that_link_like_the_engine() -> None:
    def enqueue_and_complete(w, ev):
        w.enqueue_task("t")
        return w.complete("x")

    bad = testing.make_executor(on_start=enqueue_and_complete)
    _, decision = await start(ChainWorkflowExecutor(bad, complete_at_once), [1, 2])

    [state] = testing.assert_complete(decision)["State"]
    assert state["Err"] == ENQUEUE_AND_COMPLETE_ERROR
    assert testing.enqueued_tasks(decision) == []


async def test_raising_link_fails_that_link_with_the_engines_text() -> None:
    def boom(w, ev):
        raise RuntimeError("kaput")

    _, decision = await start(ChainWorkflowExecutor(testing.make_executor(boom)), [1])

    [state] = testing.assert_complete(decision)["State"]
    assert state["Err"] == "RuntimeError: kaput"


async def test_non_object_task_parameters_fail_the_link_with_a_type_error() -> None:
    def list_params(w, ev):
        w.enqueue_task("t", [1, 2])
        return w.continue_()

    _, decision = await start(ChainWorkflowExecutor(testing.make_executor(list_params)), [1])

    [state] = testing.assert_complete(decision)["State"]
    assert state["Err"].startswith("TypeError: enqueue_task: task parameters of a sub-workflow")


# ---- task completion --------------------------------------------------------------------------


async def test_task_completion_reaches_its_link_without_the_routing_key() -> None:
    executor = ChainWorkflowExecutor(one_task("first"), one_task("second"))
    w, decision = await start(executor, ["x", "y"])
    (task,) = testing.enqueued_tasks(decision)

    w2 = testing.next_instance(w, decision, completed_tasks=1)
    step = await testing.run_callback(
        executor, "on_task_complete", w2, task.complete_event(result=42)
    )

    (next_task,) = testing.assert_tasks_enqueued(step, "second", 1)
    assert next_task.get_parameters() == {"p": "y", "__idx": 1}
    first, second = states(step)
    assert first["Result"] == {"got": 42, "params": {"p": "x"}}
    assert (first["EnqueuedTasks"], first["CompletedTasks"]) == (1, 1)
    assert second["IsFinished"] is False

    w3 = testing.next_instance(w2, step, completed_tasks=1)
    done = await testing.run_callback(
        executor, "on_task_complete", w3, next_task.complete_event(result=43)
    )
    assert [s["Result"]["got"] for s in testing.assert_complete(done)["State"]] == [42, 43]


async def test_link_sees_its_own_counts_and_payload() -> None:
    seen: list[tuple] = []

    def start_two(w, ev):
        w.enqueue_task("t")
        w.enqueue_task("t")
        return w.continue_("mine")

    def record(w, ev):
        seen.append((w.get_payload(), w.total_enqueued_tasks(), w.total_completed_tasks()))
        return w.continue_("mine")

    executor = ChainWorkflowExecutor(testing.make_executor(start_two, record))
    w, decision = await start(executor, [None])
    task = testing.enqueued_tasks(decision)[0]
    assert task.get_parameters() == {"__idx": 0}

    await testing.run_callback(
        executor,
        "on_task_complete",
        testing.next_instance(w, decision, completed_tasks=1),
        task.complete_event(),
    )

    assert seen == [("mine", 2, 1)]


async def test_task_of_a_finished_link_is_counted_only() -> None:
    executor = ChainWorkflowExecutor(testing.make_executor(), testing.make_executor())
    finished = WorkflowState(result=1, enqueued_tasks=2, completed_tasks=1, is_finished=True)
    running = WorkflowState(payload="p", enqueued_tasks=1)
    w = parent(
        [1, 2],
        payload={"Cancelled": False, "State": [finished.to_json(), running.to_json()]},
    )

    decision = await testing.run_callback(
        executor, "on_task_complete", w, testing.task_complete_event("t", parameters={"__idx": 0})
    )

    first, second = states(decision)
    assert first["CompletedTasks"] == 2
    assert second == running.to_json()


@pytest.mark.parametrize("parameters", [None, [1], {"x": 1}, {"__idx": 5}, {"__idx": True}])
async def test_unroutable_task_fails_the_chain(parameters) -> None:
    w = parent([1], payload={"Cancelled": False, "State": [WorkflowState().to_json()]})

    decision = await testing.run_callback(
        ChainWorkflowExecutor(testing.make_executor()),
        "on_task_complete",
        w,
        testing.task_complete_event("t", parameters=parameters),
    )

    assert testing.assert_failed(decision).startswith(UNROUTABLE_TASK)


async def test_corrupt_payload_is_a_bug() -> None:
    w = parent([1], payload={"State": ["nope"]})

    decision = await testing.run_callback(
        ChainWorkflowExecutor(testing.make_executor()),
        "on_task_complete",
        w,
        testing.task_complete_event("t", parameters={"__idx": 0}),
    )

    assert testing.assert_failed(decision).startswith("BUG: invalid chain payload")


# ---- cancel -----------------------------------------------------------------------------------


async def test_cancel_goes_to_the_current_link_and_stops_the_chain_after_it() -> None:
    keep_going = one_task(on_cancel=lambda w, ev: w.continue_("cancel seen"))
    executor = ChainWorkflowExecutor(keep_going, complete_at_once)
    w, decision = await start(executor, [1, 2])
    (task,) = testing.enqueued_tasks(decision)

    w2 = testing.next_instance(w, decision)
    cancelled = await testing.run_callback(executor, "on_cancel", w2, testing.cancel_event())
    body = testing.assert_continuing(cancelled)
    assert body["Cancelled"] is True
    assert body["State"][0]["Payload"] == "cancel seen"

    w3 = testing.next_instance(w2, cancelled, completed_tasks=1)
    done = await testing.run_callback(executor, "on_task_complete", w3, task.complete_event())
    result = testing.assert_complete(done)
    assert result["Cancelled"] is True
    assert len(result["State"]) == 1


async def test_cancel_that_fails_the_link_completes_the_chain() -> None:
    executor = ChainWorkflowExecutor(
        one_task(on_cancel=lambda w, ev: w.fail("stopped")), complete_at_once
    )
    w, decision = await start(executor, [1, 2])

    done = await testing.run_callback(
        executor, "on_cancel", testing.next_instance(w, decision), testing.cancel_event()
    )

    result = testing.assert_complete(done)
    assert result["Cancelled"] is True
    assert [s["Err"] for s in result["State"]] == ["stopped"]


# ---- sub-workflow instance and reader --------------------------------------------------------


def test_sub_instance_merges_the_routing_key() -> None:
    @dataclass
    class P:
        a: int

    sub = SubWorkflowInstance(
        testing.make_instance(), WorkflowState(), None, routing_key="__idx", routing_value=3
    )
    sub.enqueue_task("t", P(1))
    sub.enqueue_task("t", {"b": 2})
    sub.enqueue_task("t")

    params = [t.get_parameters() for t in testing.enqueued_tasks(sub.continue_())]
    assert params == [{"a": 1, "__idx": 3}, {"b": 2, "__idx": 3}, {"__idx": 3}]


@pytest.mark.parametrize("bad", [[1], "s", 3, 2.5, True])
def test_sub_instance_refuses_non_object_parameters(bad) -> None:
    sub = SubWorkflowInstance(
        testing.make_instance(), WorkflowState(), None, routing_key="__idx", routing_value=0
    )
    with pytest.raises(TypeError, match="must be an object"):
        sub.enqueue_task("t", bad)


def test_sub_instance_refuses_the_reserved_key() -> None:
    sub = SubWorkflowInstance(
        testing.make_instance(), WorkflowState(), None, routing_key="__idx", routing_value=0
    )
    with pytest.raises(ValueError, match="'__idx' is reserved"):
        sub.enqueue_task("t", {"__idx": 9})


def snapshot(status, *, payload=None, result=None, err=None) -> ImmutableWorkflowInstance:
    return ImmutableWorkflowInstance(
        WorkflowInstanceData(
            "chain",
            "c1",
            status,
            parameters=b'{"WorkflowParams":["a","b"]}',
            payload=payload,
            result=result,
            err=err,
        )
    )


def test_reader_of_a_running_chain() -> None:
    body = b'{"Cancelled":true,"State":[{"Payload":null,"Result":5,"Err":"","EnqueuedTasks":0,'
    body += b'"CompletedTasks":0,"IsFinished":true},{"Payload":"p","Result":null,"Err":"",'
    body += b'"EnqueuedTasks":1,"CompletedTasks":0,"IsFinished":false}]}'
    chain = ChainWorkflowInstance(snapshot(WorkflowInstanceStatus.RUNNING, payload=body))

    assert chain.is_running() and chain.is_cancelled()
    assert chain.get_parameters() == ["a", "b"]
    assert chain.sub_workflow_count() == 2
    first, second = chain.get_sub_workflow(0), chain.get_sub_workflow(1)
    assert (first.is_running(), first.get_result(), first.get_parameters()) == (False, 5, "a")
    assert (second.is_running(), second.get_payload()) == (True, "p")
    with pytest.raises(errors.WorkflowNotCompleteError):
        second.get_result()
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        chain.get_sub_workflow(2)
    with pytest.raises(errors.WorkflowNotCompleteError):
        chain.get_result()


def test_reader_of_a_finished_chain_with_a_failed_link() -> None:
    body = b'{"Cancelled":false,"State":[{"Payload":null,"Result":null,"Err":"broke",'
    body += b'"EnqueuedTasks":0,"CompletedTasks":0,"IsFinished":true}]}'
    chain = ChainWorkflowInstance(snapshot(WorkflowInstanceStatus.COMPLETED, result=body))

    assert not chain.is_running() and chain.err() is None
    link = chain.get_sub_workflow(0)
    assert str(link.err()) == "broke"
    with pytest.raises(errors.WorkflowFailedError, match="broke"):
        link.get_result()


def test_reader_of_a_failed_chain_has_no_links() -> None:
    chain = ChainWorkflowInstance(snapshot(WorkflowInstanceStatus.COMPLETED, err="killed"))

    assert str(chain.err()) == "killed"
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        chain.get_sub_workflow(0)
