"""``cereal serve`` checks requests itself: a raw client (no Manager, no GrpcDriver checks)
sending bad fields gets INVALID_ARGUMENT naming the field, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import grpc
from cereal.values import MAX_ERROR_CHARS
from cereal.wire.error_status import error_from_pb, status_code
from cereal.wire.proto import cereal_v1_pb2 as pb
from cereal.wire.proto import cereal_v1_pb2_grpc as pb_grpc
from tests._waiting import wait_until

WF, INST = "wf", "inst"
RULE = "FREQ=DAILY"
BIG = json.dumps("x" * (20 * 1024 * 1024)).encode()  # 20 MiB: over the 16 MiB value limit
LONG_TEXT = "e" * (MAX_ERROR_CHARS + 1)  # an error text one character over what is stored
BAD_POLICY = '{"max_attempts": "lots"}'
GOOD_POLICY = (
    '{"initial_backoff":1.0,"jitter":0.1,"max_attempts":2,"max_backoff":300.0,'
    '"multiplier":2.0,"non_retryable":[]}'
)


@pytest.fixture
async def stub(served_url: str, grpc_server_factory: Any) -> AsyncIterator[Any]:
    """A raw ``cereal.v1.Cereal`` stub on a fresh served store."""
    server = grpc_server_factory(served_url, maintenance=False)
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield pb_grpc.CerealStub(channel)  # type: ignore[no-untyped-call]


def value(data: bytes) -> pb.Value:
    return pb.Value(data=data)


async def snapshot(stub: Any) -> tuple[Any, ...]:
    """Everything a refused request could have changed."""
    instances = await stub.ListWorkflowInstances(pb.ListWorkflowInstancesRequest())
    schedules = await stub.ListWorkflowSchedules(pb.ListSchedulesRequest())
    stats = await stub.TaskQueueStats(pb.Empty())
    return (
        sorted(i.SerializeToString(deterministic=True) for i in instances.instances),
        sorted(
            (s.workflow_name, s.instance_name, s.recurrence, s.parameters.data, s.overlap)
            for s in schedules.schedules
        ),
        [(q.task_name, q.queued, q.running) for q in stats.queues],
    )


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value


# ---- unary requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workflow", "instance", "parameters", "field"),
    [
        ("", INST, None, "workflow name"),
        ("wf\x00nul", INST, None, "workflow name"),
        ("wf\x1besc", INST, None, "workflow name"),
        ("wf\nline", INST, None, "workflow name"),
        ("wf\u202eoverride", INST, None, "workflow name"),
        (WF, "in\nst", None, "instance name"),
        (WF, "", None, "instance name"),
        (WF, INST, b"not json", "parameters"),
        (WF, INST, b'{"x": NaN}', "parameters"),
        (WF, INST, b'"\\ud800"', "parameters"),
        (WF, INST, BIG, "parameters"),
    ],
    ids=repr,
)
async def test_enqueue_with_a_bad_field_is_invalid_argument_and_stores_nothing(
    stub: Any, workflow: str, instance: str, parameters: bytes | None, field: str
) -> None:
    request = pb.EnqueueWorkflowRequest(
        workflow_name=workflow,
        instance_name=instance,
        parameters=None if parameters is None else value(parameters),
    )

    error = await refused(stub.EnqueueWorkflow(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert await snapshot(stub) == ([], [], [])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"concurrency_key": "k", "concurrency_limit": 0}, "concurrency_limit"),
        ({"concurrency_key": "k", "concurrency_limit": 10_001}, "concurrency_limit"),
        ({"concurrency_key": "", "concurrency_limit": 2}, "concurrency_key"),
        ({"concurrency_key": "a\x00b", "concurrency_limit": 2}, "concurrency_key"),
        ({"concurrency_key": "k", "concurrency_limit": 2, "idempotency_key": ""}, "idempotency"),
    ],
)
async def test_a_keyed_enqueue_with_a_bad_field_is_invalid_argument_and_stores_nothing(
    stub: Any, fields: dict[str, Any], field: str
) -> None:
    request = pb.EnqueueKeyedWorkflowRequest(workflow_name=WF, instance_name=INST, **fields)

    error = await refused(stub.EnqueueKeyedWorkflow(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert await snapshot(stub) == ([], [], [])


def schedule_request(**fields: Any) -> pb.CreateScheduleRequest:
    request = pb.CreateScheduleRequest(
        workflow_name=WF,
        instance_name=INST,
        parameters=value(b'{"s": 1}'),
        enabled=True,
        recurrence=RULE,
        overlap="skip",
        catch_up_window=0.0,
    )
    request.next_due_at.GetCurrentTime()
    for name, given in fields.items():
        if name == "parameters":
            request.parameters.CopyFrom(value(given))
        else:
            setattr(request, name, given)
    return request


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"recurrence": "NOT A RULE"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;UNTIL=20000101T000000Z"}, "no future occurrence"),
        ({"workflow_name": "w\x00f"}, "workflow name"),
        ({"instance_name": "i\u2028nst"}, "instance name"),
        ({"parameters": b"{oops"}, "parameters"),
        ({"parameters": BIG}, "parameters"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"catch_up_window": -1.0}, "catch_up_window"),
        ({"catch_up_window": float("nan")}, "catch_up_window"),
    ],
    ids=repr,
)
async def test_create_schedule_with_a_bad_field_is_invalid_argument_and_stores_nothing(
    stub: Any, fields: dict[str, Any], field: str
) -> None:
    error = await refused(stub.CreateWorkflowSchedule(schedule_request(**fields)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert await snapshot(stub) == ([], [], [])


async def test_a_cron_rule_is_stored_normalised(stub: Any) -> None:
    await stub.CreateWorkflowSchedule(schedule_request(recurrence="0 3 * * *"))

    found = await stub.GetWorkflowSchedule(pb.InstanceKey(workflow_name=WF, instance_name=INST))
    assert found.recurrence == "FREQ=DAILY;BYHOUR=3;BYMINUTE=0;BYSECOND=0"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"recurrence": "NOT A RULE"}, "recurrence"),
        ({"set_parameters": True, "parameters": value(b"nope")}, "parameters"),
        ({"set_parameters": True, "parameters": value(BIG)}, "parameters"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"catch_up_window": -5.0}, "catch_up_window"),
        ({"instance_name": "\x1b[31mred"}, "instance name"),
    ],
    ids=repr,
)
async def test_update_schedule_with_a_bad_field_is_invalid_argument_and_changes_nothing(
    stub: Any, fields: dict[str, Any], field: str
) -> None:
    await stub.CreateWorkflowSchedule(schedule_request())
    before = await snapshot(stub)
    request = pb.UpdateScheduleRequest(**{"workflow_name": WF, "instance_name": INST, **fields})

    error = await refused(stub.UpdateWorkflowSchedule(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert await snapshot(stub) == before


# ---- decisions and reports on the streams ------------------------------------------------


class ClaimStream:
    """One ClaimWorkflows stream holding the one live instance."""

    def __init__(self, stub: Any) -> None:
        self.call = stub.ClaimWorkflows()
        self.next_id = 0

    async def claim(self) -> None:
        ask = pb.ClaimWorkflowsRequest(
            workflow_names=[WF], max_instances=1, max_events=1, claim_expiry=60.0
        )
        await self.call.write(pb.WorkflowStreamRequest(claim=ask))
        reply = await self.call.read()
        assert len(reply.claimed.instances) == 1

    async def decide(self, decision: pb.WorkflowDecision) -> pb.Answer:
        self.next_id += 1
        decision.request_id, decision.claim = self.next_id, 0
        await self.call.write(pb.WorkflowStreamRequest(decision=decision))
        reply = await self.call.read()
        answer: pb.Answer = reply.answer
        return answer

    async def end(self) -> None:
        await self.call.done_writing()
        while await self.call.read() is not grpc.aio.EOF:
            pass


def continue_with(payload: bytes | None = None, *tasks: pb.NewTask) -> pb.WorkflowDecision:
    carried = pb.Continue(payload=None if payload is None else value(payload), tasks=tasks)
    return pb.WorkflowDecision(continue_=carried)


def assert_invalid(answer: pb.Answer, field: str) -> None:
    assert answer.HasField("error")
    error = error_from_pb(answer.error)
    assert status_code(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert field in str(error)


@pytest.mark.parametrize(
    ("decision", "field"),
    [
        (continue_with(None, pb.NewTask(task_name="t", retry_policy=BAD_POLICY)), "retry_policy"),
        (continue_with(None, pb.NewTask(task_name="t", retry_policy="[]")), "retry_policy"),
        (continue_with(None, pb.NewTask(task_name="")), "task name"),
        (continue_with(None, pb.NewTask(task_name="t\x00")), "task name"),
        (continue_with(None, pb.NewTask(task_name="t\ufeff")), "task name"),
        (continue_with(None, pb.NewTask(task_name="t", parameters=value(b"?"))), "parameters"),
        (continue_with(None, pb.NewTask(task_name="t", parameters=value(BIG))), "parameters"),
        (continue_with(None, pb.NewTask(task_name="t", concurrency_key="k")), "concurrency_limit"),
        (continue_with(None, pb.NewTask(task_name="t", concurrency_limit=2)), "concurrency_key"),
        (
            continue_with(
                None, pb.NewTask(task_name="t", concurrency_key="k", concurrency_limit=0)
            ),
            "concurrency_limit",
        ),
        (
            continue_with(
                None, pb.NewTask(task_name="t", concurrency_key="k\x00", concurrency_limit=1)
            ),
            "concurrency_key",
        ),
        (
            continue_with(
                None, pb.NewTask(task_name="t", rate_limit_starts=2, rate_limit_seconds=1)
            ),
            "concurrency_key",
        ),
        (
            continue_with(
                None, pb.NewTask(task_name="t", concurrency_key="k", rate_limit_starts=2)
            ),
            "rate limit",
        ),
        (
            continue_with(
                None,
                pb.NewTask(
                    task_name="t", concurrency_key="k", rate_limit_starts=0, rate_limit_seconds=1
                ),
            ),
            "rate_limit starts",
        ),
        (
            continue_with(
                None,
                pb.NewTask(
                    task_name="t",
                    concurrency_key="k",
                    rate_limit_starts=2,
                    rate_limit_seconds=float("inf"),
                ),
            ),
            "rate_limit per",
        ),
        (continue_with(None, pb.NewTask(task_name="t", priority=101)), "priority"),
        (continue_with(None, pb.NewTask(task_name="t", priority=-1)), "priority"),
        (continue_with(None, pb.NewTask(task_name="t", idempotency_key="")), "idempotency_key"),
        (
            continue_with(None, pb.NewTask(task_name="t", idempotency_key="a\x00b")),
            "idempotency_key",
        ),
        (continue_with(b"not json"), "payload"),
        (continue_with(BIG), "payload"),
        (pb.WorkflowDecision(done=pb.Done(result=value(b"Infinity"))), "result"),
        (pb.WorkflowDecision(done=pb.Done(result=value(BIG))), "result"),
        (pb.WorkflowDecision(fail=pb.Fail(error=LONG_TEXT)), "fail error"),
        (pb.WorkflowDecision(fail=pb.Fail(error="e", error_type=LONG_TEXT)), "error_type"),
        (pb.WorkflowDecision(fail=pb.Fail(error="e", error_traceback=LONG_TEXT)), "traceback"),
    ],
    ids=repr,
)
async def test_a_decision_with_a_bad_field_is_invalid_argument_and_stores_nothing(
    stub: Any, decision: pb.WorkflowDecision, field: str
) -> None:
    # Given a live instance, claimed by a raw client
    await stub.EnqueueWorkflow(pb.EnqueueWorkflowRequest(workflow_name=WF, instance_name=INST))
    before = await snapshot(stub)
    stream = ClaimStream(stub)
    await stream.claim()

    # When it sends a decision holding a bad field
    answer = await stream.decide(decision)
    await stream.end()

    # Then the answer is INVALID_ARGUMENT naming it, and the instance is as it was
    assert_invalid(answer, field)
    assert await snapshot(stub) == before
    again = ClaimStream(stub)
    await again.claim()  # the event was not consumed
    await again.end()


async def test_a_dequeue_with_a_bad_retry_policy_is_invalid_argument(stub: Any) -> None:
    call = stub.DequeueTasks()
    ask = pb.DequeueTasksRequest(
        task_name="t", max_tasks=1, task_expiry=60.0, retry_policy=BAD_POLICY
    )
    await call.write(pb.TaskStreamRequest(dequeue=ask))

    error = await refused(call.read())

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "retry_policy" in (error.details() or "")


@pytest.mark.parametrize(
    ("report", "field"),
    [
        (pb.TaskReport(succeed=pb.Succeed(result=value(b"nope"))), "result"),
        (pb.TaskReport(succeed=pb.Succeed(result=value(BIG))), "result"),
        (pb.TaskReport(retry=pb.Retry(error="e", delay=-1.0)), "delay"),
        (pb.TaskReport(retry=pb.Retry(error="e", delay=1e300)), "delay"),
        (pb.TaskReport(retry=pb.Retry(error=LONG_TEXT, delay=1.0)), "retry error"),
        (pb.TaskReport(fail=LONG_TEXT), "fail error"),
        (pb.TaskReport(fail_with_details=pb.Fail(error=LONG_TEXT)), "fail_with_details error"),
        (
            pb.TaskReport(fail_with_details=pb.Fail(error="e", error_traceback=LONG_TEXT)),
            "error_traceback",
        ),
    ],
    ids=repr,
)
async def test_a_task_report_with_a_bad_field_is_invalid_argument_and_stores_nothing(
    stub: Any, report: pb.TaskReport, field: str
) -> None:
    # Given a leased task, enqueued with a retry policy by a valid decision
    await stub.EnqueueWorkflow(pb.EnqueueWorkflowRequest(workflow_name=WF, instance_name=INST))
    stream = ClaimStream(stub)
    await stream.claim()
    task = pb.NewTask(task_name="t", parameters=value(b"1"), retry_policy=GOOD_POLICY)
    assert not (await stream.decide(continue_with(b"{}", task))).HasField("error")
    await stream.end()
    call = stub.DequeueTasks()
    ask = pb.DequeueTasksRequest(task_name="t", max_tasks=1, task_expiry=60.0)
    await call.write(pb.TaskStreamRequest(dequeue=ask))
    assert len((await call.read()).leased.tasks) == 1

    # When a report with a bad field is sent, then a good one
    report.request_id, report.lease = 1, 0
    await call.write(pb.TaskStreamRequest(report=report))
    bad = (await call.read()).answer
    good = pb.TaskReport(request_id=2, lease=0, succeed=pb.Succeed(result=value(b'"ok"')))
    await call.write(pb.TaskStreamRequest(report=good))
    accepted = (await call.read()).answer
    await call.done_writing()

    # Then the first is INVALID_ARGUMENT naming the field, and only the good result is stored
    assert_invalid(bad, field)
    assert not accepted.HasField("error")
    stream = ClaimStream(stub)
    ask_events = pb.ClaimWorkflowsRequest(
        workflow_names=[WF], max_instances=1, max_events=8, claim_expiry=60.0
    )
    await stream.call.write(pb.WorkflowStreamRequest(claim=ask_events))
    [claimed] = (await stream.call.read()).claimed.instances
    [completion] = claimed.events
    assert completion.task_result.status == "success"
    assert completion.task_result.result.data == b'"ok"'
    await stream.end()


# ---- trace contexts: a malformed one is ignored, never a reason to refuse -------------

GOOD_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
MALFORMED_TRACEPARENTS = [
    "not a traceparent",
    "00-" + "A" * 32 + "-b7ad6b7169203331-01",  # uppercase
    GOOD_TRACEPARENT + "\n",
    "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # the all-zero trace id
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-" + "x" * 600,  # too long
]


@pytest.mark.parametrize("malformed", MALFORMED_TRACEPARENTS, ids=repr)
async def test_a_malformed_traceparent_is_dropped_and_everything_else_stored(
    stub: Any, malformed: str
) -> None:
    # Given a run enqueued with a malformed trace context
    await stub.EnqueueWorkflow(
        pb.EnqueueWorkflowRequest(workflow_name=WF, instance_name=INST, traceparent=malformed)
    )
    # Then it is stored without it
    call = stub.ClaimWorkflows()
    ask = pb.ClaimWorkflowsRequest(
        workflow_names=[WF], max_instances=1, max_events=8, claim_expiry=60.0
    )
    await call.write(pb.WorkflowStreamRequest(claim=ask))
    [claimed] = (await call.read()).claimed.instances
    assert not claimed.events[0].instance.HasField("traceparent")
    # and a decision's task with a malformed context is enqueued without it
    task = pb.NewTask(task_name="t", parameters=value(b"1"), traceparent=malformed)
    decision = continue_with(b"{}", task)
    decision.request_id, decision.claim = 1, 0
    await call.write(pb.WorkflowStreamRequest(decision=decision))
    assert not (await call.read()).answer.HasField("error")
    await call.done_writing()
    while await call.read() is not grpc.aio.EOF:
        pass
    tasks = stub.DequeueTasks()
    await tasks.write(
        pb.TaskStreamRequest(
            dequeue=pb.DequeueTasksRequest(task_name="t", max_tasks=1, task_expiry=60.0)
        )
    )
    [leased] = (await tasks.read()).leased.tasks
    assert not leased.HasField("traceparent")
    # and a success reported with a malformed context is recorded all the same
    report = pb.TaskReport(
        request_id=1, lease=0, succeed=pb.Succeed(result=value(b'"ok"')), traceparent=malformed
    )
    await tasks.write(pb.TaskStreamRequest(report=report))
    assert not (await tasks.read()).answer.HasField("error")
    await tasks.done_writing()
    stream = ClaimStream(stub)
    await stream.call.write(pb.WorkflowStreamRequest(claim=ask))
    [again] = (await stream.call.read()).claimed.instances
    [completion] = again.events
    assert completion.task_result.result.data == b'"ok"'
    assert not completion.task_result.HasField("traceparent")
    await stream.end()


async def test_a_well_formed_traceparent_is_kept_with_the_run_and_the_result(stub: Any) -> None:
    later_version = "01-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01-future"
    await stub.EnqueueWorkflow(
        pb.EnqueueWorkflowRequest(
            workflow_name=WF, instance_name=INST, traceparent=GOOD_TRACEPARENT
        )
    )
    call = stub.ClaimWorkflows()
    ask = pb.ClaimWorkflowsRequest(
        workflow_names=[WF], max_instances=1, max_events=8, claim_expiry=60.0
    )
    await call.write(pb.WorkflowStreamRequest(claim=ask))
    [claimed] = (await call.read()).claimed.instances
    assert claimed.events[0].instance.traceparent == GOOD_TRACEPARENT
    decision = continue_with(b"{}", pb.NewTask(task_name="t", traceparent=GOOD_TRACEPARENT))
    decision.request_id, decision.claim = 1, 0
    await call.write(pb.WorkflowStreamRequest(decision=decision))
    assert not (await call.read()).answer.HasField("error")
    await call.done_writing()
    while await call.read() is not grpc.aio.EOF:
        pass
    tasks = stub.DequeueTasks()
    await tasks.write(
        pb.TaskStreamRequest(
            dequeue=pb.DequeueTasksRequest(task_name="t", max_tasks=1, task_expiry=60.0)
        )
    )
    [leased] = (await tasks.read()).leased.tasks
    assert leased.traceparent == GOOD_TRACEPARENT
    report = pb.TaskReport(request_id=1, lease=0, succeed=pb.Succeed(), traceparent=later_version)
    await tasks.write(pb.TaskStreamRequest(report=report))
    assert not (await tasks.read()).answer.HasField("error")
    await tasks.done_writing()
    stream = ClaimStream(stub)
    await stream.call.write(pb.WorkflowStreamRequest(claim=ask))
    [again] = (await stream.call.read()).claimed.instances
    assert again.events[0].task_result.traceparent == later_version
    await stream.end()


# ---- expiries, counts and retention ---------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"max_rows": -1}, "max_rows"),
        ({"margin_rows": -1}, "margin_rows"),
        ({"max_rows": 10**12}, "max_rows"),
        ({"max_age": float("nan")}, "max_age"),
        ({"max_age": 1e300}, "max_age"),
    ],
    ids=repr,
)
async def test_a_trim_with_a_bad_retention_is_invalid_argument_and_trims_nothing(
    stub: Any, request_fields: dict[str, Any], field: str
) -> None:
    await stub.EnqueueWorkflow(pb.EnqueueWorkflowRequest(workflow_name=WF, instance_name=INST))
    await stub.KillWorkflow(pb.KillWorkflowRequest(workflow_name=WF, instance_name=INST))
    before = await stub.ListWorkflowInstances(pb.ListWorkflowInstancesRequest())
    assert len(before.instances) == 1  # the killed run, kept as history

    error = await refused(stub.TrimHistory(pb.TrimHistoryRequest(**request_fields)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    # the refused retention did not become the domain's: a good trim still keeps the run
    assert not (await stub.TrimHistory(pb.TrimHistoryRequest(max_rows=10, margin_rows=1))).trimmed
    after = await stub.ListWorkflowInstances(pb.ListWorkflowInstancesRequest())
    assert len(after.instances) == 1


@pytest.mark.parametrize(
    ("ask", "field"),
    [(pb.ListSchedulesRequest(limit=0), "limit"), (pb.ListSchedulesRequest(offset=-1), "offset")],
    ids=["limit-0", "offset-negative"],
)
async def test_a_schedule_page_out_of_range_is_invalid_argument(
    stub: Any, ask: Any, field: str
) -> None:
    error = await refused(stub.ListWorkflowSchedules(ask))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")


def _settle(**fields: Any) -> Any:
    """A settlement request with one settlement of these fields (a well-formed one by default)."""
    settlement = {"task_id": "1", "lease": "a-lease", **fields}
    return pb.SettleExpiredLeasesRequest(
        settlements=[pb.LeaseSettlement(**settlement)], task_expiry=60.0
    )


@pytest.mark.parametrize(
    ("method", "ask", "field"),
    [
        (
            "ExpiredTaskLeases",
            pb.ExpiredTaskLeasesRequest(task_expiry=-1.0, limit=5),
            "task_expiry",
        ),
        (
            "ExpiredTaskLeases",
            pb.ExpiredTaskLeasesRequest(task_expiry=1e300, limit=5),
            "task_expiry",
        ),
        ("ExpiredTaskLeases", pb.ExpiredTaskLeasesRequest(task_expiry=60.0, limit=0), "limit"),
        ("ExpiredTaskLeases", pb.ExpiredTaskLeasesRequest(task_expiry=60.0, limit=10**6), "limit"),
        ("ReleaseStaleClaims", pb.ReleaseStaleClaimsRequest(task_expiry=-1.0), "task_expiry"),
        ("ReleaseStaleClaims", pb.ReleaseStaleClaimsRequest(task_expiry=1e300), "task_expiry"),
        (
            "SettleExpiredLeases",
            pb.SettleExpiredLeasesRequest(task_expiry=float("inf")),
            "task_expiry",
        ),
        (
            "SettleExpiredLeases",
            pb.SettleExpiredLeasesRequest(
                settlements=[pb.LeaseSettlement(task_id="1", lease="l")] * 10_001, task_expiry=60.0
            ),
            "settlements",
        ),
        ("SettleExpiredLeases", _settle(task_id=""), "settlements[0].task_id"),
        ("SettleExpiredLeases", _settle(task_id="1" * 256), "settlements[0].task_id"),
        ("SettleExpiredLeases", _settle(lease=""), "settlements[0].lease"),
        ("SettleExpiredLeases", _settle(delay=-1.0), "settlements[0].delay"),
        ("SettleExpiredLeases", _settle(delay=float("nan")), "settlements[0].delay"),
        ("SettleExpiredLeases", _settle(delay=1e12), "settlements[0].delay"),
        ("SettleExpiredLeases", _settle(error=LONG_TEXT), "settlements[0].error"),
    ],
    ids=repr,
)
async def test_a_sweep_operation_with_a_bad_field_is_invalid_argument(
    stub: Any, method: str, ask: Any, field: str
) -> None:
    # Given a task whose lease has expired (held for 10 ms, never heartbeated)
    await stub.EnqueueWorkflow(pb.EnqueueWorkflowRequest(workflow_name=WF, instance_name=INST))
    stream = ClaimStream(stub)
    await stream.claim()
    assert not (await stream.decide(continue_with(None, pb.NewTask(task_name="t")))).error.kind
    call = stub.DequeueTasks()
    lease = pb.DequeueTasksRequest(task_name="t", max_tasks=1, task_expiry=0.01)
    await call.write(pb.TaskStreamRequest(dequeue=lease))
    [task] = (await call.read()).leased.tasks
    expired = pb.ExpiredTaskLeasesRequest(task_expiry=3600.0, limit=5)
    await wait_until(
        lambda: _leases(stub.ExpiredTaskLeases(expired)), what="the lease past its deadline"
    )
    before = await snapshot(stub)

    # When a sweep operation with a bad field arrives
    error = await refused(getattr(stub, method)(ask))

    # Then it is refused naming the field, and the expired lease is still there, unsettled
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or ""), error.details()
    assert await snapshot(stub) == before
    [still] = (await stub.ExpiredTaskLeases(expired)).leases
    assert still.task_id == task.task_id
    call.cancel()
    await stream.end()


async def _leases(call: Any) -> bool:
    return len((await call).leases) == 1


@pytest.mark.parametrize(
    ("ask", "field"),
    [
        (pb.DequeueTasksRequest(task_name="t", max_tasks=1, task_expiry=-5.0), "task_expiry"),
        (pb.DequeueTasksRequest(task_name="t", max_tasks=1, task_expiry=1e300), "task_expiry"),
        (pb.DequeueTasksRequest(task_name="t", max_tasks=0, task_expiry=60.0), "max_tasks"),
    ],
    ids=repr,
)
async def test_a_dequeue_with_a_bad_count_or_expiry_is_invalid_argument(
    stub: Any, ask: Any, field: str
) -> None:
    call = stub.DequeueTasks()
    await call.write(pb.TaskStreamRequest(dequeue=ask))

    error = await refused(call.read())

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")


@pytest.mark.parametrize(
    ("claim", "field"),
    [
        (
            pb.ClaimWorkflowsRequest(
                workflow_names=[WF], max_instances=1, max_events=1, claim_expiry=1e300
            ),
            "claim_expiry",
        ),
        (
            pb.ClaimWorkflowsRequest(
                workflow_names=[WF], max_instances=0, max_events=1, claim_expiry=60.0
            ),
            "max_instances",
        ),
    ],
    ids=repr,
)
async def test_a_claim_with_a_bad_count_or_expiry_is_invalid_argument(
    stub: Any, claim: Any, field: str
) -> None:
    await stub.EnqueueWorkflow(pb.EnqueueWorkflowRequest(workflow_name=WF, instance_name=INST))
    call = stub.ClaimWorkflows()
    await call.write(pb.WorkflowStreamRequest(claim=claim))

    error = await refused(call.read())

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")


async def test_a_worker_with_a_bad_expiry_or_name_is_invalid_argument(stub: Any) -> None:
    for worker, field in (
        (pb.NewWorker(id="w1", host="h", pid=1, expiry=1e300), "expiry"),
        (pb.NewWorker(id="w1", host="h", pid=1, expiry=60.0, task_names=["a\nb"]), "task name"),
        (pb.NewWorker(id="", host="h", pid=1, expiry=60.0), "worker id"),
    ):
        error = await refused(stub.RegisterWorker(worker))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (error.details() or ""), field
    assert not (await stub.ListWorkers(pb.Empty())).workers
