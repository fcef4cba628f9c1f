"""Idempotency keys on workflow starts: a repeated start with a key starts one run.

Every case runs on every driver setup (memory, SQLite, PostgreSQL, gRPC),
through the Manager. Expiry after the 24 h window and racing starts are in
``tests/drivers/test_start_key_expiry.py``.
"""

from __future__ import annotations

import pytest

from cereal import EnqueuedWorkflow, errors
from cereal.drivers import Driver
from tests.conformance._driver_helpers import ODD_NAMES, WF, take
from tests.plugins.manager import MakeManager


async def _live(driver: Driver) -> list[str]:
    from cereal.models import ListWorkflowFilter

    listed = await driver.list_workflow_instances(ListWorkflowFilter(workflow_name=WF))
    return sorted(i.instance_name for i in listed if i.status.value in ("starting", "running"))


async def test_a_repeated_key_returns_the_run_it_started_and_starts_nothing(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    first = await manager.enqueue_workflow(WF, "order-1", {"n": 1}, idempotency_key="req-1")
    again = await manager.enqueue_workflow(WF, "order-1b", {"n": 2}, idempotency_key="req-1")
    assert first == EnqueuedWorkflow(WF, "order-1", created=True)
    assert again == EnqueuedWorkflow(WF, "order-1", created=False)
    assert await _live(manager.driver) == ["order-1"]
    run = await manager.get_workflow_instance(WF, "order-1")
    assert run.get_parameters() == {"n": 1}  # the first call's run, untouched


async def test_a_key_still_names_its_run_after_the_run_finished(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    await manager.enqueue_workflow(WF, "inst", idempotency_key="req")
    driver = await manager._storage()
    event, completer = await take(driver)  # the run completes
    async with completer:
        assert event.instance.instance_name == "inst"
        await completer.done(b'"done"')
    again = await manager.enqueue_workflow(WF, "inst", idempotency_key="req")
    assert again == EnqueuedWorkflow(WF, "inst", created=False)
    assert await _live(driver) == []  # no second run of the name


async def test_keys_belong_to_their_workflow_name(make_manager: MakeManager) -> None:
    manager = make_manager()
    a = await manager.enqueue_workflow(WF, "inst", idempotency_key="same")
    b = await manager.enqueue_workflow("other", "inst", idempotency_key="same")
    assert (a.created, b.created) == (True, True)


async def test_a_new_key_on_live_names_is_refused_and_not_recorded(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    await manager.enqueue_workflow(WF, "busy")
    with pytest.raises(errors.WorkflowInstanceExistsError):
        await manager.enqueue_workflow(WF, "busy", idempotency_key="k")
    # the key was rolled back with the refused start: it starts the next run
    later = await manager.enqueue_workflow(WF, "free", idempotency_key="k")
    assert later == EnqueuedWorkflow(WF, "free", created=True)


async def test_without_a_key_the_call_reports_the_run_it_started(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    assert await manager.enqueue_workflow(WF, "plain") == EnqueuedWorkflow(WF, "plain", True)


@pytest.mark.parametrize("key", ODD_NAMES)
async def test_any_printable_key_round_trips(make_manager: MakeManager, key: str) -> None:
    manager = make_manager()
    await manager.enqueue_workflow(WF, "one", idempotency_key=key)
    again = await manager.enqueue_workflow(WF, "two", idempotency_key=key)
    assert again == EnqueuedWorkflow(WF, "one", created=False)


@pytest.mark.parametrize(
    ("key", "error", "says"),
    [
        ("", ValueError, "idempotency key must not be empty"),
        ("k" * 256, ValueError, "idempotency key"),
        ("bad\nkey", ValueError, "idempotency key"),
        (7, TypeError, "idempotency key must be a str"),
        (b"bytes", TypeError, "idempotency key must be a str"),
    ],
)
async def test_a_bad_key_is_refused_and_nothing_is_stored(
    make_manager: MakeManager, key: object, error: type[Exception], says: str
) -> None:
    manager = make_manager()
    with pytest.raises(error, match=says):
        await manager.enqueue_workflow(WF, "inst", idempotency_key=key)  # type: ignore[arg-type]
    assert await _live(await manager._storage()) == []


async def test_a_key_with_the_callers_transaction_is_refused(make_manager: MakeManager) -> None:
    manager = make_manager()
    with pytest.raises(ValueError, match="cannot be combined with connection="):
        await manager.enqueue_workflow(WF, "inst", idempotency_key="k", connection=object())
    assert await _live(await manager._storage()) == []
