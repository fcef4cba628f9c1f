"""Bad and odd input at the Manager (API.md "Precise points"): refused early, or round-tripped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from cereal import Decision, Manager, WorkflowInstance, errors
from cereal.values import MAX_ERROR_CHARS
from tests.conformance._executors import INST, WF, Flow, echo, enqueue, register
from tests.plugins.manager import MakeManager, wait_finished

RULE = "DTSTART:20990101T000000Z\nRRULE:FREQ=DAILY"

BAD_NAMES = ["", "x" * 256, "line\nbreak", "nul\x00char", "del\x7fchar", "tab\tchar"]
ODD_NAMES = [
    'it\'s "quoted"',
    "semi;colon",
    "with spaces  inside ",
    "slash/and\\back",
    "ünïcødé ✓ 名前 🚀",
    "x'; DROP TABLE t; --",
    "%s %(name)s :name ? $1",
    "y" * 255,
]
NON_JSON = [object(), {1, 2}, float("nan"), b"bytes", float("inf")]


async def nothing_stored(manager: Manager) -> bool:
    return (
        await manager.list_workflow_instances() == []
        and await manager.list_workflow_schedules() == []
    )


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
async def test_bad_names_raise_value_error_and_store_nothing(
    make_manager: MakeManager, bad: str
) -> None:
    manager = make_manager()

    for workflow, instance in [(bad, INST), (WF, bad)]:
        with pytest.raises(ValueError):
            await manager.enqueue_workflow(workflow, instance)
        with pytest.raises(ValueError):
            await manager.create_workflow_schedule(workflow, instance, None, RULE)
        with pytest.raises(ValueError):
            await manager.get_workflow_instance(workflow, instance)
    with pytest.raises(ValueError):
        manager.register_workflow_executor(bad, Flow())
    with pytest.raises(ValueError):
        manager.register_task_executor(bad, echo)

    assert await nothing_stored(manager)


@pytest.mark.parametrize("name", ODD_NAMES, ids=repr)
async def test_odd_names_round_trip_through_instances_and_schedules(
    make_manager: MakeManager, name: str
) -> None:
    # Given odd text used as workflow and instance names
    manager = make_manager()

    # When an instance and a schedule are stored under them
    await manager.enqueue_workflow(name, name, {"name": name})
    await manager.create_workflow_schedule(name, name, {"name": name}, RULE)

    # Then lookups and lists return them unchanged
    found = await manager.get_workflow_instance(name, name)
    assert (found.workflow_name, found.instance_name) == (name, name)
    assert found.get_parameters() == {"name": name}
    [listed] = await manager.list_workflow_instances(workflow_name=name, instance_name=name)
    assert (listed.workflow_name, listed.instance_name) == (name, name)
    schedule = await manager.get_workflow_schedule(name, name)
    assert (schedule.workflow_name, schedule.instance_name) == (name, name)
    assert [s.instance_name for s in await manager.list_workflow_schedules()] == [name]
    await manager.cancel_workflow(name, name)
    await manager.kill_workflow(name, name)
    await manager.delete_workflow_schedule(name, name)
    assert await manager.list_workflow_schedules() == []


async def test_odd_workflow_and_task_names_run_end_to_end(make_manager: MakeManager) -> None:
    # Given a workflow and a task registered under odd names
    workflow, task = "x'; DROP TABLE t; --", 'ünïcødé ✓ task; "q" /s'
    flow = Flow(enqueue((task, "ping")))
    manager = register(make_manager(), {workflow: flow}, {task: echo})
    await manager.start()

    # When the workflow runs
    await manager.enqueue_workflow(workflow, "instance 'one'")
    done = await wait_finished(manager, workflow, "instance 'one'")

    # Then it finished normally with the task's result under its name
    [entry] = done.get_result()
    assert (entry["task"], entry["result"]) == (task, "ping")


@pytest.mark.parametrize("value", NON_JSON, ids=repr)
async def test_non_json_values_raise_type_error_naming_the_call(
    make_manager: MakeManager, value: Any
) -> None:
    manager = make_manager()
    await manager.create_workflow_schedule(WF, "existing", {"v": 1}, RULE)

    with pytest.raises(TypeError, match="enqueue_workflow"):
        await manager.enqueue_workflow(WF, INST, value)
    with pytest.raises(TypeError, match="create_workflow_schedule"):
        await manager.create_workflow_schedule(WF, INST, value, RULE)
    with pytest.raises(TypeError, match="update_workflow_schedule"):
        await manager.update_workflow_schedule(WF, "existing", parameters=value, enabled=False)

    assert await manager.list_workflow_instances() == []
    [schedule] = await manager.list_workflow_schedules()
    assert (schedule.get_parameters(), schedule.enabled) == ({"v": 1}, True)


async def test_oversize_values_raise_value_error_and_store_nothing(
    make_manager: MakeManager,
) -> None:
    manager = make_manager(max_value_bytes=1000)
    big = {"blob": "x" * 2000}

    with pytest.raises(ValueError):
        await manager.enqueue_workflow(WF, INST, big)
    with pytest.raises(ValueError):
        await manager.create_workflow_schedule(WF, INST, big, RULE)

    assert await nothing_stored(manager)
    await manager.enqueue_workflow(WF, INST, {"blob": "x" * 900})  # under the limit is fine


async def failed_text(manager: Manager, on_start: Any) -> str:
    register(manager, {WF: Flow(on_start)}, {"t": echo})
    await manager.start()
    await manager.enqueue_workflow(WF, INST)
    return str((await wait_finished(manager, WF, INST)).err())


async def test_enqueue_task_with_non_json_parameters_fails_the_instance_with_type_error(
    make_manager: MakeManager,
) -> None:
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("t", {"handle": object()})
        return w.continue_()

    text = await failed_text(make_manager(), on_start)

    assert text.startswith("TypeError: ")
    assert "enqueue_task" in text


async def test_naive_start_after_fails_the_instance_with_value_error(
    make_manager: MakeManager,
) -> None:
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("t", None, start_after=datetime(2030, 1, 1))
        return w.continue_()

    text = await failed_text(make_manager(), on_start)

    assert text.startswith("ValueError: ")


async def test_bad_task_name_fails_the_instance_with_value_error(
    make_manager: MakeManager,
) -> None:
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        w.enqueue_task("bad\nname", None)
        return w.continue_()

    text = await failed_text(make_manager(), on_start)

    assert text.startswith("ValueError: ")


async def test_wrong_argument_types_raise_type_error(make_manager: MakeManager) -> None:
    manager = make_manager()
    await manager.create_workflow_schedule(WF, "existing", None, RULE)

    with pytest.raises(TypeError):
        await manager.enqueue_workflow(123, INST)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await manager.enqueue_workflow(WF, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await manager.get_workflow_instance(None, INST)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await manager.create_workflow_schedule(WF, INST, None, RULE, enabled="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await manager.update_workflow_schedule(WF, "existing", enabled="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        manager.register_workflow_executor(7, Flow())  # type: ignore[arg-type]

    assert await manager.list_workflow_instances() == []
    assert [s.enabled for s in await manager.list_workflow_schedules()] == [True]


@pytest.mark.parametrize(
    "executor",
    [object(), lambda w, ev: None, "on_start", 42],
    ids=["object", "lambda", "str", "int"],
)
async def test_workflow_executor_without_the_callbacks_is_refused_at_register(
    make_manager: MakeManager, executor: Any
) -> None:
    with pytest.raises(TypeError):
        make_manager().register_workflow_executor(WF, executor)


@pytest.mark.parametrize("executor", [object(), 42, "run", None], ids=repr)
async def test_task_executor_that_cannot_run_is_refused_at_register(
    make_manager: MakeManager, executor: Any
) -> None:
    with pytest.raises(TypeError):
        make_manager().register_task_executor("t", executor)


async def test_register_after_start_raises_runtime_error(make_manager: MakeManager) -> None:
    manager = make_manager()
    await manager.start()

    with pytest.raises(RuntimeError):
        manager.register_workflow_executor(WF, Flow())
    with pytest.raises(RuntimeError):
        manager.register_task_executor("t", echo)


async def test_register_twice_under_one_name_raises_runtime_error(
    make_manager: MakeManager,
) -> None:
    manager = register(make_manager(), {WF: Flow()}, {"t": echo})

    with pytest.raises(RuntimeError):
        manager.register_workflow_executor(WF, Flow())
    with pytest.raises(RuntimeError):
        manager.register_task_executor("t", echo)


async def test_start_twice_raises_runtime_error(make_manager: MakeManager) -> None:
    manager = make_manager()
    await manager.start()

    with pytest.raises(RuntimeError):
        await manager.start()


async def test_stop_is_idempotent_and_fine_when_never_started(make_manager: MakeManager) -> None:
    never_started = make_manager()
    await never_started.stop()
    await never_started.stop()

    started = make_manager()
    await started.start()
    await started.stop()
    await started.stop()


async def test_lone_surrogate_in_a_value_raises_type_error_naming_the_call(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()

    with pytest.raises(TypeError, match="enqueue_workflow"):
        await manager.enqueue_workflow(WF, INST, {"text": "half \ud800 a pair"})

    assert await nothing_stored(manager)


ODD_ERROR_TEXTS = ["nul\x00inside", "lone \ud800 surrogate"]


@pytest.mark.parametrize("text", ODD_ERROR_TEXTS, ids=repr)
async def test_fail_with_unstorable_text_still_fails_the_instance_once(
    make_manager: MakeManager, text: str
) -> None:
    # Given a workflow that fails with text the store cannot hold as is
    manager = make_manager()
    flow = Flow(lambda w, ev: w.fail(text))
    register(manager, {WF: flow, "after": Flow()}, {})
    await manager.start()

    # When it runs, and another instance is enqueued after it
    await manager.enqueue_workflow(WF, INST)
    failed = await wait_finished(manager, WF, INST)
    await manager.enqueue_workflow("after", INST, {"ok": True})
    after = await wait_finished(manager, "after", INST)

    # Then it failed once with a text close to the one given, and the runner goes on
    assert failed.err() is not None
    assert str(failed.err()).split()[0] == text.split()[0].replace("\x00", "\\x00")
    assert flow.count("start") == 1
    assert after.get_result() == {"ok": True}


@pytest.mark.parametrize("text", ODD_ERROR_TEXTS, ids=repr)
async def test_task_raising_unstorable_text_is_reported_failed(
    make_manager: MakeManager, text: str
) -> None:
    # Given a task whose exception message the store cannot hold as is
    def explode(task: Any) -> None:
        raise RuntimeError(text)

    manager = make_manager(task_expiry=30.0)
    register(manager, {WF: Flow(enqueue(("t", None)))}, {"t": explode})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST, timeout=10.0)

    # Then the workflow sees it FAILED (not LOST after the expiry)
    [entry] = done.get_result()
    assert entry["status"] == "failed"


async def test_a_huge_error_text_is_stored_cut_to_the_bound(make_manager: MakeManager) -> None:
    # Given a task whose exception message holds a megabyte (a whole request body, say)
    huge = "head " + "x" * 1_000_000

    def explode(task: Any) -> None:
        raise RuntimeError(huge)

    manager = make_manager(task_expiry=30.0)
    register(manager, {WF: Flow(enqueue(("t", None)))}, {"t": explode})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST, timeout=10.0)

    # Then the workflow sees it FAILED, its text cut to the bound with its start kept
    [entry] = done.get_result()
    assert entry["status"] == "failed"
    assert entry["error"].startswith("head xxx")
    assert entry["error"].endswith("characters cut]")
    assert len(entry["error"]) <= MAX_ERROR_CHARS


async def test_start_that_cannot_open_the_store_can_be_stopped_and_retried(
    make_manager: MakeManager,
) -> None:
    # Given a Manager whose store is unavailable at start
    manager = make_manager()
    register(manager, {WF: Flow()}, {})
    driver = manager.driver

    async def unavailable() -> None:
        raise errors.DriverError("storage unavailable")

    driver._open = unavailable  # type: ignore[method-assign]
    with pytest.raises(errors.DriverError):
        await manager.start()

    # When the store comes back, start is retried and the Manager is stopped
    del driver._open
    await manager.start()
    await manager.enqueue_workflow(WF, INST, {"ok": True})
    done = await wait_finished(manager, WF, INST)
    await manager.stop()

    # Then the retry ran the workflow and nothing was left open
    assert done.get_result() == {"ok": True}
    assert not driver.is_open


async def test_stop_after_a_failed_start_releases_everything(make_manager: MakeManager) -> None:
    manager = make_manager()
    driver = manager.driver

    async def unavailable() -> None:
        raise errors.DriverError("storage unavailable")

    driver._open = unavailable  # type: ignore[method-assign]
    with pytest.raises(errors.DriverError):
        await manager.start()

    await manager.stop()  # no AssertionError: nothing was started

    assert not driver.is_open


async def test_a_rule_dateutil_fails_on_later_is_an_invalid_schedule_error(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()

    with pytest.raises(errors.InvalidScheduleError, match="BYHOUR"):
        await manager.create_workflow_schedule(WF, INST, None, "FREQ=MINUTELY;BYHOUR=25")

    assert await nothing_stored(manager)


@pytest.mark.parametrize("option", ["workflow_poll_interval", "task_poll_interval"])
@pytest.mark.parametrize("value", [0, 0.0, -1, float("nan"), float("inf")], ids=repr)
async def test_a_poll_interval_that_would_spin_is_refused(
    make_manager: MakeManager, option: str, value: float
) -> None:
    with pytest.raises(ValueError, match=option):
        make_manager(**{option: value})


LIMIT = 1000
BIG = {"blob": "x" * 2000}


def oversize_continue(w: WorkflowInstance, ev: Any) -> Decision:
    return w.continue_(BIG)


def oversize_complete(w: WorkflowInstance, ev: Any) -> Decision:
    return w.complete(BIG)


def oversize_task_parameters(w: WorkflowInstance, ev: Any) -> Decision:
    w.enqueue_task("t", BIG)
    return w.continue_({"small": True})


@pytest.mark.parametrize(
    ("on_start", "where"),
    [
        (oversize_continue, "continue_"),
        (oversize_complete, "complete"),
        (oversize_task_parameters, "enqueue_task"),
    ],
    ids=["continue_payload", "complete_result", "task_parameters"],
)
async def test_an_oversize_value_made_in_a_callback_fails_the_instance_storing_none_of_it(
    make_manager: MakeManager, on_start: Any, where: str
) -> None:
    # Given a Manager with a small value limit and a callback producing a larger value
    manager = make_manager(max_value_bytes=LIMIT)
    ran: list[Any] = []
    register(manager, {WF: Flow(on_start)}, {"t": lambda task: ran.append(task)})
    await manager.start()

    # When the instance runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then it failed with an error naming the call and the limit, and stored none of the value
    text = str(done.err())
    assert text.startswith("ValueError: ")
    assert where in text
    assert f"limit of {LIMIT} bytes" in text
    assert done.get_payload() is None
    assert ran == []  # no task was stored


async def test_an_oversize_task_result_fails_the_task_naming_the_limit(
    make_manager: MakeManager,
) -> None:
    # Given a task executor returning a value over the limit
    manager = make_manager(max_value_bytes=LIMIT)

    def report(w: WorkflowInstance, ev: Any) -> Decision:
        result = ev.result
        return w.complete({"status": str(result.status), "error": str(result.err())})

    register(manager, {WF: Flow(enqueue(("t", None)), report)}, {"t": lambda task: BIG})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then the task failed with an error naming the limit, and no result was kept
    outcome = done.get_result()
    assert outcome["status"] == "failed"
    assert "result" in outcome["error"]
    assert f"limit of {LIMIT} bytes" in outcome["error"]


# bidi embeddings/overrides, bidi isolates, line and paragraph separators, zero-width space, BOM
INVISIBLE = [
    *(chr(code) for code in range(0x202A, 0x202F)),
    *(chr(code) for code in range(0x2066, 0x206A)),
    "\u2028",
    "\u2029",
    "\u200b",
    "\ufeff",
]
NON_ASCII_NAMES = ["café", "名前と仕事", "🚀 launch 🎉", "שלום עולם", "مرحبا"]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda char: f"U+{ord(char):04X}")
async def test_invisible_characters_in_names_are_refused_like_control_characters(
    make_manager: MakeManager, char: str
) -> None:
    # Given a name hiding one of the refused characters
    manager = make_manager()
    bad = f"pay{char}roll"

    # When it is used as a workflow, instance, task or schedule name
    for workflow, instance in [(bad, INST), (WF, bad)]:
        with pytest.raises(ValueError, match=r"position 3$") as refused:
            await manager.enqueue_workflow(workflow, instance)
        assert "\n" not in str(refused.value) and char not in str(refused.value)
        with pytest.raises(ValueError, match=r"position 3$"):
            await manager.create_workflow_schedule(workflow, instance, None, RULE)
    with pytest.raises(ValueError, match="workflow name"):
        manager.register_workflow_executor(bad, Flow())
    with pytest.raises(ValueError, match="task name"):
        manager.register_task_executor(bad, echo)

    # Then nothing was stored
    assert await nothing_stored(manager)


async def test_a_task_name_with_an_invisible_character_fails_the_instance(
    make_manager: MakeManager,
) -> None:
    # Given a workflow enqueueing tasks whose names hide each refused character
    def on_start(w: WorkflowInstance, ev: Any) -> Decision:
        refused = []
        for char in INVISIBLE:
            try:
                w.enqueue_task(f"task{char}", None)
            except ValueError as exc:
                refused.append(str(exc))
        return w.complete(refused)

    manager = register(make_manager(), {WF: Flow(on_start)}, {})
    await manager.start()

    # When it runs
    await manager.enqueue_workflow(WF, INST)
    done = await wait_finished(manager, WF, INST)

    # Then every one was refused with a one-line error naming the task name
    refused = done.get_result()
    assert len(refused) == len(INVISIBLE)
    assert all(text.startswith("task name ") and "\n" not in text for text in refused)


@pytest.mark.parametrize("name", NON_ASCII_NAMES, ids=repr)
async def test_ordinary_non_ascii_names_round_trip_everywhere(
    make_manager: MakeManager, name: str
) -> None:
    # Given a workflow and a task registered under an ordinary non-ASCII name
    manager = register(make_manager(), {name: Flow(enqueue((name, "ping")))}, {name: echo})
    await manager.start()

    # When an instance and a schedule are stored under it and the instance runs
    await manager.create_workflow_schedule(name, f"{name} schedule", {"name": name}, RULE)
    await manager.enqueue_workflow(name, name, {"name": name})
    done = await wait_finished(manager, name, name)

    # Then every name comes back unchanged
    assert (done.workflow_name, done.instance_name) == (name, name)
    [entry] = done.get_result()
    assert (entry["task"], entry["result"]) == (name, "ping")
    schedule = await manager.get_workflow_schedule(name, f"{name} schedule")
    assert (schedule.workflow_name, schedule.get_parameters()) == (name, {"name": name})
