"""PostgreSQL: concurrent enqueues share one statement and commit, each caller its own answer.

A gate holds the first group's statement open, so the enqueues made
meanwhile queue up and form the next group (no timing is relied on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from cereal import errors
from cereal.drivers.postgres import PostgresDriver, _base
from cereal.drivers.postgres._group_commit import Committed, Write, run_enqueues_merged
from tests._waiting import wait_until

WF = "wf"


class GatedEnqueues:
    """The merged enqueue runner, recording each group's names; once armed, the next waits."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.armed = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, conn: Any, group: Sequence[Write], note: str | None) -> Committed:
        self.groups.append([write.statements[0][1]["instance_name"] for write in group])
        if self.armed:
            self.armed = False
            self.held.set()
            await self.release.wait()
        return await run_enqueues_merged(conn, group, note)


async def test_concurrent_enqueues_commit_together_each_with_its_own_answer(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = GatedEnqueues()
    monkeypatch.setattr(_base, "run_enqueues_merged", gate)
    async with PostgresDriver(postgres_dsn) as driver:
        # Given a live run "taken", and a first enqueue held in its group's statement
        await driver.enqueue_workflow(WF, "taken", None)
        gate.groups.clear()
        gate.armed = True
        first = asyncio.create_task(driver.enqueue_workflow(WF, "first", b"1"))
        await gate.held.wait()

        # When four more callers enqueue meanwhile, one naming a live run and two the same
        names = ["b", "a", "taken", "a"]
        calls = [
            asyncio.create_task(driver.enqueue_workflow(WF, name, name.encode())) for name in names
        ]
        committer = driver._committers[asyncio.get_running_loop()]["enqueue"]
        await wait_until(lambda: committer.pending == len(names), what="the four queued")
        gate.release.set()
        await first
        outcomes = await asyncio.gather(*calls, return_exceptions=True)

        # Then they went in one group; the first caller of a name created it, the rest
        # (the live name, the second "a") were told it exists, and nothing else was stored
        assert gate.groups == [["first"], names]
        assert [type(o) for o in outcomes] == [
            type(None),
            type(None),
            errors.WorkflowInstanceExistsError,
            errors.WorkflowInstanceExistsError,
        ]
        for name, parameters in [("first", b"1"), ("a", b"a"), ("b", b"b")]:
            got = await driver.get_workflow_instance(WF, name)
            assert got.parameters == parameters
        claimed = await driver.claim_workflows([WF], max_instances=10, max_events=10)
        started = sorted(events[0].instance.instance_name for events, _ in claimed)
        assert started == ["a", "b", "first", "taken"]  # one start event each
        for _, completer in claimed:
            await completer.close()
