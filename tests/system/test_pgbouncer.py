"""PostgreSQL through a real PgBouncer in ``pool_mode = transaction``.

- a fan-out drain (4 workflows x 50 tasks) and 200 single-task workflows
  finish, with worker processes that reach the database only through PgBouncer;
- with ``listen_url`` pointing straight at PostgreSQL, an announcement made
  through PgBouncer wakes a Manager whose pollers sleep for a minute;
- without it, the LISTEN made through PgBouncer hears nothing: one WARNING
  says so, and the work still finishes by polling.

Every URL carries ``prepare_threshold=none``: PgBouncer 1.18 does not carry
server-side prepared statements across transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from cereal import Manager, StartEvent, TaskCompleteEvent
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres import _listen as listen_module
from cereal.drivers.postgres._listen import NotificationListener
from cereal.instance import CancelEvent, Decision, WorkflowInstance
from tests._waiting import wait_until
from tests.system.test_postgres_system import Workers

pytestmark = pytest.mark.slow

WARNING_TEXT = "wakeups are not received"


def with_options(url: str, **options: str) -> str:
    """``url`` (which has no query yet) with cereal's URL options added."""
    assert "?" not in url
    return f"{url}?{urlencode(options)}"


@pytest.fixture
def bounced_workers(pgbouncer_dsn: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes of tests.system.worker_app that connect through PgBouncer."""
    record = tmp_path / "records"
    record.mkdir()
    url = with_options(pgbouncer_dsn, prepare_threshold="none", listen_url=postgres_dsn)
    pool = Workers(url, record)
    yield pool
    pool.stop()


async def finished_count(client: Manager, workflow_name: str) -> int:
    return len(await client.list_workflow_instances(workflow_name=workflow_name, is_running=False))


def expected(count: int) -> dict[str, int]:
    return {"sum": sum(i * i for i in range(count)), "completions": count, "distinct": count}


@pytest.mark.parametrize(
    ("workflows", "tasks"),
    [(4, 50), (200, 1)],
    ids=["fan-out drain, 4 x 50 tasks", "200 single-task workflows"],
)
async def test_workflows_finish_through_pgbouncer(
    bounced_workers: Workers, workflows: int, tasks: int
) -> None:
    # Given two worker processes that reach PostgreSQL through PgBouncer only
    bounced_workers.spawn(2)
    await bounced_workers.ready()
    client = Manager(PostgresDriver(bounced_workers.dsn))

    # When the workflows are enqueued
    for number in range(workflows):
        await client.enqueue_workflow("fan-out", f"wf-{number}", {"count": tasks})
    try:
        await wait_all_finished(client, workflows)

        # Then every workflow saw each of its completions exactly once
        for data in await client.list_workflow_instances(workflow_name="fan-out"):
            assert data.get_result() == expected(tasks), data.instance_name
    finally:
        await client.stop()


async def wait_all_finished(client: Manager, count: int) -> None:
    """Wait for ``count`` finished fan-outs; the failure says how many finished."""
    try:
        await wait_until(
            lambda: _finished(client, count),
            what=f"{count} fan-out workflows to finish through PgBouncer",
            timeout=90,
        )
    except AssertionError as exc:
        done = await finished_count(client, "fan-out")
        raise AssertionError(f"{exc} ({done} of {count} finished)") from None


async def _finished(client: Manager, count: int) -> bool:
    return await finished_count(client, "fan-out") >= count


class RecordStarts:
    """Records each instance that reached on_start; its one task then completes it."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        self.started.append(w.get_parameters()["name"])
        w.enqueue_task("echo")
        return w.continue_(None)

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        return w.complete(ev.result.get())

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        return w.fail("cancelled")


def echo(task: object) -> str:
    return "done"


def listener_of(manager: Manager) -> NotificationListener:
    driver = manager.driver
    assert isinstance(driver, PostgresDriver)
    listener = driver._listener
    assert listener is not None
    return listener


async def test_listen_url_receives_wakeups_sent_through_pgbouncer(
    pgbouncer_dsn: str, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    url = with_options(pgbouncer_dsn, prepare_threshold="none", listen_url=postgres_dsn)
    starts = RecordStarts()
    # Given a Manager whose pollers sleep for a minute, listening straight at PostgreSQL
    worker = Manager(PostgresDriver(url), workflow_poll_interval=60.0, task_poll_interval=60.0)
    worker.register_workflow_executor("wake", starts)
    worker.register_task_executor("echo", echo)
    client = Manager(PostgresDriver(url))
    heard: list[tuple[str, str | None]] = []
    async with worker:
        worker.driver.add_wakeup_listener(lambda kind, name: heard.append((kind, name)))
        # its own probe went out through PgBouncer and came back on the direct LISTEN
        listener = listener_of(worker)
        await wait_until(lambda: listener.probes_judged >= 1, what="the first wakeup probe")
        assert listener.wakeups_received is True

        # When another driver enqueues a workflow through PgBouncer
        await client.enqueue_workflow("wake", "woken", {"name": "woken"})

        # Then the announcement arrives and the workflow starts well before the next poll
        await wait_until(
            lambda: ("workflow", "wake") in heard and starts.started == ["woken"],
            what="the wakeup from the other driver, and on_start of 'woken'",
        )
        await client.stop()
    assert WARNING_TEXT not in caplog.text


async def test_without_listen_url_one_warning_and_polling_carries_on(
    pgbouncer_dsn: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # probe often and judge quickly, so that several probes fail within the test
    monkeypatch.setattr(listen_module, "PROBE_INTERVAL", 0.2)
    monkeypatch.setattr(listen_module, "PROBE_TIMEOUT", 0.5)
    caplog.set_level(logging.INFO, logger="cereal")
    url = with_options(pgbouncer_dsn, prepare_threshold="none")
    starts = RecordStarts()
    # Given a Manager that LISTENs through PgBouncer (where no NOTIFY reaches it)
    worker = Manager(PostgresDriver(url), workflow_poll_interval=0.2, task_poll_interval=0.2)
    worker.register_workflow_executor("poll", starts)
    worker.register_task_executor("echo", echo)
    async with worker:
        listener = listener_of(worker)

        # When three probes in a row have not come back
        await wait_until(lambda: listener.probes_judged >= 3, what="three wakeup probes")

        # Then one WARNING says so, once
        assert listener.wakeups_received is False
        warnings = [
            record
            for record in caplog.records
            if record.levelno == logging.WARNING and WARNING_TEXT in record.getMessage()
        ]
        assert len(warnings) == 1, caplog.text
        assert warnings[0].name.startswith("cereal.drivers.postgres")
        assert "listen_url" in warnings[0].getMessage()
        assert "\n" not in warnings[0].getMessage()

        # and work enqueued by another driver (whose NOTIFY goes unheard) completes by polling
        client = Manager(PostgresDriver(url))
        await client.enqueue_workflow("poll", "polled", {"name": "polled"})
        await wait_until(
            lambda: _instance_finished(client, "poll", "polled"), what="'polled' to finish"
        )
        await client.stop()
    assert starts.started == ["polled"]


async def _instance_finished(manager: Manager, workflow_name: str, instance_name: str) -> bool:
    instance = await manager.get_workflow_instance(workflow_name, instance_name)
    return not instance.is_running()
