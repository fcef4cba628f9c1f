"""Trace contexts: which traceparents are kept, and what predates them keeps working."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from cereal import Manager
from cereal.checks.validation import MAX_TRACEPARENT_CHARS, usable_traceparent
from cereal.drivers.memory import MemoryDriver
from cereal.observe import Observer

GOOD = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    "value",
    [GOOD, "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-more-fields"],
)
def test_well_formed_contexts_are_kept(value: str) -> None:
    assert usable_traceparent(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        GOOD.upper(),
        GOOD + "-extra",  # version 00 has exactly four fields
        GOOD + "\n",
        "ff" + GOOD[2:],
        "00-" + "0" * 32 + GOOD[35:],
        GOOD[:36] + "0" * 16 + GOOD[52:],
        "01" + GOOD[2:] + "-" + "x" * MAX_TRACEPARENT_CHARS,
        42,
    ],
    ids=repr,
)
def test_malformed_contexts_are_dropped(value: object) -> None:
    assert usable_traceparent(value) is None


class DriverBeforeTraceContexts(MemoryDriver):
    """A driver written against the contract before ``traceparent`` existed."""

    async def enqueue_workflow(  # type: ignore[override]
        self, workflow_name: str, instance_name: str, parameters: bytes | None
    ) -> None:
        await super().enqueue_workflow(workflow_name, instance_name, parameters)


class YieldsItsOwnThing(Observer):
    """An enqueue hook written when what it yielded was ignored."""

    @contextlib.contextmanager
    def enqueue(self, workflow_name: str, instance_name: str) -> Iterator[object]:  # type: ignore[override]
        yield object()


async def test_an_older_driver_and_an_older_observer_still_enqueue_untraced() -> None:
    driver = DriverBeforeTraceContexts()
    async with Manager(driver, observers=[YieldsItsOwnThing()]) as manager:
        created = await manager.enqueue_workflow("wf", "one")
        assert created.created
        assert (await manager.get_workflow_instance("wf", "one")).is_running()
