import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Value(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "status", "parameters", "payload", "result", "err", "started_at", "ended_at", "error_type", "error_traceback", "traceparent", "concurrency_key", "concurrency_limit", "waiting_for_key")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_KEY_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    status: str
    parameters: Value
    payload: Value
    result: Value
    err: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    error_type: str
    error_traceback: str
    traceparent: str
    concurrency_key: str
    concurrency_limit: int
    waiting_for_key: bool
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., status: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., payload: _Optional[_Union[Value, _Mapping]] = ..., result: _Optional[_Union[Value, _Mapping]] = ..., err: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error_type: _Optional[str] = ..., error_traceback: _Optional[str] = ..., traceparent: _Optional[str] = ..., concurrency_key: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., waiting_for_key: _Optional[bool] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task_name", "status", "parameters", "error_text", "result", "error_type", "error_traceback", "attempts", "traceparent")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TEXT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    status: str
    parameters: Value
    error_text: str
    result: Value
    error_type: str
    error_traceback: str
    attempts: int
    traceparent: str
    def __init__(self, task_name: _Optional[str] = ..., status: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., error_text: _Optional[str] = ..., result: _Optional[_Union[Value, _Mapping]] = ..., error_type: _Optional[str] = ..., error_traceback: _Optional[str] = ..., attempts: _Optional[int] = ..., traceparent: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "instance", "enqueued_task_count", "completed_task_count", "enqueued_at", "task_result")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    TASK_RESULT_FIELD_NUMBER: _ClassVar[int]
    type: str
    instance: Instance
    enqueued_task_count: int
    completed_task_count: int
    enqueued_at: _timestamp_pb2.Timestamp
    task_result: TaskResult
    def __init__(self, type: _Optional[str] = ..., instance: _Optional[_Union[Instance, _Mapping]] = ..., enqueued_task_count: _Optional[int] = ..., completed_task_count: _Optional[int] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_result: _Optional[_Union[TaskResult, _Mapping]] = ...) -> None: ...

class NewTask(_message.Message):
    __slots__ = ("task_name", "parameters", "start_after", "traceparent", "retry_policy", "concurrency_key", "concurrency_limit", "rate_limit_starts", "rate_limit_seconds", "priority", "idempotency_key")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_STARTS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    parameters: Value
    start_after: _timestamp_pb2.Timestamp
    traceparent: str
    retry_policy: str
    concurrency_key: str
    concurrency_limit: int
    rate_limit_starts: int
    rate_limit_seconds: float
    priority: int
    idempotency_key: str
    def __init__(self, task_name: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., start_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., traceparent: _Optional[str] = ..., retry_policy: _Optional[str] = ..., concurrency_key: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., rate_limit_starts: _Optional[int] = ..., rate_limit_seconds: _Optional[float] = ..., priority: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("name", "parameters", "enqueued_at", "task_name", "workflow_name", "instance_name", "attempt", "task_id", "traceparent", "retry_policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    parameters: Value
    enqueued_at: _timestamp_pb2.Timestamp
    task_name: str
    workflow_name: str
    instance_name: str
    attempt: int
    task_id: str
    traceparent: str
    retry_policy: str
    def __init__(self, name: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_name: _Optional[str] = ..., workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., attempt: _Optional[int] = ..., task_id: _Optional[str] = ..., traceparent: _Optional[str] = ..., retry_policy: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("id", "enabled", "workflow_name", "instance_name", "parameters", "recurrence", "next_due_at", "last_enqueued_at", "last_start", "last_end", "overlap", "catch_up_window", "run_pending")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_START_FIELD_NUMBER: _ClassVar[int]
    LAST_END_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_WINDOW_FIELD_NUMBER: _ClassVar[int]
    RUN_PENDING_FIELD_NUMBER: _ClassVar[int]
    id: int
    enabled: bool
    workflow_name: str
    instance_name: str
    parameters: Value
    recurrence: str
    next_due_at: _timestamp_pb2.Timestamp
    last_enqueued_at: _timestamp_pb2.Timestamp
    last_start: _timestamp_pb2.Timestamp
    last_end: _timestamp_pb2.Timestamp
    overlap: str
    catch_up_window: float
    run_pending: bool
    def __init__(self, id: _Optional[int] = ..., enabled: _Optional[bool] = ..., workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., recurrence: _Optional[str] = ..., next_due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., overlap: _Optional[str] = ..., catch_up_window: _Optional[float] = ..., run_pending: _Optional[bool] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("kind", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InstanceKey(_message.Message):
    __slots__ = ("workflow_name", "instance_name")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ...) -> None: ...

class EnqueueWorkflowRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "parameters", "traceparent")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    parameters: Value
    traceparent: str
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...

class EnqueueWorkflowOnceRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "parameters", "idempotency_key", "traceparent")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    parameters: Value
    idempotency_key: str
    traceparent: str
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., traceparent: _Optional[str] = ...) -> None: ...

class EnqueueKeyedWorkflowRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "parameters", "concurrency_key", "concurrency_limit", "idempotency_key", "traceparent")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    parameters: Value
    concurrency_key: str
    concurrency_limit: int
    idempotency_key: str
    traceparent: str
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., concurrency_key: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., traceparent: _Optional[str] = ...) -> None: ...

class EnqueueWorkflowOnceResponse(_message.Message):
    __slots__ = ("existing_instance_name",)
    EXISTING_INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    existing_instance_name: str
    def __init__(self, existing_instance_name: _Optional[str] = ...) -> None: ...

class KillWorkflowRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "error")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    error: str
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ListWorkflowInstancesRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "is_running", "limit", "offset", "newest_first")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    IS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    is_running: bool
    limit: int
    offset: int
    newest_first: bool
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., is_running: _Optional[bool] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., newest_first: _Optional[bool] = ...) -> None: ...

class ListWorkflowInstancesResponse(_message.Message):
    __slots__ = ("instances",)
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    def __init__(self, instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ...) -> None: ...

class ExpiredTaskLeasesRequest(_message.Message):
    __slots__ = ("task_expiry", "limit")
    TASK_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    task_expiry: float
    limit: int
    def __init__(self, task_expiry: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class ExpiredLease(_message.Message):
    __slots__ = ("task_id", "lease", "attempt", "task_name", "workflow_name", "instance_name", "retry_policy")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease: str
    attempt: int
    task_name: str
    workflow_name: str
    instance_name: str
    retry_policy: str
    def __init__(self, task_id: _Optional[str] = ..., lease: _Optional[str] = ..., attempt: _Optional[int] = ..., task_name: _Optional[str] = ..., workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., retry_policy: _Optional[str] = ...) -> None: ...

class ExpiredTaskLeasesResponse(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[ExpiredLease]
    def __init__(self, leases: _Optional[_Iterable[_Union[ExpiredLease, _Mapping]]] = ...) -> None: ...

class LeaseSettlement(_message.Message):
    __slots__ = ("task_id", "lease", "delay", "error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease: str
    delay: float
    error: str
    def __init__(self, task_id: _Optional[str] = ..., lease: _Optional[str] = ..., delay: _Optional[float] = ..., error: _Optional[str] = ...) -> None: ...

class SettleExpiredLeasesRequest(_message.Message):
    __slots__ = ("settlements", "task_expiry")
    SETTLEMENTS_FIELD_NUMBER: _ClassVar[int]
    TASK_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    settlements: _containers.RepeatedCompositeFieldContainer[LeaseSettlement]
    task_expiry: float
    def __init__(self, settlements: _Optional[_Iterable[_Union[LeaseSettlement, _Mapping]]] = ..., task_expiry: _Optional[float] = ...) -> None: ...

class SettleExpiredLeasesResponse(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseStaleClaimsRequest(_message.Message):
    __slots__ = ("task_expiry",)
    TASK_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    task_expiry: float
    def __init__(self, task_expiry: _Optional[float] = ...) -> None: ...

class ReleaseStaleClaimsResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: int
    def __init__(self, released: _Optional[int] = ...) -> None: ...

class TrimHistoryRequest(_message.Message):
    __slots__ = ("max_rows", "margin_rows", "max_age", "per_workflow")
    class PerWorkflowEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: WorkflowRetentionRule
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[WorkflowRetentionRule, _Mapping]] = ...) -> None: ...
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    MARGIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    PER_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    max_rows: int
    margin_rows: int
    max_age: float
    per_workflow: _containers.MessageMap[str, WorkflowRetentionRule]
    def __init__(self, max_rows: _Optional[int] = ..., margin_rows: _Optional[int] = ..., max_age: _Optional[float] = ..., per_workflow: _Optional[_Mapping[str, WorkflowRetentionRule]] = ...) -> None: ...

class WorkflowRetentionRule(_message.Message):
    __slots__ = ("max_runs", "max_age")
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    max_runs: int
    max_age: float
    def __init__(self, max_runs: _Optional[int] = ..., max_age: _Optional[float] = ...) -> None: ...

class TrimHistoryResponse(_message.Message):
    __slots__ = ("trimmed",)
    TRIMMED_FIELD_NUMBER: _ClassVar[int]
    trimmed: int
    def __init__(self, trimmed: _Optional[int] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "parameters", "enabled", "recurrence", "next_due_at", "overlap", "catch_up_window")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_WINDOW_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    parameters: Value
    enabled: bool
    recurrence: str
    next_due_at: _timestamp_pb2.Timestamp
    overlap: str
    catch_up_window: float
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., enabled: _Optional[bool] = ..., recurrence: _Optional[str] = ..., next_due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., overlap: _Optional[str] = ..., catch_up_window: _Optional[float] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("limit", "offset")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    limit: int
    offset: int
    def __init__(self, limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class UpdateScheduleRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "enabled", "set_parameters", "parameters", "recurrence", "next_due_at", "due_rule", "overlap", "catch_up_window")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SET_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    DUE_RULE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_WINDOW_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    enabled: bool
    set_parameters: bool
    parameters: Value
    recurrence: str
    next_due_at: _timestamp_pb2.Timestamp
    due_rule: str
    overlap: str
    catch_up_window: float
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., enabled: _Optional[bool] = ..., set_parameters: _Optional[bool] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., recurrence: _Optional[str] = ..., next_due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_rule: _Optional[str] = ..., overlap: _Optional[str] = ..., catch_up_window: _Optional[float] = ...) -> None: ...

class InstanceTask(_message.Message):
    __slots__ = ("task_id", "task_name", "state", "parameters", "enqueued_at", "start_after", "attempt", "workflow_name", "instance_name", "concurrency_key", "concurrency_limit", "rate_limit_starts", "rate_limit_seconds", "priority", "idempotency_key")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_STARTS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_name: str
    state: str
    parameters: Value
    enqueued_at: _timestamp_pb2.Timestamp
    start_after: _timestamp_pb2.Timestamp
    attempt: int
    workflow_name: str
    instance_name: str
    concurrency_key: str
    concurrency_limit: int
    rate_limit_starts: int
    rate_limit_seconds: float
    priority: int
    idempotency_key: str
    def __init__(self, task_id: _Optional[str] = ..., task_name: _Optional[str] = ..., state: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., concurrency_key: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., rate_limit_starts: _Optional[int] = ..., rate_limit_seconds: _Optional[float] = ..., priority: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ListInstanceTasksRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "limit", "before")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    limit: int
    before: str
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., limit: _Optional[int] = ..., before: _Optional[str] = ...) -> None: ...

class ListInstanceTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[InstanceTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[InstanceTask, _Mapping]]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("task_name", "limit", "before")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    limit: int
    before: str
    def __init__(self, task_name: _Optional[str] = ..., limit: _Optional[int] = ..., before: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[InstanceTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[InstanceTask, _Mapping]]] = ...) -> None: ...

class DeadTask(_message.Message):
    __slots__ = ("task_id", "task_name", "workflow_name", "instance_name", "status", "parameters", "error_text", "error_type", "error_traceback", "attempts", "enqueued_at", "died_at", "run_live")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TEXT_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    DIED_AT_FIELD_NUMBER: _ClassVar[int]
    RUN_LIVE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_name: str
    workflow_name: str
    instance_name: str
    status: str
    parameters: Value
    error_text: str
    error_type: str
    error_traceback: str
    attempts: int
    enqueued_at: _timestamp_pb2.Timestamp
    died_at: _timestamp_pb2.Timestamp
    run_live: bool
    def __init__(self, task_id: _Optional[str] = ..., task_name: _Optional[str] = ..., workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., status: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., error_text: _Optional[str] = ..., error_type: _Optional[str] = ..., error_traceback: _Optional[str] = ..., attempts: _Optional[int] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., died_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_live: _Optional[bool] = ...) -> None: ...

class ListDeadTasksRequest(_message.Message):
    __slots__ = ("task_name", "workflow_name", "limit", "before")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    workflow_name: str
    limit: int
    before: str
    def __init__(self, task_name: _Optional[str] = ..., workflow_name: _Optional[str] = ..., limit: _Optional[int] = ..., before: _Optional[str] = ...) -> None: ...

class ListDeadTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[DeadTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[DeadTask, _Mapping]]] = ...) -> None: ...

class FailedRun(_message.Message):
    __slots__ = ("run_id", "workflow_name", "instance_name", "parameters", "error_text", "error_type", "error_traceback", "started_at", "ended_at")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TEXT_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    workflow_name: str
    instance_name: str
    parameters: Value
    error_text: str
    error_type: str
    error_traceback: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., parameters: _Optional[_Union[Value, _Mapping]] = ..., error_text: _Optional[str] = ..., error_type: _Optional[str] = ..., error_traceback: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListFailedRunsRequest(_message.Message):
    __slots__ = ("workflow_name", "limit", "before")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    limit: int
    before: str
    def __init__(self, workflow_name: _Optional[str] = ..., limit: _Optional[int] = ..., before: _Optional[str] = ...) -> None: ...

class ListFailedRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[FailedRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[FailedRun, _Mapping]]] = ...) -> None: ...

class RequeueFailedRunsRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RequeueFailedRunsResponse(_message.Message):
    __slots__ = ("run_ids", "outcomes")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    outcomes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., outcomes: _Optional[_Iterable[str]] = ...) -> None: ...

class RequeueDeadTasksRequest(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RequeueDeadTasksResponse(_message.Message):
    __slots__ = ("task_ids", "outcomes")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    outcomes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., outcomes: _Optional[_Iterable[str]] = ...) -> None: ...

class InstanceEvent(_message.Message):
    __slots__ = ("seq", "type", "enqueued_at", "task_name", "task_status", "error_text", "pending", "task_enqueued_at", "task_attempts")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TEXT_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    TASK_ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    TASK_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    type: str
    enqueued_at: _timestamp_pb2.Timestamp
    task_name: str
    task_status: str
    error_text: str
    pending: bool
    task_enqueued_at: _timestamp_pb2.Timestamp
    task_attempts: int
    def __init__(self, seq: _Optional[int] = ..., type: _Optional[str] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_name: _Optional[str] = ..., task_status: _Optional[str] = ..., error_text: _Optional[str] = ..., pending: _Optional[bool] = ..., task_enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_attempts: _Optional[int] = ...) -> None: ...

class ListInstanceEventsRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "limit", "before")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    limit: int
    before: int
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., limit: _Optional[int] = ..., before: _Optional[int] = ...) -> None: ...

class ListInstanceEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[InstanceEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[InstanceEvent, _Mapping]]] = ...) -> None: ...

class TaskQueueStats(_message.Message):
    __slots__ = ("task_name", "queued", "running", "oldest_queued_at")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    OLDEST_QUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    queued: int
    running: int
    oldest_queued_at: _timestamp_pb2.Timestamp
    def __init__(self, task_name: _Optional[str] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., oldest_queued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TaskQueueStatsResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[TaskQueueStats]
    def __init__(self, queues: _Optional[_Iterable[_Union[TaskQueueStats, _Mapping]]] = ...) -> None: ...

class QueueDepth(_message.Message):
    __slots__ = ("kind", "name", "depth", "oldest_at")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    depth: int
    oldest_at: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., depth: _Optional[int] = ..., oldest_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueueDepthsResponse(_message.Message):
    __slots__ = ("depths",)
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    depths: _containers.RepeatedCompositeFieldContainer[QueueDepth]
    def __init__(self, depths: _Optional[_Iterable[_Union[QueueDepth, _Mapping]]] = ...) -> None: ...

class NewWorker(_message.Message):
    __slots__ = ("id", "host", "pid", "workflow_names", "task_names", "version", "expiry")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAMES_FIELD_NUMBER: _ClassVar[int]
    TASK_NAMES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    id: str
    host: str
    pid: int
    workflow_names: _containers.RepeatedScalarFieldContainer[str]
    task_names: _containers.RepeatedScalarFieldContainer[str]
    version: str
    expiry: float
    def __init__(self, id: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., workflow_names: _Optional[_Iterable[str]] = ..., task_names: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ..., expiry: _Optional[float] = ...) -> None: ...

class WorkerId(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RefreshWorkerResponse(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("id", "host", "pid", "started_at", "last_seen_at", "workflow_names", "task_names", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAMES_FIELD_NUMBER: _ClassVar[int]
    TASK_NAMES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    host: str
    pid: int
    started_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    workflow_names: _containers.RepeatedScalarFieldContainer[str]
    task_names: _containers.RepeatedScalarFieldContainer[str]
    version: str
    def __init__(self, id: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., workflow_names: _Optional[_Iterable[str]] = ..., task_names: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class TriggerScheduleRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "kill_error")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    KILL_ERROR_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    kill_error: str
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., kill_error: _Optional[str] = ...) -> None: ...

class RunOutcomeReply(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    def __init__(self, outcome: _Optional[str] = ...) -> None: ...

class WaitingRunsResponse(_message.Message):
    __slots__ = ("waiting",)
    WAITING_FIELD_NUMBER: _ClassVar[int]
    waiting: bool
    def __init__(self, waiting: _Optional[bool] = ...) -> None: ...

class ClaimWorkflowsRequest(_message.Message):
    __slots__ = ("workflow_names", "max_instances", "max_events", "claim_expiry", "request_id")
    WORKFLOW_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    CLAIM_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_names: _containers.RepeatedScalarFieldContainer[str]
    max_instances: int
    max_events: int
    claim_expiry: float
    request_id: int
    def __init__(self, workflow_names: _Optional[_Iterable[str]] = ..., max_instances: _Optional[int] = ..., max_events: _Optional[int] = ..., claim_expiry: _Optional[float] = ..., request_id: _Optional[int] = ...) -> None: ...

class Continue(_message.Message):
    __slots__ = ("payload", "tasks")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    payload: Value
    tasks: _containers.RepeatedCompositeFieldContainer[NewTask]
    def __init__(self, payload: _Optional[_Union[Value, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[NewTask, _Mapping]]] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: Value
    def __init__(self, result: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class Fail(_message.Message):
    __slots__ = ("error", "error_type", "error_traceback")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    error: str
    error_type: str
    error_traceback: str
    def __init__(self, error: _Optional[str] = ..., error_type: _Optional[str] = ..., error_traceback: _Optional[str] = ...) -> None: ...

class WorkflowDecision(_message.Message):
    __slots__ = ("request_id", "claim", "continue_", "done", "fail", "heartbeat", "close")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    CONTINUE__FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    claim: int
    continue_: Continue
    done: Done
    fail: Fail
    heartbeat: Empty
    close: Empty
    def __init__(self, request_id: _Optional[int] = ..., claim: _Optional[int] = ..., continue_: _Optional[_Union[Continue, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ..., fail: _Optional[_Union[Fail, _Mapping]] = ..., heartbeat: _Optional[_Union[Empty, _Mapping]] = ..., close: _Optional[_Union[Empty, _Mapping]] = ...) -> None: ...

class WorkflowDecisions(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[WorkflowDecision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[WorkflowDecision, _Mapping]]] = ...) -> None: ...

class WorkflowStreamRequest(_message.Message):
    __slots__ = ("claim", "decision", "decisions")
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    claim: ClaimWorkflowsRequest
    decision: WorkflowDecision
    decisions: WorkflowDecisions
    def __init__(self, claim: _Optional[_Union[ClaimWorkflowsRequest, _Mapping]] = ..., decision: _Optional[_Union[WorkflowDecision, _Mapping]] = ..., decisions: _Optional[_Union[WorkflowDecisions, _Mapping]] = ...) -> None: ...

class ClaimedInstance(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class ClaimedWorkflows(_message.Message):
    __slots__ = ("instances", "request_id", "first_claim")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_CLAIM_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[ClaimedInstance]
    request_id: int
    first_claim: int
    def __init__(self, instances: _Optional[_Iterable[_Union[ClaimedInstance, _Mapping]]] = ..., request_id: _Optional[int] = ..., first_claim: _Optional[int] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("request_id", "error", "handed_back")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HANDED_BACK_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    error: Error
    handed_back: bool
    def __init__(self, request_id: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., handed_back: _Optional[bool] = ...) -> None: ...

class Answers(_message.Message):
    __slots__ = ("answers",)
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[Answer]
    def __init__(self, answers: _Optional[_Iterable[_Union[Answer, _Mapping]]] = ...) -> None: ...

class WorkflowStreamResponse(_message.Message):
    __slots__ = ("claimed", "answer", "answers")
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    claimed: ClaimedWorkflows
    answer: Answer
    answers: Answers
    def __init__(self, claimed: _Optional[_Union[ClaimedWorkflows, _Mapping]] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ..., answers: _Optional[_Union[Answers, _Mapping]] = ...) -> None: ...

class DequeueTasksRequest(_message.Message):
    __slots__ = ("task_name", "max_tasks", "task_expiry", "retry_policy", "request_id")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_FIELD_NUMBER: _ClassVar[int]
    TASK_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    max_tasks: int
    task_expiry: float
    retry_policy: str
    request_id: int
    def __init__(self, task_name: _Optional[str] = ..., max_tasks: _Optional[int] = ..., task_expiry: _Optional[float] = ..., retry_policy: _Optional[str] = ..., request_id: _Optional[int] = ...) -> None: ...

class Retry(_message.Message):
    __slots__ = ("error", "delay")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    error: str
    delay: float
    def __init__(self, error: _Optional[str] = ..., delay: _Optional[float] = ...) -> None: ...

class Succeed(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: Value
    def __init__(self, result: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class TaskReport(_message.Message):
    __slots__ = ("request_id", "lease", "heartbeat", "succeed", "fail", "abandon", "fail_with_details", "retry", "hand_back", "hand_back_unstarted", "traceparent")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SUCCEED_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    ABANDON_FIELD_NUMBER: _ClassVar[int]
    FAIL_WITH_DETAILS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    HAND_BACK_FIELD_NUMBER: _ClassVar[int]
    HAND_BACK_UNSTARTED_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    lease: int
    heartbeat: Empty
    succeed: Succeed
    fail: str
    abandon: Empty
    fail_with_details: Fail
    retry: Retry
    hand_back: Empty
    hand_back_unstarted: Empty
    traceparent: str
    def __init__(self, request_id: _Optional[int] = ..., lease: _Optional[int] = ..., heartbeat: _Optional[_Union[Empty, _Mapping]] = ..., succeed: _Optional[_Union[Succeed, _Mapping]] = ..., fail: _Optional[str] = ..., abandon: _Optional[_Union[Empty, _Mapping]] = ..., fail_with_details: _Optional[_Union[Fail, _Mapping]] = ..., retry: _Optional[_Union[Retry, _Mapping]] = ..., hand_back: _Optional[_Union[Empty, _Mapping]] = ..., hand_back_unstarted: _Optional[_Union[Empty, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...

class ResumeLease(_message.Message):
    __slots__ = ("task_id", "lease_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_token: str
    def __init__(self, task_id: _Optional[str] = ..., lease_token: _Optional[str] = ...) -> None: ...

class TaskReports(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[TaskReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[TaskReport, _Mapping]]] = ...) -> None: ...

class TaskStreamRequest(_message.Message):
    __slots__ = ("dequeue", "report", "resume", "reports")
    DEQUEUE_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    dequeue: DequeueTasksRequest
    report: TaskReport
    resume: ResumeLease
    reports: TaskReports
    def __init__(self, dequeue: _Optional[_Union[DequeueTasksRequest, _Mapping]] = ..., report: _Optional[_Union[TaskReport, _Mapping]] = ..., resume: _Optional[_Union[ResumeLease, _Mapping]] = ..., reports: _Optional[_Union[TaskReports, _Mapping]] = ...) -> None: ...

class LeasedTasks(_message.Message):
    __slots__ = ("tasks", "lease_tokens", "request_id", "first_lease")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_LEASE_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    request_id: int
    first_lease: int
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., lease_tokens: _Optional[_Iterable[str]] = ..., request_id: _Optional[int] = ..., first_lease: _Optional[int] = ...) -> None: ...

class TaskStreamResponse(_message.Message):
    __slots__ = ("leased", "answer", "answers")
    LEASED_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    leased: LeasedTasks
    answer: Answer
    answers: Answers
    def __init__(self, leased: _Optional[_Union[LeasedTasks, _Mapping]] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ..., answers: _Optional[_Union[Answers, _Mapping]] = ...) -> None: ...

class ScheduleApply(_message.Message):
    __slots__ = ("request_id", "disable", "run_and_advance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DISABLE_FIELD_NUMBER: _ClassVar[int]
    RUN_AND_ADVANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    disable: Empty
    run_and_advance: RunAndAdvance
    def __init__(self, request_id: _Optional[int] = ..., disable: _Optional[_Union[Empty, _Mapping]] = ..., run_and_advance: _Optional[_Union[RunAndAdvance, _Mapping]] = ...) -> None: ...

class RunAndAdvance(_message.Message):
    __slots__ = ("run", "next_due_at", "enabled", "kill_error")
    RUN_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    KILL_ERROR_FIELD_NUMBER: _ClassVar[int]
    run: bool
    next_due_at: _timestamp_pb2.Timestamp
    enabled: bool
    kill_error: str
    def __init__(self, run: _Optional[bool] = ..., next_due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enabled: _Optional[bool] = ..., kill_error: _Optional[str] = ...) -> None: ...

class ScheduleStreamRequest(_message.Message):
    __slots__ = ("lock", "apply")
    LOCK_FIELD_NUMBER: _ClassVar[int]
    APPLY_FIELD_NUMBER: _ClassVar[int]
    lock: Empty
    apply: ScheduleApply
    def __init__(self, lock: _Optional[_Union[Empty, _Mapping]] = ..., apply: _Optional[_Union[ScheduleApply, _Mapping]] = ...) -> None: ...

class ScheduleAnswer(_message.Message):
    __slots__ = ("request_id", "error", "enqueued", "outcome")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    error: Error
    enqueued: bool
    outcome: str
    def __init__(self, request_id: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., enqueued: _Optional[bool] = ..., outcome: _Optional[str] = ...) -> None: ...

class ScheduleStreamResponse(_message.Message):
    __slots__ = ("due", "none", "answer", "waiting_run")
    DUE_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    WAITING_RUN_FIELD_NUMBER: _ClassVar[int]
    due: Schedule
    none: Error
    answer: ScheduleAnswer
    waiting_run: bool
    def __init__(self, due: _Optional[_Union[Schedule, _Mapping]] = ..., none: _Optional[_Union[Error, _Mapping]] = ..., answer: _Optional[_Union[ScheduleAnswer, _Mapping]] = ..., waiting_run: _Optional[bool] = ...) -> None: ...

class Wakeup(_message.Message):
    __slots__ = ("kind", "name", "features")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class StartKey(_message.Message):
    __slots__ = ("idempotency_key", "created_at")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, idempotency_key: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListStartKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[StartKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[StartKey, _Mapping]]] = ...) -> None: ...

class RetentionRule(_message.Message):
    __slots__ = ("workflow_name", "max_rows", "margin_rows", "max_runs", "max_age", "applied_at")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    MARGIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    max_rows: int
    margin_rows: int
    max_runs: int
    max_age: float
    applied_at: _timestamp_pb2.Timestamp
    def __init__(self, workflow_name: _Optional[str] = ..., max_rows: _Optional[int] = ..., margin_rows: _Optional[int] = ..., max_runs: _Optional[int] = ..., max_age: _Optional[float] = ..., applied_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AppliedRetentionResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[RetentionRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[RetentionRule, _Mapping]]] = ...) -> None: ...

class RunThroughputRequest(_message.Message):
    __slots__ = ("bucket_seconds", "buckets", "until")
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    bucket_seconds: int
    buckets: int
    until: float
    def __init__(self, bucket_seconds: _Optional[int] = ..., buckets: _Optional[int] = ..., until: _Optional[float] = ...) -> None: ...

class ThroughputBucket(_message.Message):
    __slots__ = ("start", "seconds", "completed", "failed")
    START_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    seconds: int
    completed: int
    failed: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seconds: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class RunThroughputResponse(_message.Message):
    __slots__ = ("buckets",)
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[ThroughputBucket]
    def __init__(self, buckets: _Optional[_Iterable[_Union[ThroughputBucket, _Mapping]]] = ...) -> None: ...

class ListTaskKeysRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_name", "keys")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_name: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workflow_name: _Optional[str] = ..., instance_name: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskKey(_message.Message):
    __slots__ = ("idempotency_key", "task_id")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    task_id: str
    def __init__(self, idempotency_key: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class ListTaskKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[TaskKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[TaskKey, _Mapping]]] = ...) -> None: ...
