"""Workflow concurrency keys: at most the limit of a key's live runs are started at once.

A run over the limit is created at once (its names are taken, lookups show
it ``waiting_for_key``) but none of its events is delivered until a started
run of the key ends; then the oldest waiting run starts, in the same
transaction. Every case runs on every driver setup (memory, SQLite,
PostgreSQL, gRPC).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cereal import Decision, Manager, RequeueOutcome, WorkflowInstance, errors
from cereal.drivers import Driver, WorkflowCompleter
from cereal.models import WorkflowEventType, WorkflowInstanceStatus
from tests.conformance._driver_helpers import WF
from tests.conformance._executors import Flow, register
from tests.plugins.manager import MakeManager, wait_finished


async def keyed(
    driver: Driver, instance_name: str, key: str = "k", limit: int = 2, workflow_name: str = WF
) -> None:
    """Enqueue a run of ``workflow_name`` under ``key`` with ``limit``."""
    await driver.enqueue_keyed_workflow(workflow_name, instance_name, None, key, limit)


async def claim_all(driver: Driver, names: tuple[str, ...] = (WF,)) -> dict[str, Any]:
    """Claim every claimable instance; each instance name with its (events, completer)."""
    claimed = await driver.claim_workflows(list(names), max_instances=50, max_events=10)
    return {events[0].instance.instance_name: (events, completer) for events, completer in claimed}


async def release(claimed: dict[str, Any]) -> None:
    for _, completer in claimed.values():
        await completer.close()


async def waiting(driver: Driver, instance_name: str, workflow_name: str = WF) -> bool:
    return (await driver.get_workflow_instance(workflow_name, instance_name)).waiting_for_key


async def test_runs_over_the_limit_wait_and_start_oldest_first_as_started_ones_end(
    driver: Driver,
) -> None:
    # Given four runs of one key with a limit of 2
    for name in ("a", "b", "c", "d"):
        await keyed(driver, name)

    # Then only the first two are started and claimable; the others wait
    claimed = await claim_all(driver)
    assert sorted(claimed) == ["a", "b"]
    assert [await waiting(driver, name) for name in "abcd"] == [False, False, True, True]
    shown = await driver.get_workflow_instance(WF, "c")
    assert (shown.concurrency_key, shown.concurrency_limit) == ("k", 2)
    assert shown.status is WorkflowInstanceStatus.STARTING

    # When "a" completes, "c" starts (and only it)
    completer: WorkflowCompleter = claimed.pop("a")[1]
    await completer.done(None)
    await release(claimed)
    claimed = await claim_all(driver)
    assert sorted(claimed) == ["b", "c"]
    assert not await waiting(driver, "c")
    assert await waiting(driver, "d")

    # When "b" is killed, "d" starts
    await release(claimed)
    await driver.kill_workflow(WF, "b", "killed")
    claimed = await claim_all(driver)
    assert sorted(claimed) == ["c", "d"]
    await release(claimed)


async def test_a_cancel_of_a_waiting_run_is_delivered_after_its_start(driver: Driver) -> None:
    await keyed(driver, "a", limit=1)
    await keyed(driver, "b", limit=1)
    await driver.cancel_workflow(WF, "b")

    # the waiting run's events, the cancel's included, are not delivered
    claimed = await claim_all(driver)
    assert sorted(claimed) == ["a"]
    await claimed["a"][1].done(None)

    [(events, completer)] = await driver.claim_workflows([WF], max_events=10)
    assert [event.type for event in events] == [WorkflowEventType.START, WorkflowEventType.CANCEL]
    await completer.close()


async def test_killing_a_waiting_run_frees_no_slot_and_skips_it(driver: Driver) -> None:
    for name in ("a", "b", "c"):
        await keyed(driver, name, limit=1)

    await driver.kill_workflow(WF, "b", "killed")
    assert sorted(await claim_all(driver)) == ["a"]  # c still waits: a holds the slot
    assert await waiting(driver, "c")
    done = await driver.get_workflow_instance(WF, "b")
    assert done.status is WorkflowInstanceStatus.COMPLETED and done.err == "killed"


async def test_a_key_counts_the_runs_of_every_workflow_name(driver: Driver) -> None:
    await keyed(driver, "one", limit=1, workflow_name="w1")
    await keyed(driver, "two", limit=1, workflow_name="w2")
    await keyed(driver, "free", key="other", limit=1, workflow_name="w2")

    claimed = await claim_all(driver, ("w1", "w2"))
    assert sorted(claimed) == ["free", "one"]
    assert await waiting(driver, "two", "w2")
    await release(claimed)


async def test_runs_start_in_enqueue_order_whatever_their_limits(driver: Driver) -> None:
    # Given a started run (limit 1) and a waiting one behind it
    await keyed(driver, "a", limit=1)
    await keyed(driver, "b", limit=1)

    # When a run with a higher limit is enqueued
    await keyed(driver, "c", limit=2)

    # Then it does not go ahead of the older waiting run
    assert [await waiting(driver, name) for name in "abc"] == [False, True, True]


async def test_killing_a_waiting_run_lets_the_run_behind_it_start_if_it_fits(
    driver: Driver,
) -> None:
    # Given a started run (limit 2), a waiting head of limit 1 and a run of limit 2 behind it
    await keyed(driver, "s", limit=2)
    await keyed(driver, "w1", limit=1)
    await keyed(driver, "w2", limit=2)
    assert await waiting(driver, "w2")

    # When the head is killed, the run behind it fits its own limit and starts
    await driver.kill_workflow(WF, "w1", "killed")
    assert not await waiting(driver, "w2")


async def test_the_names_of_a_waiting_run_are_taken(driver: Driver) -> None:
    await keyed(driver, "a", limit=1)
    await keyed(driver, "b", limit=1)

    with pytest.raises(errors.WorkflowInstanceExistsError):
        await keyed(driver, "b", limit=1)
    with pytest.raises(errors.WorkflowInstanceExistsError):
        await driver.enqueue_workflow(WF, "b", None)


async def test_a_requeued_failed_run_goes_back_under_its_key(driver: Driver) -> None:
    await keyed(driver, "a", limit=1)
    [(_, completer)] = await driver.claim_workflows([WF])
    await completer.fail("boom")
    [failed] = await driver.list_failed_runs()

    assert await driver.requeue_failed_runs([failed.run_id]) == {
        failed.run_id: RequeueOutcome.REQUEUED
    }
    await keyed(driver, "b", limit=1)

    requeued = await driver.get_workflow_instance(WF, "a")
    assert (requeued.concurrency_key, requeued.waiting_for_key) == ("k", False)
    assert await waiting(driver, "b")


async def test_an_idempotent_keyed_start_starts_one_run(driver: Driver) -> None:
    assert await driver.enqueue_keyed_workflow(WF, "a", None, "k", 1, idempotency_key="r1") is None
    again = await driver.enqueue_keyed_workflow(WF, "a2", None, "k", 1, idempotency_key="r1")

    assert again == "a"
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await driver.get_workflow_instance(WF, "a2")


# ---- through the Manager ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({"concurrency_key": "k"}, ValueError, "concurrency_limit"),
        ({"concurrency_limit": 2}, ValueError, "concurrency_key"),
        ({"concurrency_key": "k", "concurrency_limit": 0}, ValueError, "concurrency_limit"),
        ({"concurrency_key": "k", "concurrency_limit": 10_001}, ValueError, "concurrency_limit"),
        ({"concurrency_key": "k", "concurrency_limit": "2"}, TypeError, "concurrency_limit"),
        ({"concurrency_key": "", "concurrency_limit": 2}, ValueError, "concurrency_key"),
        ({"concurrency_key": "a\x00b", "concurrency_limit": 2}, ValueError, "concurrency_key"),
        ({"concurrency_key": 7, "concurrency_limit": 2}, TypeError, "concurrency_key"),
    ],
)
async def test_a_bad_key_or_limit_is_refused_and_nothing_is_stored(
    make_manager: MakeManager, options: dict[str, Any], error: type[Exception], field: str
) -> None:
    manager = make_manager()
    with pytest.raises(error, match=field):
        await manager.enqueue_workflow(WF, "a", None, **options)
    assert await manager.list_workflow_instances() == []


async def test_no_more_than_the_limit_of_runs_are_started_at_once(
    make_manager: MakeManager,
) -> None:
    # Given six runs of one key, limit 2, each holding its slot until its task ends
    lock = threading.Lock()
    started: set[str] = set()
    most: list[int] = []

    def on_start(w: WorkflowInstance, ev: object) -> Decision:
        with lock:
            started.add(w.instance_name)
            most.append(len(started))
        w.enqueue_task("work", w.instance_name)
        return w.continue_()

    def on_task_complete(w: WorkflowInstance, ev: object) -> Decision:
        with lock:  # before the decision ends the run (and starts the next)
            started.discard(w.instance_name)
        return w.complete(w.instance_name)

    manager: Manager = register(
        make_manager(), {WF: Flow(on_start, on_task_complete)}, {"work": lambda task: None}
    )
    await manager.start()
    for n in range(6):
        await manager.enqueue_workflow(WF, f"r{n}", None, concurrency_key="k", concurrency_limit=2)

    # Then every run completes, and never more than two were started at once
    for n in range(6):
        assert (await wait_finished(manager, WF, f"r{n}")).get_result() == f"r{n}"
    assert max(most) <= 2, most
