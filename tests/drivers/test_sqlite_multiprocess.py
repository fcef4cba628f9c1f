"""SQLiteDriver with several real processes sharing one file.

Children run ``tests/drivers/_sqlite_child.py`` (see its docstring).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from cereal import errors
from cereal.drivers.sqlite import SQLiteDriver
from cereal.drivers.sqlite._migrate import label, migrations
from cereal.models import NewTask, TaskStatus, WorkflowEventType
from tests._waiting import sweep_until, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


class Child:
    """One child process speaking line by line on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.drivers._sqlite_child",
            *args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line(self, timeout: float = 60) -> str:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            self.proc.kill()
            _, err = await self.proc.communicate()
            raise AssertionError(f"no child line in {timeout:g} s: {err.decode()}") from None
        if not raw:
            _, err = await self.proc.communicate()
            raise AssertionError(f"child ended early: {err.decode()}")
        return raw.decode().strip()

    async def finish(self, timeout: float = 120) -> str:
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.proc.kill()
            _, err = await self.proc.communicate()
            raise AssertionError(f"child running after {timeout:g} s: {err.decode()}") from None
        assert self.proc.returncode == 0, err.decode()
        return out.decode().strip().splitlines()[-1]

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.communicate()
        assert self.proc.returncode == -signal.SIGKILL


async def test_three_processes_migrating_at_once_apply_each_step_once(tmp_path: Path) -> None:
    db, go = str(tmp_path / "cereal.db"), tmp_path / "go"
    children = [await Child.start("migrate", db, str(go)) for _ in range(3)]
    for child in children:
        assert await child.line() == "ready"
    go.touch()
    results = [json.loads(await child.finish()) for child in children]
    applied = [label(migration) for migration in migrations()]
    assert applied[:3] == ["0001_initial", "0002_lease_deadline", "0003_ready_instances"]
    # each step commits on its own, so the processes may share the steps between them;
    # every step is applied exactly once, and each process applies its steps in order
    assert sorted(step for result in results for step in result) == applied
    assert all(result == sorted(result) for result in results)
    assert await SQLiteDriver(db).migrate() == []


async def test_processes_claiming_concurrently_never_claim_a_task_twice(tmp_path: Path) -> None:
    db, go, steady = str(tmp_path / "cereal.db"), tmp_path / "go", tmp_path / "steady"
    async with SQLiteDriver(db) as driver:
        await driver.enqueue_workflow("wf", "fan-out", None)
        _, completer = await driver.dequeue_workflow(["wf"])
        async with completer:
            await completer.continue_(None, [NewTask("t", b"%d" % i) for i in range(300)])
        children = [await Child.start("claim", db, "t", str(go), str(steady)) for _ in range(3)]
        for child in children:
            assert await child.line() == "ready"
        go.touch()
        for child in children:
            assert await child.line() == "first"  # each holds its first batch's results
        steady.touch()
        claimed = [json.loads(await child.finish()) for child in children]
        every = [task_id for ids in claimed for task_id in ids]
        duplicates = [task_id for task_id, n in Counter(every).items() if n > 1]
        assert duplicates == []
        assert len(every) == 300
        assert all(ids for ids in claimed), "each process won a first batch"
        # every success reached the workflow exactly once
        seen = 0
        while True:
            try:
                event, completer = await driver.dequeue_workflow(["wf"])
            except errors.NoWorkflowInstancesError:
                break
            async with completer:
                assert event.task_result is not None
                assert event.task_result.status == TaskStatus.SUCCESS
                await completer.continue_(None, [])
            seen += 1
        assert seen == 300


async def test_a_writer_is_not_starved_by_processes_writing_back_to_back(
    tmp_path: Path,
) -> None:
    # a heartbeat must get the write lock promptly however busy the file is, or its
    # lease expires: SQLite's own busy handler backs off to 100 ms naps and can starve
    # (how long a heartbeat waits is a benchmark, not a test: this checks they go through)
    db, go, stop = str(tmp_path / "cereal.db"), tmp_path / "go", tmp_path / "stop"
    async with SQLiteDriver(db) as driver:
        await driver.enqueue_workflow("wf", "i", None)
        _, completer = await driver.dequeue_workflow(["wf"])
        async with completer:
            await completer.continue_(None, [NewTask("t")])
        ((_, lease),) = await driver.dequeue_tasks("t", 1)
        children = [await Child.start("hammer", db, str(go), str(stop)) for _ in range(2)]
        for child in children:
            assert await child.line() == "ready"
        go.touch()
        for child in children:
            assert await child.line() == "busy"  # writing back to back until told to stop
        for _ in range(40):
            await lease.heartbeat()  # each gets the lock between their writes
        stop.touch()
        writes = [int(await child.finish()) for child in children]
        assert all(count >= 50 for count in writes), writes
        await lease.succeed(None)  # the lease was never lost


async def test_a_process_killed_holding_a_workflow_claim_is_redelivered(tmp_path: Path) -> None:
    db = str(tmp_path / "cereal.db")
    async with SQLiteDriver(db) as driver:
        await driver.enqueue_workflow("wf", "i", b"7")
        child = await Child.start("hold", db, "wf")
        assert await child.line() == "ready"
        assert await child.line() == "claimed"
        with pytest.raises(errors.NoWorkflowInstancesError):
            await driver.dequeue_workflow(["wf"])  # the dead process's claim is still live
        await child.kill()
        # the claim lapses after its claimer's 0.1 s expiry, whatever the sweeper's own
        await sweep_until(driver, "released_claims", 1, task_expiry=3600)
        event, completer = await driver.dequeue_workflow(["wf"])
        async with completer:
            assert event.type == WorkflowEventType.START
            assert event.instance.parameters == b"7"
            assert (event.enqueued_task_count, event.completed_task_count) == (0, 0)
            await completer.continue_(None, [NewTask("t")])


async def test_a_process_killed_holding_a_task_lease_reports_it_lost(tmp_path: Path) -> None:
    db = str(tmp_path / "cereal.db")
    async with SQLiteDriver(db) as driver:
        await driver.enqueue_workflow("wf", "i", None)
        _, completer = await driver.dequeue_workflow(["wf"])
        async with completer:
            await completer.continue_(None, [NewTask("t", b"1")])
        child = await Child.start("hold-task", db, "t")
        assert await child.line() == "ready"
        assert await child.line() == "claimed"
        await child.kill()
        # the lease lapses after its holder's 0.1 s expiry; a sweeper with its own
        # hour-long expiry still expires it
        await sweep_until(driver, "expired_tasks", 1, task_expiry=3600)
        event, completer = await driver.dequeue_workflow(["wf"])
        async with completer:
            assert event.task_result is not None
            assert (event.task_result.status, event.task_result.parameters) == ("lost", b"1")
            await completer.done(None)


async def test_an_idle_process_is_woken_when_another_process_enqueues(tmp_path: Path) -> None:
    db = str(tmp_path / "cereal.db")
    async with SQLiteDriver(db) as driver:
        kinds: set[tuple[str, str | None]] = set()

        def listener(kind: str, name: str | None) -> None:
            kinds.add((kind, name))

        driver.add_wakeup_listener(listener)
        child = await Child.start("enqueue", db, "wf", "from-child")
        assert await child.line() == "ready"
        kinds.clear()  # opening the file (migration check) is not new work
        assert await child.finish() == "done"
        await wait_until(lambda: ("workflow", None) in kinds, what="a wakeup for the child commit")
        event, completer = await driver.dequeue_workflow(["wf"])
        async with completer:
            assert event.instance.instance_name == "from-child"
            await completer.done(None)
