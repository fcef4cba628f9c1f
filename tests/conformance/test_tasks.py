"""Task executors via the Manager (BEHAVIOUR 3): outcomes, threads, workers, timeouts, delays."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cereal import Decision, Task, TaskStatus, WorkflowInstance
from tests.conformance._executors import (
    INST,
    WF,
    AsyncBlocker,
    Flow,
    PlainBlocker,
    enqueue,
    register,
)
from tests.plugins.manager import MakeManager, eventually, wait_finished


def only_result(w: WorkflowInstance, ev: Any) -> Decision:
    """Complete with a description of the single task's outcome."""
    result = ev.result
    failure = result.err()
    return w.complete(
        {
            "status": str(result.status),
            "error": None if failure is None else str(failure),
            "error_type": None if failure is None else type(failure).__name__,
        }
    )


class MissingThing(Exception):
    def __str__(self) -> str:
        return "custom text, exactly"


async def test_task_error_text_is_str_of_the_exception(make_manager: MakeManager) -> None:
    # Given task executors raising exceptions whose str() is unusual
    def raise_key_error(task: Task) -> None:
        raise KeyError("missing")

    async def raise_custom(task: Task) -> None:
        raise MissingThing("ignored by __str__")

    flow = Flow(enqueue(("key", None)), only_result)
    other = Flow(enqueue(("custom", None)), only_result)
    manager = register(
        make_manager(), {WF: flow, "wf-2": other}, {"key": raise_key_error, "custom": raise_custom}
    )
    await manager.start()

    # When they run
    await manager.enqueue_workflow(WF, INST)
    await manager.enqueue_workflow("wf-2", INST)

    # Then the workflow sees exactly str(exception), nothing added
    assert (await wait_finished(manager, WF, INST)).get_result()["error"] == "'missing'"
    assert (await wait_finished(manager, "wf-2", INST)).get_result()["error"] == (
        "custom text, exactly"
    )


async def test_failed_task_has_failed_status_and_err(make_manager: MakeManager) -> None:
    # Given a task executor that raises
    def explode(task: Task) -> None:
        raise RuntimeError("disk full")

    seen: list[Any] = []

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        seen.append(ev.result)
        try:
            ev.result.get()
        except Exception as exc:
            return w.complete(f"get raised: {exc}")
        return w.complete("get returned")

    manager = register(
        make_manager(), {WF: Flow(enqueue(("boom", {"n": 1})), on_task_complete)}, {"boom": explode}
    )
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then the result is FAILED, err() carries the text and get() raises it
    [result] = seen
    assert result.status == TaskStatus.FAILED
    assert result.status == "failed"
    assert str(result.err()) == "disk full"
    assert result.task_name == "boom"
    assert result.get_parameters() == {"n": 1}
    assert done.get_result() == "get raised: disk full"


async def test_plain_executor_runs_in_a_thread_and_async_executor_on_the_loop(
    make_manager: MakeManager,
) -> None:
    # Given one plain and one async task executor recording where they run
    where: dict[str, Any] = {}

    def plain(task: Task) -> str:
        where["plain"] = threading.current_thread()
        return "plain"

    async def in_loop(task: Task) -> str:
        where["async"] = threading.current_thread()
        where["loop"] = asyncio.get_running_loop()
        return "async"

    flow = Flow(enqueue(("plain", None), ("async", None)))
    manager = register(make_manager(), {WF: flow}, {"plain": plain, "async": in_loop})
    await manager.start()

    # When both run
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)

    # Then the plain one ran off the loop's thread and the async one on the loop
    assert where["plain"] is not threading.current_thread()
    assert where["async"] is threading.current_thread()
    assert where["loop"] is asyncio.get_running_loop()


class ConcurrencyProbe:
    """An async task executor tracking how many of its tasks run at once.

    Each task runs until ``wait_for`` of them have been running together (at
    once, for the first ones; later ones find that done and return).
    """

    def __init__(self, *, wait_for: int) -> None:
        self.running = 0
        self.max_running = 0
        self.wait_for = wait_for

    async def run(self, task: Task) -> int:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await eventually(
                lambda: self.max_running >= self.wait_for,
                timeout=20,
                what=f"{self.wait_for} tasks running at once",
            )
            return self.max_running
        finally:
            self.running -= 1


async def test_workers_limit_caps_concurrent_tasks(make_manager: MakeManager) -> None:
    # Given a task executor registered with 2 workers and 8 tasks for it; the first tasks
    # run until two run together (the cap is reached, not just never passed)
    probe = ConcurrencyProbe(wait_for=2)
    flow = Flow(enqueue(*(("work", n) for n in range(8))))
    manager = register(make_manager(), {WF: flow}, {"work": probe}, workers=2)
    await manager.start()

    # When they all run
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)

    # Then 2 ran at once, never more
    assert probe.max_running == 2


async def test_several_workers_run_tasks_concurrently(make_manager: MakeManager) -> None:
    # Given 3 workers and 3 tasks that each wait until all 3 run at once
    probe = ConcurrencyProbe(wait_for=3)
    flow = Flow(enqueue(*(("work", n) for n in range(3))))
    manager = register(make_manager(), {WF: flow}, {"work": probe}, workers=3)
    await manager.start()

    # When they run
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST, timeout=30)

    # Then all three succeeded, having seen each other running
    assert [entry["status"] for entry in done.get_result()] == ["success"] * 3
    assert probe.max_running == 3


async def test_async_executor_past_its_timeout_is_cancelled_and_reported_failed(
    make_manager: MakeManager,
) -> None:
    # Given an async task executor that never ends by itself, with a short timeout
    blocker = AsyncBlocker()
    manager = register(
        make_manager(),
        {WF: Flow(enqueue(("slow", None)), only_result)},
        {"slow": blocker},
        timeout=0.3,
    )
    await manager.start()

    try:
        # When it runs
        await manager.enqueue_workflow(WF, INST)
        done = await wait_finished(manager, WF, INST)
    finally:
        blocker.release.set()

    # Then it was cancelled and reported failed with a timeout text
    outcome = done.get_result()
    assert outcome["status"] == "failed"
    assert "time" in outcome["error"].lower()
    assert len(blocker.cancelled) == 1


async def test_plain_executor_past_its_timeout_is_abandoned_and_reported_failed(
    make_manager: MakeManager,
) -> None:
    # Given a plain task executor that blocks, with a short timeout
    blocker = PlainBlocker()
    manager = register(
        make_manager(),
        {WF: Flow(enqueue(("slow", None)), only_result)},
        {"slow": blocker},
        timeout=0.3,
    )
    await manager.start()

    try:
        # When it runs
        await manager.enqueue_workflow(WF, INST)
        done = await wait_finished(manager, WF, INST)
    finally:
        blocker.release.set()

    # Then the workflow saw it failed with a timeout text, without waiting for the thread
    outcome = done.get_result()
    assert outcome["status"] == "failed"
    assert "time" in outcome["error"].lower()


async def test_start_after_in_the_future_delays_the_task(make_manager: MakeManager) -> None:
    # Given a workflow enqueueing a task to start 2 s from now
    starts: list[datetime] = []
    not_before: list[datetime] = []

    def record_start(task: Task) -> None:
        starts.append(datetime.now(UTC))

    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        when = datetime.now(UTC) + timedelta(seconds=2)
        not_before.append(when)
        w.enqueue_task("later", None, start_after=when)
        return w.continue_("enqueued")

    manager = register(make_manager(), {WF: Flow(on_start, only_result)}, {"later": record_start})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    await eventually(lambda: not_before != [], what="task enqueued")
    await eventually(lambda: _payload_is(manager, "enqueued"), what="continue applied")

    # Then the task has not started before its time, and starts after it
    assert all(started >= not_before[0] for started in starts)
    done = await wait_finished(manager, WF, INST)
    assert done.get_result()["status"] == "success"
    assert len(starts) == 1
    assert starts[0] >= not_before[0]


async def _payload_is(manager: Any, value: Any) -> bool:
    found = await manager.get_workflow_instance(WF, INST)
    return not found.is_running() or found.get_payload() == value


async def test_task_metadata_names_its_workflow_and_an_aware_enqueue_time(
    make_manager: MakeManager,
) -> None:
    # Given a task executor that captures its metadata
    seen: list[Task] = []
    manager = register(make_manager(), {WF: Flow(enqueue(("meta", None)))}, {"meta": seen.append})
    await manager.start()
    before = datetime.now(UTC) - timedelta(seconds=5)

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    await wait_finished(manager, WF, INST)

    # Then the metadata is complete
    [task] = seen
    metadata = task.metadata
    assert metadata.enqueued_at.tzinfo is not None
    assert metadata.enqueued_at.utcoffset() == timedelta(0)
    assert before <= metadata.enqueued_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert metadata.workflow_name == WF
    assert metadata.instance_name == INST


async def test_unencodable_task_result_fails_the_task_once(make_manager: MakeManager) -> None:
    # Given a task executor returning something JSON cannot hold
    runs: list[Task] = []

    def unencodable(task: Task) -> object:
        runs.append(task)
        return object()

    flow = Flow(enqueue(("bad", None)), only_result)
    manager = register(make_manager(), {WF: flow}, {"bad": unencodable})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then the task failed once, with the encoder's message
    outcome = done.get_result()
    assert outcome["status"] == "failed"
    assert "is not JSON serializable" in outcome["error"]
    assert len(runs) == 1
    assert flow.count("task", INST) == 1


async def test_wakeups_can_be_called_from_another_thread(make_manager: MakeManager) -> None:
    # Given a started Manager
    manager = register(make_manager(), {WF: Flow(enqueue(("t", 1)))}, {"t": lambda t: 2})
    failures: list[BaseException] = []

    def nudge() -> None:
        try:
            manager.wakeup_workflow_executor()
            manager.wakeup_task_poller("t")
            manager.wakeup_task_poller("not-registered")
        except BaseException as exc:
            failures.append(exc)

    nudge_before_start = threading.Thread(target=nudge)
    nudge_before_start.start()
    nudge_before_start.join()
    await manager.start()

    # When the wakeups are called from another thread
    thread = threading.Thread(target=nudge)
    thread.start()
    await asyncio.to_thread(thread.join)

    # Then nothing raised and the Manager still works
    assert failures == []
    await manager.enqueue_workflow(WF, INST)
    assert (await wait_finished(manager, WF, INST)).get_result()[0]["result"] == 2


@dataclass
class Point:
    x: int
    y: int


async def test_dataclass_task_result_round_trips(make_manager: MakeManager) -> None:
    # Given a task executor returning a dataclass
    decoded: list[Any] = []

    def on_task_complete(w: WorkflowInstance, ev: Any) -> Decision:
        decoded.append(ev.result.get(Point))
        return w.complete(ev.result.get())

    manager = register(
        make_manager(),
        {WF: Flow(enqueue(("point", None)), on_task_complete)},
        {"point": lambda task: Point(1, 2)},
    )
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then the workflow decodes it back, and the plain JSON is an object
    assert decoded == [Point(1, 2)]
    assert done.get_result() == {"x": 1, "y": 2}


@pytest.mark.parametrize("limit", [None, 2])
async def test_plain_executor_threads_left_by_timeouts_are_capped(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture, limit: int | None
) -> None:
    # Given a plain executor that ignores cancellation and blocks on a gate, with
    # one worker and a tiny timeout: each timed-out run leaves its thread behind
    gate = threading.Event()
    started: list[int] = []

    def stubborn(task: Task) -> str:
        started.append(task.get_parameters())
        gate.wait(60)
        return "done"

    manager = register(
        make_manager(),
        {WF: Flow(enqueue(("stuck", 1), ("stuck", 2), ("stuck", 3)))},
        {"stuck": stubborn},
        timeout=0.05,
        max_stray_threads=limit,
    )
    cap = 1 if limit is None else limit  # the default is the worker count
    caplog.set_level(logging.WARNING, logger="cereal")
    await manager.start()

    try:
        # When tasks time out while their threads still run
        await manager.enqueue_workflow(WF, INST)

        def capped() -> bool:
            return any("threads" in r.getMessage() for r in caplog.records)

        await eventually(lambda: capped() or len(started) > cap, what="the cap or one run more")
        # Then the runner stops claiming, and says why, instead of starting more threads
        assert started == [1, 2][:cap]
        [warning] = [r for r in caplog.records if "threads" in r.getMessage()]
        assert warning.levelno == logging.WARNING
        assert "'stuck'" in warning.getMessage()
    finally:
        gate.set()

    # And once the thread ends, claiming resumes and every task is reported
    done = await wait_finished(manager, WF, INST)
    assert sorted(started) == [1, 2, 3]
    assert len(done.get_result()) == 3
