"""The composition patterns end to end through a real Manager, on every driver (BEHAVIOUR 8)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from cereal import Task, testing
from cereal.patterns import (
    ChainWorkflowExecutor,
    ParallelWorkflowExecutor,
    enqueue_chain_workflow,
    enqueue_parallel_workflow,
    get_chain_workflow_instance,
    get_parallel_workflow_instance,
    register_single_task_workflow_executor,
)
from cereal.patterns.single_task import CANCELLED, SingleTaskWorkflowExecutor
from tests.plugins.manager import MakeManager, eventually, wait_finished


def one_task(task_name: str, on_cancel: Any = None) -> testing.FunctionExecutor:
    """A sub-workflow: one task with its parameters under "n"; completes with the task's result."""

    def start(w: Any, ev: Any) -> Any:
        w.enqueue_task(task_name, {"n": w.get_parameters()})
        return w.continue_({"waiting": task_name})

    def done(w: Any, ev: Any) -> Any:
        failure = ev.result.err()
        return w.fail(failure) if failure else w.complete(ev.result.get())

    return testing.make_executor(start, done, on_cancel)


complete_at_once = testing.make_executor(on_start=lambda w, ev: w.complete(w.get_parameters()))


# ---- single task ----------------------------------------------------------------------------


async def test_single_task_workflow_ends_with_the_tasks_result(make_manager: MakeManager) -> None:
    # Given a single-task workflow whose task doubles its parameter
    manager = make_manager()
    register_single_task_workflow_executor(manager, "double", lambda t: t.get_parameters() * 2)
    await manager.start()

    # When it runs
    await manager.enqueue_workflow("double", "a", 21)

    # Then its result is the task's
    assert (await wait_finished(manager, "double", "a")).get_result() == 42


async def test_single_task_workflow_fails_with_the_tasks_error(make_manager: MakeManager) -> None:
    def broken(task: Task) -> None:
        raise ValueError("no such file")

    manager = make_manager()
    register_single_task_workflow_executor(manager, "read", broken)
    await manager.start()

    await manager.enqueue_workflow("read", "a")

    done = await wait_finished(manager, "read", "a")
    assert str(done.err()) == "no such file"


async def test_single_task_workflow_honours_the_timeout(make_manager: MakeManager) -> None:
    async def slow(task: Task) -> str:
        await asyncio.sleep(30)
        return "too late"

    manager = make_manager()
    register_single_task_workflow_executor(manager, "slow", slow, timeout=0.2)
    await manager.start()

    await manager.enqueue_workflow("slow", "a")

    done = await wait_finished(manager, "slow", "a")
    assert "timed out" in str(done.err())


async def test_single_task_workflow_honours_workers(make_manager: MakeManager) -> None:
    running: set[str] = set()
    peak: list[int] = [0]
    release = asyncio.Event()

    async def work(task: Task) -> str:
        name = task.metadata.instance_name
        running.add(name)
        peak[0] = max(peak[0], len(running))
        await release.wait()
        running.discard(name)
        return name

    manager = make_manager()
    register_single_task_workflow_executor(manager, "pool", work, workers=3)
    await manager.start()

    for i in range(3):
        await manager.enqueue_workflow("pool", f"i{i}")
    await eventually(lambda: len(running) == 3, what="three tasks running at once")
    release.set()

    for i in range(3):
        assert (await wait_finished(manager, "pool", f"i{i}")).get_result() == f"i{i}"
    assert peak[0] == 3


async def test_single_task_cancel_allowed_fails_the_workflow(make_manager: MakeManager) -> None:
    started = asyncio.Event()

    async def forever(task: Task) -> None:
        started.set()
        await asyncio.sleep(60)

    manager = make_manager()
    register_single_task_workflow_executor(manager, "long", forever, allow_cancel=True)
    await manager.start()
    await manager.enqueue_workflow("long", "a")
    await asyncio.wait_for(started.wait(), 15)

    await manager.cancel_workflow("long", "a")

    assert str((await wait_finished(manager, "long", "a")).err()) == CANCELLED


async def test_single_task_cancel_not_allowed_is_ignored(make_manager: MakeManager) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    cancel_seen = threading.Event()  # on_cancel is plain: it runs in a worker thread

    class Observed(SingleTaskWorkflowExecutor):
        def on_cancel(self, w: Any, ev: Any) -> Any:
            decision = super().on_cancel(w, ev)
            cancel_seen.set()
            return decision

    async def gated(task: Task) -> str:
        started.set()
        await release.wait()
        return "finished anyway"

    manager = make_manager()
    manager.register_workflow_executor("gated", Observed("gated"))
    manager.register_task_executor("gated", gated)
    await manager.start()
    await manager.enqueue_workflow("gated", "a")
    await asyncio.wait_for(started.wait(), 15)

    await manager.cancel_workflow("gated", "a")
    await eventually(cancel_seen.is_set, what="on_cancel ran")
    release.set()

    assert (await wait_finished(manager, "gated", "a")).get_result() == "finished anyway"


# ---- chain ----------------------------------------------------------------------------------


async def test_chain_runs_links_in_order(make_manager: MakeManager) -> None:
    # Given a chain of two one-task links whose task executor records what it sees
    seen: list[Any] = []

    def square(task: Task) -> int:
        seen.append(task.get_parameters())
        n: int = task.get_parameters()["n"]
        return n * n

    manager = make_manager()
    manager.register_workflow_executor(
        "chain", ChainWorkflowExecutor(one_task("square"), one_task("square"))
    )
    manager.register_task_executor("square", square)
    await manager.start()

    # When it runs
    await enqueue_chain_workflow(manager, "chain", "c", [3, 4])
    await wait_finished(manager, "chain", "c")

    # Then each link ran after the other, and task executors saw the routing key
    chain = await get_chain_workflow_instance(manager, "chain", "c")
    assert not chain.is_running() and not chain.is_cancelled() and chain.err() is None
    assert [chain.get_sub_workflow(i).get_result() for i in range(2)] == [9, 16]
    assert chain.get_parameters() == [3, 4]
    assert seen == [{"n": 3, "__idx": 0}, {"n": 4, "__idx": 1}]


async def test_chain_stops_at_a_failed_link(make_manager: MakeManager) -> None:
    def fail_on_odd(task: Task) -> int:
        n: int = task.get_parameters()["n"]
        if n % 2:
            raise ValueError(f"{n} is odd")
        return n

    manager = make_manager()
    manager.register_workflow_executor(
        "chain", ChainWorkflowExecutor(one_task("even"), one_task("even"), one_task("even"))
    )
    manager.register_task_executor("even", fail_on_odd)
    await manager.start()

    await enqueue_chain_workflow(manager, "chain", "c", [2, 3, 4])
    await wait_finished(manager, "chain", "c")

    chain = await get_chain_workflow_instance(manager, "chain", "c")
    assert chain.err() is None
    assert chain.sub_workflow_count() == 2
    assert chain.get_sub_workflow(0).get_result() == 2
    assert str(chain.get_sub_workflow(1).err()) == "3 is odd"


async def test_chain_cancel_stops_after_the_current_link(make_manager: MakeManager) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def gated(task: Task) -> str:
        started.set()
        await release.wait()
        return "first done"

    keep_going = one_task("gated", on_cancel=lambda w, ev: w.continue_(w.get_payload()))
    manager = make_manager()
    manager.register_workflow_executor("chain", ChainWorkflowExecutor(keep_going, complete_at_once))
    manager.register_task_executor("gated", gated)
    await manager.start()
    await enqueue_chain_workflow(manager, "chain", "c", [1, 2])
    await asyncio.wait_for(started.wait(), 15)

    await manager.cancel_workflow("chain", "c")

    async def cancel_seen() -> bool:
        return (await get_chain_workflow_instance(manager, "chain", "c")).is_cancelled()

    await eventually(cancel_seen, what="the chain marked cancelled")
    release.set()
    await wait_finished(manager, "chain", "c")
    chain = await get_chain_workflow_instance(manager, "chain", "c")
    assert chain.is_cancelled()
    assert chain.sub_workflow_count() == 1
    assert chain.get_sub_workflow(0).get_result() == "first done"


# ---- parallel -------------------------------------------------------------------------------


async def test_parallel_runs_all_and_records_each_outcome(make_manager: MakeManager) -> None:
    # Given three sub-workflows: one with tasks, one done at once, one whose task fails
    def work(task: Task) -> int:
        n: int = task.get_parameters()["n"]
        if n < 0:
            raise ValueError("negative")
        return n + 1

    manager = make_manager()
    executors = {"tasks": one_task("work"), "quick": complete_at_once, "bad": one_task("work")}
    manager.register_workflow_executor("par", ParallelWorkflowExecutor(executors))
    manager.register_task_executor("work", work)
    await manager.start()

    # When it runs (the quick one completes while another has enqueued tasks: the fixed bug)
    await enqueue_parallel_workflow(manager, "par", "p", {"tasks": 1, "quick": "q", "bad": -1})
    await wait_finished(manager, "par", "p")

    # Then every sub-workflow's outcome is recorded and the composite completed
    par = await get_parallel_workflow_instance(manager, "par", "p")
    assert par.err() is None and not par.is_running()
    assert par.list_sub_workflows() == ["tasks", "quick", "bad"]
    assert par.get_sub_workflow("tasks").get_result() == 2
    assert par.get_sub_workflow("quick").get_result() == "q"
    assert str(par.get_sub_workflow("bad").err()) == "negative"


async def test_parallel_missing_executor_fails_the_composite(make_manager: MakeManager) -> None:
    manager = make_manager()
    manager.register_workflow_executor("par", ParallelWorkflowExecutor({"a": complete_at_once}))
    await manager.start()

    await enqueue_parallel_workflow(manager, "par", "p", {"a": 1, "ghost": 2})

    done = await wait_finished(manager, "par", "p")
    assert "could not find workflow executor for sub-workflow 'ghost'" in str(done.err())


async def test_parallel_cancel_reaches_running_sub_workflows(make_manager: MakeManager) -> None:
    started = asyncio.Event()

    async def forever(task: Task) -> None:
        started.set()
        await asyncio.sleep(60)

    stop = one_task("forever", on_cancel=lambda w, ev: w.fail("stopped"))
    manager = make_manager()
    manager.register_workflow_executor(
        "par", ParallelWorkflowExecutor({"slow": stop, "quick": complete_at_once})
    )
    manager.register_task_executor("forever", forever)
    await manager.start()
    await enqueue_parallel_workflow(manager, "par", "p", {"slow": 1, "quick": 2})
    await asyncio.wait_for(started.wait(), 15)

    await manager.cancel_workflow("par", "p")
    await wait_finished(manager, "par", "p")

    par = await get_parallel_workflow_instance(manager, "par", "p")
    assert str(par.get_sub_workflow("slow").err()) == "stopped"
    assert par.get_sub_workflow("quick").get_result() == 2
