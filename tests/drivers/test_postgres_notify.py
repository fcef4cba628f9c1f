"""PostgreSQL wakeups: NOTIFY reaches other drivers, at most once per transaction and per burst."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from cereal import (
    CancelEvent,
    Decision,
    Manager,
    StartEvent,
    TaskCompleteEvent,
    WorkflowInstance,
    errors,
)
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._announce_window import AnnouncementWindow
from cereal.drivers.postgres._listen import (
    BURST_SECONDS,
    MAX_PAYLOAD_BYTES,
    decode_note,
    encode_note,
)
from cereal.models import NewTask
from tests._waiting import wait_until
from tests.drivers._listening import (
    ANY_WORK,
    BARRIER_WAKE,
    Channel,
    Heard,
    heard_eventually,
    listen_with,
    send_barrier,
)
from tests.plugins.manager import FAST_OPTIONS

WF = "wf"


async def listening_sessions(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query = 'LISTEN cereal_wakeup'"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_another_driver_is_woken(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as sender, PostgresDriver(postgres_dsn) as other:
        heard = Heard()
        await listen_with(other, heard)

        await sender.enqueue_workflow(WF, "i", None)
        await heard_eventually(heard, ("workflow", WF))

        _, completer = await sender.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t"), NewTask("u")])
        await heard_eventually(heard, ("task", "t"), ("task", "u"))

        [(_, task)] = await sender.dequeue_tasks("t", 1)
        heard.calls.clear()
        await task.abandon()  # a stop hands LOST on to the others (plain completions stay local)
        await heard_eventually(heard, ("workflow", WF))


async def test_a_driver_ignores_its_own_notifications(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        heard = Heard()
        await listen_with(driver, heard)
        await driver.enqueue_workflow(WF, "i", None)
        await send_barrier(postgres_dsn)  # an echo of the enqueue would arrive before it
        await heard_eventually(heard, BARRIER_WAKE)
        assert heard.calls == [("workflow", WF), BARRIER_WAKE]


async def test_one_notify_for_a_continue_with_100_tasks(
    postgres_dsn: str, listening: Channel
) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        assert len(await listening.drain()) == 1

        _, completer = await driver.dequeue_workflow([WF])
        assert await listening.drain() == []  # never on claim
        async with completer:
            await completer.continue_(None, [NewTask(f"task-{n % 7}") for n in range(100)])

        [payload] = await listening.drain()
        _, wakes = decode_note(payload)
        assert sorted(wakes) == sorted(("task", f"task-{n}") for n in range(7))

        claimed = await driver.dequeue_tasks("task-0", 50)
        assert await listening.drain() == []  # never on claim
        await claimed[0][1].succeed(None)
        await claimed[1][1].fail("boom")
        assert await listening.drain() == []  # never on completion
        await claimed[2][1].abandon()  # a stopping process hands its LOST task on at once
        assert len(await listening.drain()) == 1


async def test_delayed_tasks_are_not_announced(postgres_dsn: str, listening: Channel) -> None:
    from cereal.checks.times import utcnow

    later = utcnow().replace(year=utcnow().year + 1)
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        await listening.drain()
        _, completer = await driver.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t", None, later)])
        assert await listening.drain() == []


async def test_notify_off_sends_nothing(postgres_dsn: str, listening: Channel) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        _, completer = await driver.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t")])
        assert await listening.drain() == []


def test_payload_round_trips_and_collapses_when_too_long() -> None:
    wakes = [("task", "a\\b ✓"), ("workflow", None), ("task", "a\\b ✓")]
    sender, decoded = decode_note(encode_note("me", wakes))  # type: ignore[arg-type]
    assert (sender, decoded) == ("me", [("task", "a\\b ✓"), ("workflow", None)])

    many = [("task", "x" * 250 + str(n)) for n in range(100)]
    payload = encode_note("me", many)  # type: ignore[arg-type]
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    assert decode_note(payload) == ("me", [("task", None)])
    assert decode_note("me\ngarbage")[1] == [
        ("workflow", None),
        ("task", None),
        ("schedule", None),
    ]


async def test_a_driver_listens_only_while_it_has_wakeup_listeners(postgres_dsn: str) -> None:
    # every listening session pays a commit for each notification, so a driver that
    # only enqueues and reads (a web process) must not listen
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        assert await listening_sessions(postgres_dsn) == 0

        heard = Heard()
        await listen_with(driver, heard)
        assert await listening_sessions(postgres_dsn) == 1

        driver.remove_wakeup_listener(heard)
        await wait_until(lambda: not driver._listener.running, what="LISTEN to stop")  # type: ignore[union-attr]
        assert await listening_sessions(postgres_dsn) == 0


async def test_listening_again_reports_any_work_so_nothing_announced_meanwhile_is_missed(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn) as sender, PostgresDriver(postgres_dsn) as other:
        heard = Heard()
        await listen_with(other, heard)
        other.remove_wakeup_listener(heard)
        await wait_until(lambda: not other._listener.running, what="LISTEN to stop")  # type: ignore[union-attr]
        # Given work announced while nobody in `other` listened
        await sender.enqueue_workflow(WF, "missed", None)
        # When a listener comes back, it is told to look for any work at once
        other.add_wakeup_listener(heard)
        await heard_eventually(heard, *ANY_WORK)


def long_window(driver: PostgresDriver) -> AnnouncementWindow:
    """Give the driver's loop a window that stays open until the test closes it."""
    window = AnnouncementWindow(driver._announce_together, window=3600.0)
    driver._windows[asyncio.get_running_loop()] = window
    return window


async def test_a_burst_of_enqueues_is_announced_by_the_first_commit_and_once_more_after(
    postgres_dsn: str, listening: Channel
) -> None:
    # every notification costs each listening process a transaction to read it, so a
    # burst is announced twice: in the first enqueue's commit, then once for the rest
    async with PostgresDriver(postgres_dsn) as driver:
        window = long_window(driver)
        for n in range(5):
            await driver.enqueue_workflow(WF if n % 2 else "other", f"i{n}", None)
        [first] = await listening.drain()
        assert decode_note(first)[1] == [("workflow", "other")]

        window.flush()  # the window closes
        await wait_until(lambda: not driver._background, what="the deferred announcement")
        [later] = await listening.drain()
        assert decode_note(later)[1] == [("workflow", WF), ("workflow", "other")]
        # sent after the commits it announces: every run it names is there to claim
        claimed = await driver.claim_workflows([WF, "other"], max_instances=10)
        assert len(claimed) == 5
        for _, completer in claimed:
            await completer.close()


async def test_a_refused_enqueue_is_not_announced_later(
    postgres_dsn: str, listening: Channel
) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        window = long_window(driver)
        await driver.enqueue_workflow(WF, "i", None)
        with pytest.raises(errors.WorkflowInstanceExistsError):
            await driver.enqueue_workflow(WF, "i", None)
        window.flush()
        assert len(await listening.drain()) == 1  # the first enqueue's own


async def test_closing_the_driver_sends_what_the_window_holds(
    postgres_dsn: str, listening: Channel
) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        long_window(driver)
        await driver.enqueue_workflow(WF, "i1", None)
        await driver.enqueue_workflow(WF, "i2", None)
    assert [decode_note(p)[1] for p in await listening.drain()] == [
        [("workflow", WF)],
        [("workflow", WF)],
    ]


class CompleteAtOnce:
    """on_start completes the run (recording its name)."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        self.started.append(w.instance_name)
        return w.complete()

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        return w.fail("no tasks here")

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


async def test_a_worker_that_polls_once_a_minute_gets_the_runs_left_to_the_close_by_its_notify(
    postgres_dsn: str,
) -> None:
    executor = CompleteAtOnce()
    worker_driver = PostgresDriver(postgres_dsn)
    claims: list[int] = []  # how many runs each of the worker's claims returned
    claim = worker_driver.claim_workflows

    async def counted_claim(*args: Any, **kwargs: Any) -> Any:
        claimed = await claim(*args, **kwargs)
        claims.append(len(claimed))
        return claimed

    worker_driver.claim_workflows = counted_claim  # type: ignore[method-assign]
    worker = Manager(
        worker_driver,
        **{**FAST_OPTIONS, "workflow_poll_interval": 60.0, "task_poll_interval": 60.0},
    )
    worker.register_workflow_executor(WF, executor)
    async with worker, PostgresDriver(postgres_dsn) as client:
        await wait_until(
            lambda: worker_driver._listener is not None and worker_driver._listener.listening,
            what="the worker to LISTEN",
        )
        window = long_window(client)
        await client.enqueue_workflow(WF, "first", None)  # announced in its commit
        await wait_until(lambda: executor.started == ["first"], what="the first run")
        # the worker looked again after it (and found nothing): now it waits a minute
        await wait_until(lambda: claims[-1] == 0 and len(claims) >= 2, what="an empty claim")
        for n in range(5):
            await client.enqueue_workflow(WF, f"r{n}", None)  # left to the window's close
        window.flush()
        await wait_until(lambda: len(executor.started) == 6, what="the runs of the close")


async def test_an_idle_listener_waits_on_its_socket_without_waking(postgres_dsn: str) -> None:
    # psycopg's own wait for notifications wakes every 0.1 s; an idle worker must not
    async with PostgresDriver(postgres_dsn) as driver:
        heard = Heard()
        await listen_with(driver, heard)
        loop = asyncio.get_running_loop()
        readers: list[int] = []
        add_reader = loop.add_reader

        def counting_add_reader(fd: Any, callback: Any, *args: Any) -> None:
            readers.append(fd)
            add_reader(fd, callback, *args)

        loop.add_reader = counting_add_reader  # type: ignore[method-assign]
        try:
            await send_barrier(postgres_dsn)  # data: the listener reads a burst, then waits
            await heard_eventually(heard, BARRIER_WAKE)
            await wait_until(lambda: len(readers) > 0, what="the listener reading its socket")
            # the burst ends within BURST_SECONDS; after it, nothing registers a reader again
            await asyncio.sleep(BURST_SECONDS * 2)
            settled = len(readers)
            await asyncio.sleep(0.5)  # five of psycopg's wakeups
            assert len(readers) == settled
        finally:
            del loop.add_reader
        # and the next notification still arrives
        heard.calls.clear()
        await send_barrier(postgres_dsn)
        await heard_eventually(heard, BARRIER_WAKE)
