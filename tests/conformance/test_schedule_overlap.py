"""Schedule overlap policies, triggers and catch-up, through the Manager on every driver.

Deterministic: the live run waits for a gate task that the test releases; a
schedule is made due by storing a past ``next_due_at`` through the driver,
and the scheduler's processing of it is observed as its due time moving back
to the rule's next occurrence (that step is one transaction with the run it
starts). Nothing sleeps hoping for an interleaving.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from cereal import Decision, Manager, Overlap, RunOutcome, WorkflowInstance, errors
from cereal.checks.times import utcnow
from cereal.models import ScheduleUpdate
from tests._waiting import wait_for_value
from tests.conformance._executors import WF, AsyncBlocker, Completions, Flow, fail_cancelled
from tests.plugins.manager import MakeManager, eventually, wait_finished

SCHED = "nightly"
FAR_FUTURE = "DTSTART:20990101T000000Z\nRRULE:FREQ=DAILY"
FAR_FUTURE_DUE = datetime(2099, 1, 1, tzinfo=UTC)
GATE = "gate"

Ask = Literal["due", "trigger"]


def wait_at_gate(w: WorkflowInstance, ev: object) -> Decision:
    """Start the gate task; the run stays live until the test releases the gate."""
    w.enqueue_task(GATE, w.get_parameters())
    return w.continue_()


def finish_after_gate(w: WorkflowInstance, ev: Any) -> Decision:
    return w.complete("through the gate")


def refuse_cancel(w: WorkflowInstance, ev: object) -> Decision:
    return w.continue_()


class Gated:
    """A started Manager whose workflow runs until ``gate.release`` is set."""

    def __init__(self, manager: Manager, flow: Flow, gate: AsyncBlocker, done: Completions):
        self.manager = manager
        self.flow = flow
        self.gate = gate
        self.done = done

    def starts(self) -> int:
        return self.flow.count("start", SCHED)

    async def first_run_live(self) -> None:
        """Trigger the first run and wait until it waits at the gate."""
        assert await self.manager.trigger_workflow_schedule(WF, SCHED) is RunOutcome.STARTED
        await eventually(lambda: len(self.gate.started) == 1, what="first run at the gate")

    async def ask(self, how: Ask) -> RunOutcome | None:
        """Ask for a run while one is live: by a trigger, or by making the schedule due."""
        if how == "trigger":
            return await self.manager.trigger_workflow_schedule(WF, SCHED)
        update = ScheduleUpdate(next_due_at=utcnow() - timedelta(seconds=1))
        await self.manager.driver.update_workflow_schedule(WF, SCHED, update)

        async def processed() -> bool:
            got = await self.manager.get_workflow_schedule(WF, SCHED)
            return got.next_due_at == FAR_FUTURE_DUE

        await eventually(processed, what="the due time processed")
        return None

    async def live_parameters(self) -> Any:
        return (await self.manager.get_workflow_instance(WF, SCHED)).get_parameters()


async def gated(
    make_manager: MakeManager, overlap: Overlap, on_cancel: Any = fail_cancelled
) -> Gated:
    gate = AsyncBlocker()
    flow = Flow(wait_at_gate, finish_after_gate, on_cancel)
    done = Completions()
    manager = make_manager(on_workflow_complete=done)
    manager.register_workflow_executor(WF, flow)
    manager.register_task_executor(GATE, gate.run)
    await manager.start()
    await manager.create_workflow_schedule(WF, SCHED, {"n": 1}, FAR_FUTURE, overlap=overlap)
    return Gated(manager, flow, gate, done)


def expected(how: Ask, outcome: RunOutcome) -> RunOutcome | None:
    return outcome if how == "trigger" else None


# ---- each policy with a long-running instance ----------------------------------------------


@pytest.mark.parametrize("how", ["due", "trigger"])
async def test_skip_drops_the_run_while_the_instance_is_live(
    make_manager: MakeManager, how: Ask
) -> None:
    # Given a skip schedule whose run waits at the gate
    g = await gated(make_manager, "skip")
    await g.first_run_live()
    before = await g.manager.get_workflow_schedule(WF, SCHED)

    # When a run is asked for while it is live
    assert await g.ask(how) == expected(how, RunOutcome.SKIPPED)

    # Then nothing changed: no waiting run, the same live run
    got = await g.manager.get_workflow_schedule(WF, SCHED)
    assert (got.run_pending, got.last_enqueued_at) == (False, before.last_enqueued_at)
    assert got.next_due_at == FAR_FUTURE_DUE
    assert (await g.manager.get_workflow_instance(WF, SCHED)).is_running()

    # and when the live one ends, no other run follows it
    g.gate.release.set()
    await wait_finished(g.manager, WF, SCHED)
    assert g.starts() == 1
    assert not (await g.manager.get_workflow_schedule(WF, SCHED)).run_pending


@pytest.mark.parametrize("how", ["due", "trigger"])
async def test_buffer_one_starts_one_run_when_the_live_one_ends(
    make_manager: MakeManager, how: Ask
) -> None:
    # Given a buffer_one schedule whose run waits at the gate
    g = await gated(make_manager, "buffer_one")
    await g.first_run_live()

    # When runs are asked for twice while it is live
    assert await g.ask(how) == expected(how, RunOutcome.BUFFERED)
    assert await g.ask(how) == expected(how, RunOutcome.BUFFERED)

    # Then one run waits and the live one goes on
    got = await g.manager.get_workflow_schedule(WF, SCHED)
    assert got.run_pending is True
    assert g.starts() == 1

    # When the live one ends, exactly one buffered run starts (at most one is kept)
    g.gate.release.set()
    await eventually(lambda: g.starts() == 2, what="the buffered run started")
    await eventually(lambda: len(g.done.events) == 2, what="both runs finished")
    assert g.starts() == 2
    assert len(g.gate.finished) == 2 and g.gate.cancelled == []
    assert not (await g.manager.get_workflow_schedule(WF, SCHED)).run_pending
    assert g.flow.count("cancel") == 0


@pytest.mark.parametrize("how", ["due", "trigger"])
async def test_cancel_other_cancels_the_live_run_then_starts(
    make_manager: MakeManager, how: Ask
) -> None:
    # Given a cancel_other schedule whose run waits at the gate; on_cancel fails the run
    g = await gated(make_manager, "cancel_other")
    await g.first_run_live()

    # When a run is asked for
    assert await g.ask(how) == expected(how, RunOutcome.CANCELLING)

    # Then the live run is cancelled through on_cancel, and the new run starts after it ended
    await eventually(lambda: g.starts() == 2, what="the new run started")
    assert g.flow.count("cancel", SCHED) == 1
    # the cancelled run ended (failed by on_cancel): its gate task was cancelled with it
    await eventually(lambda: len(g.gate.cancelled) == 1, what="the old gate task cancelled")
    assert (await g.manager.get_workflow_instance(WF, SCHED)).is_running()
    assert not (await g.manager.get_workflow_schedule(WF, SCHED)).run_pending
    g.gate.release.set()
    await wait_finished(g.manager, WF, SCHED)
    assert g.starts() == 2


@pytest.mark.parametrize("how", ["due", "trigger"])
async def test_cancel_other_waits_for_a_run_that_refuses_to_cancel(
    make_manager: MakeManager, how: Ask
) -> None:
    # Given a cancel_other schedule whose live run refuses cancellation
    g = await gated(make_manager, "cancel_other", on_cancel=refuse_cancel)
    await g.first_run_live()

    # When a run is asked for twice
    assert await g.ask(how) == expected(how, RunOutcome.CANCELLING)
    await eventually(lambda: g.flow.count("cancel", SCHED) == 1, what="on_cancel ran")
    assert await g.ask(how) == expected(how, RunOutcome.BUFFERED)

    # Then the live run goes on (one cancel only), and the new run waits for its end
    got = await g.manager.get_workflow_schedule(WF, SCHED)
    assert got.run_pending is True
    assert g.starts() == 1
    assert (await g.manager.get_workflow_instance(WF, SCHED)).is_running()

    # When it ends on its own, the new run starts
    g.gate.release.set()
    await eventually(lambda: g.starts() == 2, what="the waiting run started")
    await eventually(lambda: len(g.done.events) == 2, what="both runs finished")
    assert g.gate.cancelled == []  # the first run ended through its gate
    assert g.flow.count("cancel", SCHED) == 1


@pytest.mark.parametrize("how", ["due", "trigger"])
async def test_terminate_other_kills_the_live_run_and_starts_at_once(
    make_manager: MakeManager, how: Ask
) -> None:
    # Given a terminate_other schedule whose run waits at the gate
    g = await gated(make_manager, "terminate_other")
    await g.first_run_live()
    first = await g.manager.get_workflow_schedule(WF, SCHED)

    # When a run is asked for
    assert await g.ask(how) == expected(how, RunOutcome.REPLACED)

    # Then a new run is live at once; the old one got no callback (killed, not cancelled)
    got = await g.manager.get_workflow_schedule(WF, SCHED)
    assert got.run_pending is False
    assert got.last_enqueued_at is not None and first.last_enqueued_at is not None
    assert got.last_enqueued_at > first.last_enqueued_at
    assert got.last_end is not None  # the killed run is in the history already
    assert (await g.manager.get_workflow_instance(WF, SCHED)).is_running()
    await eventually(lambda: g.starts() == 2, what="the new run started")
    assert g.flow.count("cancel") == 0
    # the killed run's gate task is cancelled; only the new run passes its gate
    await eventually(lambda: len(g.gate.cancelled) == 1, what="the killed run's task cancelled")
    await eventually(lambda: len(g.gate.started) == 2, what="the new run at the gate")
    g.gate.release.set()
    finished = await wait_finished(g.manager, WF, SCHED)
    assert finished.get_result() == "through the gate"
    # on_workflow_complete runs after the decision committed: wait for the report itself.
    # One report, the new run's: a kill reports no completion
    await wait_for_value(lambda: len(g.done.events), 1, what="the new run's completion reported")


# ---- triggers -------------------------------------------------------------------------------


async def test_trigger_starts_a_run_and_keeps_the_due_time(make_manager: MakeManager) -> None:
    # Given a disabled schedule, and no Manager started (storage calls work before start)
    manager = make_manager()
    await manager.create_workflow_schedule(WF, SCHED, {"n": 7}, FAR_FUTURE, enabled=False)

    # When it is triggered
    outcome = await manager.trigger_workflow_schedule(WF, SCHED)

    # Then an instance with its parameters is live, and the schedule did not move
    assert outcome is RunOutcome.STARTED
    instance = await manager.get_workflow_instance(WF, SCHED)
    assert instance.is_running() and instance.get_parameters() == {"n": 7}
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert (got.enabled, got.next_due_at, got.run_pending) == (False, FAR_FUTURE_DUE, False)
    assert got.last_enqueued_at is not None


async def test_trigger_of_a_missing_schedule_raises_not_found(make_manager: MakeManager) -> None:
    manager = make_manager()
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await manager.trigger_workflow_schedule(WF, SCHED)
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await manager.get_workflow_instance(WF, SCHED)


async def test_a_waiting_run_starts_when_a_kill_ends_the_live_one(
    make_manager: MakeManager,
) -> None:
    # Given a buffer_one schedule with a live run and a buffered one
    g = await gated(make_manager, "buffer_one")
    await g.first_run_live()
    assert await g.manager.trigger_workflow_schedule(WF, SCHED) is RunOutcome.BUFFERED

    # When the live run is killed
    await g.manager.kill_workflow(WF, SCHED)

    # Then the buffered run starts
    await eventually(lambda: g.starts() == 2, what="the buffered run started")
    assert not (await g.manager.get_workflow_schedule(WF, SCHED)).run_pending


# ---- catch-up after downtime ----------------------------------------------------------------


def _hourly_from(anchor: datetime) -> str:
    return f"DTSTART:{anchor.strftime('%Y%m%dT%H%M%SZ')}\nRRULE:FREQ=HOURLY"


async def _down_for_three_due_times(make_manager: MakeManager, window: timedelta) -> datetime:
    """An hourly schedule whose occurrences 2.5 h, 1.5 h and 0.5 h ago passed while no
    Manager ran (its stored due time is the first of them).

    Returns that first missed occurrence.
    """
    first = (utcnow() - timedelta(hours=2, minutes=30)).replace(microsecond=0)
    manager = make_manager()  # never started: no scheduler runs
    await manager.create_workflow_schedule(
        WF, SCHED, {"n": 1}, _hourly_from(first), catch_up_window=window
    )
    assert (await manager.get_workflow_schedule(WF, SCHED)).next_due_at == first + timedelta(
        hours=3
    )
    update = ScheduleUpdate(next_due_at=first)
    await manager.driver.update_workflow_schedule(WF, SCHED, update)
    await manager.stop()
    return first


async def _restart(make_manager: MakeManager, first: datetime) -> tuple[Manager, Completions]:
    """Start a Manager and wait until its scheduler has processed the missed due time."""
    done = Completions()
    manager = make_manager(on_workflow_complete=done)
    manager.register_workflow_executor(WF, Flow())
    await manager.start()

    async def processed() -> bool:
        got = await manager.get_workflow_schedule(WF, SCHED)
        return got.next_due_at == first + timedelta(hours=3)

    await eventually(processed, what="the missed due time processed")
    return manager, done


async def test_a_window_covering_two_missed_runs_starts_exactly_one(
    make_manager: MakeManager,
) -> None:
    # Given Managers down for three due times, with a window reaching back over two of them
    first = await _down_for_three_due_times(make_manager, timedelta(hours=2))

    # When a Manager starts
    manager, done = await _restart(make_manager, first)

    # Then exactly one run was started for the three missed due times
    assert (await manager.get_workflow_schedule(WF, SCHED)).last_enqueued_at is not None
    finished = await wait_finished(manager, WF, SCHED)
    assert finished.get_result() == {"n": 1}
    await eventually(lambda: len(done.events) == 1, what="the caught-up run reported")
    assert len(done.events) == 1


@pytest.mark.parametrize(
    "window", [timedelta(0), timedelta(minutes=10)], ids=["window-0", "window-too-short"]
)
async def test_no_missed_run_is_caught_up_outside_the_window(
    make_manager: MakeManager, window: timedelta
) -> None:
    # Given Managers down for three due times; the window (0, the default, or 10 minutes
    # while the latest one was 30 minutes ago) covers none of them
    first = await _down_for_three_due_times(make_manager, window)

    # When a Manager starts
    manager, done = await _restart(make_manager, first)

    # Then no run was started, and the schedule waits for its next occurrence
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert (got.last_enqueued_at, got.enabled) == (None, True)
    with pytest.raises(errors.WorkflowInstanceNotFoundError):
        await manager.get_workflow_instance(WF, SCHED)
    assert done.events == []


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"overlap": "sometimes"}, ValueError, ["'sometimes'", "'skip'", "'terminate_other'"]),
        ({"overlap": "SKIP"}, ValueError, ["'SKIP'", "'buffer_one'"]),
        ({"overlap": 3}, TypeError, ["overlap", "str", "int"]),
        ({"overlap": None}, TypeError, ["overlap", "NoneType"]),
        ({"catch_up_window": -1}, ValueError, ["catch_up_window", "-1"]),
        ({"catch_up_window": timedelta(seconds=-5)}, ValueError, ["catch_up_window"]),
        ({"catch_up_window": float("nan")}, ValueError, ["catch_up_window"]),
        ({"catch_up_window": "60"}, TypeError, ["catch_up_window", "str"]),
        ({"catch_up_window": True}, TypeError, ["catch_up_window", "bool"]),
    ],
)
async def test_bad_overlap_or_window_is_refused_and_nothing_is_stored(
    make_manager: MakeManager, options: dict[str, Any], error: type[Exception], words: list[str]
) -> None:
    manager = make_manager()

    with pytest.raises(error) as raised:
        await manager.create_workflow_schedule(WF, SCHED, None, FAR_FUTURE, **options)
    for word in words:
        assert word in str(raised.value)
    assert await manager.list_workflow_schedules() == []

    # and an update with the bad value and a good change changes nothing
    # (an update's None means "unchanged", so it is no bad value there)
    if options == {"overlap": None}:
        return
    await manager.create_workflow_schedule(WF, SCHED, {"v": 1}, FAR_FUTURE)
    before = await manager.get_workflow_schedule(WF, SCHED)
    with pytest.raises(error):
        await manager.update_workflow_schedule(WF, SCHED, parameters={"v": 2}, **options)
    assert await manager.get_workflow_schedule(WF, SCHED) == before


async def test_overlap_and_window_are_stored_read_and_updated_atomically(
    make_manager: MakeManager,
) -> None:
    # Given a schedule created with a policy and a window given as a timedelta
    manager = make_manager()
    await manager.create_workflow_schedule(
        WF,
        SCHED,
        None,
        FAR_FUTURE,
        overlap="cancel_other",
        catch_up_window=timedelta(minutes=5),
    )
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert (got.overlap, got.catch_up_window, got.run_pending) == ("cancel_other", 300.0, False)
    assert await manager.list_workflow_schedules() == [got]

    # When both change together with the parameters
    await manager.update_workflow_schedule(
        WF, SCHED, overlap="terminate_other", catch_up_window=2.5, parameters={"v": 3}
    )

    # Then all changed, and nothing else did
    after = await manager.get_workflow_schedule(WF, SCHED)
    assert (after.overlap, after.catch_up_window, after.get_parameters()) == (
        "terminate_other",
        2.5,
        {"v": 3},
    )
    assert (after.next_due_at, after.enabled) == (got.next_due_at, True)

    # and leaving them out of an update keeps them
    await manager.update_workflow_schedule(WF, SCHED, enabled=False)
    kept = await manager.get_workflow_schedule(WF, SCHED)
    assert (kept.overlap, kept.catch_up_window) == ("terminate_other", 2.5)


async def test_a_schedule_created_without_the_new_options_skips_and_never_catches_up(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    await manager.create_workflow_schedule(WF, SCHED, None, FAR_FUTURE)
    got = await manager.get_workflow_schedule(WF, SCHED)
    assert (got.overlap, got.catch_up_window, got.run_pending) == ("skip", 0.0, False)
