"""The generic record codec: what it refuses to build, what it refuses to read, and the
hot path's written-out codecs giving the very messages it gives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest

from cereal.models import (
    NewTask,
    TaskResultData,
    TaskStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
)
from cereal.wire import convert
from cereal.wire.codec import Codec, RecordCodec
from cereal.wire.proto import cereal_v1_pb2 as pb
from tests.grpc.test_convert import FAILED_RESULT, FAILED_RUN, T0, T2, TRACEPARENT

GENERIC_INSTANCE = RecordCodec(WorkflowInstanceData, pb.Instance)
GENERIC_RESULT = RecordCodec(TaskResultData, pb.TaskResult)
GENERIC_EVENT = RecordCodec(
    WorkflowEvent, pb.Event, nested={"instance": GENERIC_INSTANCE, "task_result": GENERIC_RESULT}
)
BARE_RUN = WorkflowInstanceData("wf", "inst", WorkflowInstanceStatus.RUNNING)

SAMPLES: list[tuple[object, Codec[object, object], Codec[object, object]]] = [
    (FAILED_RUN, convert.INSTANCE, GENERIC_INSTANCE),
    (BARE_RUN, convert.INSTANCE, GENERIC_INSTANCE),
    (FAILED_RESULT, convert.TASK_RESULT, GENERIC_RESULT),
    (
        WorkflowEvent(WorkflowEventType.TASK_COMPLETE, FAILED_RUN, 4, 2, T2, FAILED_RESULT),
        convert.EVENT,
        GENERIC_EVENT,
    ),
    (WorkflowEvent(WorkflowEventType.START, BARE_RUN, 0, 0, T0), convert.EVENT, GENERIC_EVENT),
    (
        NewTask("t", b"x", start_after=T2, traceparent=TRACEPARENT, retry_policy="{}"),
        convert.NEW_TASK,
        RecordCodec(NewTask, pb.NewTask),
    ),
    (NewTask("t"), convert.NEW_TASK, RecordCodec(NewTask, pb.NewTask)),
]


@pytest.mark.parametrize(
    ("sample", "written", "generic"),
    SAMPLES,
    ids=[f"{type(s).__name__}-{i}" for i, (s, _, _) in enumerate(SAMPLES)],
)
def test_written_out_codecs_agree_with_the_generic_walk(
    sample: object, written: Codec[object, object], generic: Codec[object, object]
) -> None:
    message = written.to_pb(sample)
    assert generic.to_pb(sample) == message
    assert generic.from_pb(message) == written.from_pb(message) == sample


@dataclass(frozen=True)
class _Unmatched:
    error: str
    hint: str  # pb.Fail has no such field


@dataclass(frozen=True)
class _NoneInPlainField:
    error: str | None  # pb.Fail.error is not proto3 optional: None could not cross


@dataclass(frozen=True)
class _TextInValue:
    parameters: str | None  # a Value carries bytes


@dataclass(frozen=True)
class _ClockInTimestamp:
    enqueued_at: float


@dataclass(frozen=True)
class _NestedWithoutCodec:
    type: WorkflowEventType
    instance: WorkflowInstanceData


@dataclass(frozen=True)
class _LocalWithoutDefault:
    error: str
    kept_here: str


@pytest.mark.parametrize(
    ("record", "message", "options", "refusal"),
    [
        (_Unmatched, pb.Fail, {}, "has no field 'hint'"),
        (_NoneInPlainField, pb.Fail, {}, "must be proto3 optional"),
        (_TextInValue, pb.NewTask, {}, "a Value field carries bytes"),
        (_ClockInTimestamp, pb.Event, {}, "a Timestamp field carries a datetime"),
        (_NestedWithoutCodec, pb.Event, {}, "give its codec"),
        (_LocalWithoutDefault, pb.Fail, {"local": ("kept_here",)}, "needs a default"),
        (_Unmatched, pb.Fail, {"parse": {"nope": str}}, "no carried fields ['nope']"),
    ],
    ids=["unmatched", "none", "value", "timestamp", "nested", "local", "unknown-hook"],
)
def test_a_record_its_message_cannot_carry_fails_when_the_codec_is_built(
    record: type, message: type, options: dict[str, object], refusal: str
) -> None:
    with pytest.raises(TypeError, match=refusal.replace("[", r"\[").replace("]", r"\]")):
        RecordCodec(record, message, **options)  # type: ignore[arg-type]


def test_a_missing_required_time_is_a_malformed_message() -> None:
    message = pb.InstanceTask(task_id="id", task_name="t", state="queued", attempt=1)
    message.start_after.FromDatetime(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="'enqueued_at' is required"):
        convert.INSTANCE_TASK.from_pb(message)


def test_values_outside_the_records_choices_are_refused_as_read() -> None:
    schedule = _schedule_message()
    assert convert.SCHEDULE.from_pb(schedule).overlap == "skip"
    schedule.overlap = "whenever"
    with pytest.raises(ValueError, match="whenever"):
        convert.SCHEDULE.from_pb(schedule)
    event = _event_message(type="start", task_status="lost")
    assert convert.INSTANCE_EVENT.from_pb(event).task_status is TaskStatus.LOST
    event.task_status = "misplaced"
    with pytest.raises(ValueError, match="misplaced"):
        convert.INSTANCE_EVENT.from_pb(event)


def _schedule_message() -> pb.Schedule:
    message = pb.Schedule(
        id=1, workflow_name="wf", instance_name="i", recurrence="@every 1m", overlap="skip"
    )
    message.next_due_at.FromDatetime(datetime(2026, 1, 1))
    return message


def _event_message(**fields: str) -> pb.InstanceEvent:
    message = pb.InstanceEvent(seq=1, **fields)
    message.enqueued_at.FromDatetime(datetime(2026, 1, 1))
    return message
