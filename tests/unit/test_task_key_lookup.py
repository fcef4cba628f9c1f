"""The engine's task key lookup where the store cannot answer it.

A store that keeps no task idempotency keys (a driver inheriting the
contract's default, or a ``cereal serve`` of an older release) cannot promise
a key: a run that enqueues a keyed task fails with an error that says so, and
no task is stored. A lookup that fails for a while is retried, not given up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import grpc
from cereal import Decision, Manager, WorkflowInstance, errors, testing
from cereal.drivers import Driver
from cereal.drivers._workflow_store import WorkflowStore
from cereal.drivers.grpc import GrpcDriver
from cereal.drivers.memory import MemoryDriver
from cereal.server.service import CerealService
from tests.conformance._executors import Flow, register
from tests.plugins.manager import FAST_OPTIONS, wait_finished

WF, INST = "wf", "inst"


def _keyed_flow() -> Flow:
    def on_start(w: WorkflowInstance, ev: object) -> Decision:
        w.enqueue_task("t", 1, idempotency_key="a")
        return w.continue_()

    return Flow(on_start, lambda w, ev: w.complete("done"))


async def _run_fails_naming_keys(driver: Driver) -> None:
    manager = register(Manager(driver, **FAST_OPTIONS), {WF: _keyed_flow()}, {"t": lambda t: 1})
    async with manager:
        await manager.enqueue_workflow(WF, INST)
        done = await wait_finished(manager, WF, INST)
        assert await manager.list_tasks("t") == []
    failure = done.err()
    assert failure is not None
    assert "task idempotency keys are not offered" in str(failure), failure


class _KeylessMemoryDriver(MemoryDriver):
    """A driver that inherits the contract's list_task_keys, as a third-party one may."""

    list_task_keys = WorkflowStore.list_task_keys


async def test_a_driver_without_task_keys_fails_a_keyed_run_instead_of_miscounting() -> None:
    await _run_fails_naming_keys(_KeylessMemoryDriver())


async def _not_implemented(self: Any, request: Any, context: Any) -> Any:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


async def test_a_server_of_an_older_release_fails_a_keyed_run(
    grpc_server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server that does not know ListTaskKeys (as one released before it)
    monkeypatch.setattr(CerealService, "ListTaskKeys", _not_implemented)
    server = grpc_server_factory(f"sqlite:///{tmp_path / 'served.db'}", maintenance=False)
    driver = GrpcDriver.from_url(server.url())
    with pytest.raises(errors.NotOfferedError):
        await driver.init()
        try:
            await driver.list_task_keys(WF, INST, ["a"])
        finally:
            await driver.close()

    # Then a keyed run fails saying why, without looping over its step
    await _run_fails_naming_keys(GrpcDriver.from_url(server.url()))


class _FlakyLookupDriver(MemoryDriver):
    """Its first two task key lookups fail as a store that is briefly down."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def list_task_keys(self, workflow_name: str, instance_name: str, keys: Any) -> Any:
        self.lookups += 1
        if self.lookups <= 2:
            raise errors.DriverError("store briefly down")
        return await super().list_task_keys(workflow_name, instance_name, keys)


async def test_a_failed_lookup_is_retried_and_the_run_goes_on() -> None:
    driver = _FlakyLookupDriver()
    manager = register(
        Manager(driver, **FAST_OPTIONS),
        {WF: testing.make_executor(_keyed_flow().on_start, lambda w, ev: w.complete("done"))},
        {"t": lambda t: 1},
    )
    async with manager:
        await manager.enqueue_workflow(WF, INST)
        done = await wait_finished(manager, WF, INST)

    assert done.get_result() == "done"
    assert driver.lookups == 3
