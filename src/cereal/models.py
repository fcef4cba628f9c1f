"""Records that cross the driver boundary, and the enums and filters they use.

Drivers store and return bytes; the ``get_*`` helpers here decode them for users.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypeVar, get_args

from cereal import errors, values
from cereal.checks import names

T = TypeVar("T")


class TaskStatus(enum.StrEnum):
    """How a task ended, as its workflow sees it."""

    SUCCESS = "success"
    FAILED = "failed"
    LOST = "lost"
    UNUSABLE_RESULT = "unusable_result"


class WorkflowInstanceStatus(enum.StrEnum):
    """Where an instance is in its life; ``COMPLETED`` only for finished runs."""

    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"


class WorkflowEventType(enum.StrEnum):
    """The kinds of event in an instance's queue."""

    START = "start"
    TASK_COMPLETE = "task_complete"
    CANCEL = "cancel"


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""Sentinel: "leave this field unchanged" (``None`` is a real value for parameters)."""

Unset = _Unset


@dataclass
class WorkflowInstanceData:
    """One workflow instance as stored: live (starting/running) or finished (completed).

    A live instance has parameters and payload but no result or error; a
    finished one has parameters and either a result or an error text.
    """

    workflow_name: str
    instance_name: str
    status: WorkflowInstanceStatus
    parameters: bytes | None = None
    payload: bytes | None = None
    result: bytes | None = None
    err: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error_type: str | None = None
    """For a failed run, the qualified type name of the exception that failed it.

    A callback that raised: the task's exception type when it re-raised a
    task's failure (``TaskResult.get()``), else its own; ``w.fail(exc)``: the
    type of ``exc``. ``None`` for a text failure, a kill, or runs stored by
    older cereal. Filled in by ``get_workflow_instance`` only (not by lists).
    """
    error_traceback: str | None = None
    """The traceback that goes with :attr:`error_type` (bounded), if there was one."""
    traceparent: str | None = None
    """The W3C ``traceparent`` of the span that enqueued the run (tracing only).

    Stored with a live run and handed to its callbacks' spans as their
    parent, so one run is one trace. Set on the runs a claim hands out;
    lookups and listings may leave it ``None``.
    """
    concurrency_key: str | None = None
    """The run's workflow concurrency key, if it was enqueued with one (lookups fill it)."""
    concurrency_limit: int | None = None
    """How many runs of :attr:`concurrency_key` may be started and live at once."""
    waiting_for_key: bool = False
    """A live run not started yet: its key has as many started live runs as its limit."""

    def concurrency_text(self) -> str:
        """Its workflow concurrency key in words: ``k (at most 2; waiting for a place)``.

        Empty for a run without a key.
        """
        if self.concurrency_key is None:
            return ""
        waiting = "; waiting for a place" if self.waiting_for_key else ""
        return f"{self.concurrency_key} (at most {self.concurrency_limit}{waiting})"

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The parameters the instance was enqueued with, decoded."""
        return values.decode(self.parameters, type)

    def get_payload(self, type: type[T] | None = None) -> Any:
        """The payload of the last ``continue_`` decision, decoded (``None`` before any)."""
        return values.decode(self.payload, type)

    def get_result(self, type: type[T] | None = None) -> Any:
        """The result of a completed instance.

        Raises:
            WorkflowNotCompleteError: while the instance runs.
            WorkflowFailedError: if the instance failed (its text is the stored error).
        """
        if self.is_running():
            raise errors.WorkflowNotCompleteError()
        if self.err is not None:
            raise errors.WorkflowFailedError(self.err)
        return values.decode(self.result, type)

    def is_running(self) -> bool:
        """True while the instance is live (``starting`` counts as running)."""
        return self.status != WorkflowInstanceStatus.COMPLETED

    def outcome(self) -> str:
        """The status people are shown: the CLI's tables, its ``--json`` and the dashboard.

        ``starting`` or ``running`` while live; then ``failed`` when the run
        has an error text (it failed, was cancelled into a failure, or was
        killed), else ``completed``.
        """
        if self.is_running():
            return str(self.status)
        return "failed" if self.err is not None else "completed"


@dataclass(frozen=True)
class TaskResultData:
    """How one task ended, as stored for its workflow's ``task_complete`` event."""

    task_name: str
    status: TaskStatus
    parameters: bytes | None = None
    error_text: str = ""
    result: bytes | None = None
    error_type: str | None = None
    """The qualified name of the executor's exception (``FAILED`` results only)."""
    error_traceback: str | None = None
    """The executor's traceback, bounded (see :data:`MAX_TRACEBACK_CHARS`); ``FAILED`` only."""
    attempts: int = 1
    """How many attempts the task took (claims, hand-backs at stop not counted)."""
    traceparent: str | None = None
    """The W3C ``traceparent`` of the span of the run that reported this result.

    For a result no traced run reported (a lost lease, an untraced worker):
    the enqueuing callback's. ``None`` when untraced.
    """


MAX_TRACEBACK_CHARS = 8192
"""Most characters of a failed task's traceback that are stored (its last ones)."""

MAX_TRACEBACK_FRAMES = 50
"""Most stack frames of a failed task's traceback that are stored (its innermost ones)."""


@dataclass(frozen=True)
class FailureDetails:
    """A failure's text, with the exception's qualified type name and bounded traceback.

    Stored with a ``FAILED`` task result (what its executor raised) and with a
    failed workflow run (what failed it; see ``WorkflowInstanceData.error_type``).
    """

    error: str
    error_type: str | None = None
    error_traceback: str | None = None


@dataclass(frozen=True)
class WorkflowEvent:
    """One dequeued event of an instance, with the instance as it is now.

    ``completed_task_count`` already counts this event's task for a
    ``task_complete`` event; ``enqueued_task_count`` is the stored count.
    """

    type: WorkflowEventType
    instance: WorkflowInstanceData
    enqueued_task_count: int
    completed_task_count: int
    enqueued_at: datetime
    task_result: TaskResultData | None = None


@dataclass(frozen=True)
class TaskMetadata:
    """Facts about a running task that its executor may use."""

    enqueued_at: datetime
    task_name: str = ""
    workflow_name: str = ""
    instance_name: str = ""
    attempt: int = 1
    task_id: str = ""
    traceparent: str | None = None
    """The W3C ``traceparent`` of the callback that enqueued the task, if traced."""


@dataclass(frozen=True)
class TaskData:
    """A claimed task as handed from the driver to the task runner.

    ``retry_policy`` is the policy stored with the task
    (:meth:`cereal.RetryPolicy.to_json`); ``None``: a single attempt.
    """

    name: str
    parameters: bytes | None
    metadata: TaskMetadata
    retry_policy: str | None = None

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The task's parameters, decoded."""
        return values.decode(self.parameters, type)


@dataclass(frozen=True)
class NewTask:
    """A task a workflow step enqueues; ``start_after=None`` means the driver's now.

    ``retry_policy`` is the stored form of the task's own
    :class:`cereal.RetryPolicy`; ``None`` leaves it to the executor's (set at
    the first claim).
    """

    task_name: str
    parameters: bytes | None = None
    start_after: datetime | None = None
    traceparent: str | None = None
    """The W3C ``traceparent`` of the enqueuing callback's span (tracing only)."""
    retry_policy: str | None = None
    concurrency_key: str | None = None
    """Tasks sharing this key run at most :attr:`concurrency_limit` at a time (with the limit)."""
    concurrency_limit: int | None = None
    """How many tasks of :attr:`concurrency_key` may run at once, this one counted."""
    rate_limit_starts: int | None = None
    """How many tasks of :attr:`concurrency_key` may start per :attr:`rate_limit_seconds`."""
    rate_limit_seconds: float | None = None
    """The rate limit's sliding window, in seconds (with :attr:`rate_limit_starts`)."""
    priority: int = 0
    """0 (the default) to 100; higher goes first, each level worth a minute of waiting."""
    idempotency_key: str | None = None
    """Unique among the tasks of the run: a later task with this key is not stored."""


Overlap = Literal["skip", "buffer_one", "cancel_other", "terminate_other"]
"""What a schedule does when a run is due while its instance is still live.

``skip`` (the default, as in Go): the run is dropped. ``buffer_one``: one run
waits and starts as soon as the live one ends (never more than one waits).
``cancel_other``: the live one is cancelled (its ``on_cancel`` decides) and the
run starts once it has ended. ``terminate_other``: the live one is killed and
the run starts at once.
"""

OVERLAP_POLICIES: Final[tuple[Overlap, ...]] = get_args(Overlap)
"""Every :data:`Overlap` value, in the order the docs list them."""


def check_overlap(value: object) -> Overlap:
    """``value`` as an :data:`Overlap` policy.

    Raises:
        TypeError: it is not a str.
        ValueError: it is no known policy; the message lists the allowed ones.
    """
    if not isinstance(value, str):
        raise TypeError(f"overlap must be a str, got {type(value).__name__}")
    for policy in OVERLAP_POLICIES:
        if value == policy:
            return policy
    allowed = ", ".join(repr(policy) for policy in OVERLAP_POLICIES)
    raise ValueError(f"overlap must be one of {allowed}; got {value!r}")


class RunOutcome(enum.StrEnum):
    """What asking a schedule for a run did (a due time, a trigger, or a waiting run)."""

    STARTED = "started"
    """A new instance was enqueued (no live one was in the way)."""
    REPLACED = "replaced"
    """``terminate_other``: the live instance was killed and a new one enqueued."""
    SKIPPED = "skipped"
    """``skip``: the instance is live, so this run was dropped."""
    BUFFERED = "buffered"
    """A run waits for the live instance to end (``buffer_one``, or ``cancel_other``
    whose cancel was already sent)."""
    CANCELLING = "cancelling"
    """``cancel_other``: the live instance was asked to cancel; the run waits for its end."""
    MISSED = "missed"
    """A due time missed while no Manager ran, outside the catch-up window: no run."""

    @property
    def started(self) -> bool:
        """True when this outcome enqueued a new instance."""
        return self in (RunOutcome.STARTED, RunOutcome.REPLACED)


@dataclass
class Schedule:
    """A recurring workflow: enqueue (workflow_name, instance_name) whenever it is due."""

    id: int
    enabled: bool
    workflow_name: str
    instance_name: str
    parameters: bytes | None
    recurrence: str
    next_due_at: datetime
    last_enqueued_at: datetime | None = None
    last_start: datetime | None = None
    last_end: datetime | None = None
    overlap: Overlap = "skip"
    catch_up_window: float = 0.0
    """Seconds: a due time missed while no Manager ran starts one run if this close to now."""
    run_pending: bool = False
    """True while a run waits for the live instance to end (``buffer_one``, ``cancel_other``)."""

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The parameters each run is enqueued with, decoded."""
        return values.decode(self.parameters, type)


@dataclass(frozen=True)
class ScheduleUpdate:
    """The changes one ``update_workflow_schedule`` applies atomically.

    ``enabled``, ``recurrence``, ``overlap`` and ``catch_up_window`` are ``None``
    when unchanged; ``parameters`` is ``UNSET`` when unchanged. When
    ``next_due_at`` is set it is stored as the new due time (the Manager
    computes it for a recurrence change or a re-enable).
    With ``due_rule`` set, ``next_due_at`` is stored only if, when the update
    lands, the schedule is disabled and its recurrence is ``due_rule`` (the rule
    the due time was computed from): enabling an enabled schedule keeps its due
    time, and a rule changed meanwhile keeps the due time its change stored.
    """

    enabled: bool | None = None
    parameters: bytes | Unset | None = UNSET
    recurrence: str | None = None
    next_due_at: datetime | None = None
    due_rule: str | None = None
    overlap: Overlap | None = None
    catch_up_window: float | None = None


@dataclass(frozen=True)
class ListWorkflowFilter:
    """Filters of ``list_workflow_instances``; ``None`` means "any".

    The listing is sorted by workflow name, then instance name (with
    ``newest_first``: by start time, newest first, then by names); ``offset``
    skips that many entries of it and ``limit`` (``None``: no limit) caps the
    rest, so a listing can be read a page at a time.
    """

    workflow_name: str | None = None
    instance_name: str | None = None
    is_running: bool | None = None
    limit: int | None = None
    """At most this many entries, ordered by (workflow name, instance name); ``None``: all."""
    offset: int = 0
    """Skip this many entries of that order first (paging)."""
    newest_first: bool = False
    """Order by ``started_at`` (of the live run, else of the newest finished run),
    newest first, then by names."""

    def page(self, entries: list[T]) -> list[T]:
        """The ``offset``/``limit`` window of the whole sorted listing ``entries``."""
        end = None if self.limit is None else self.offset + self.limit
        return entries[self.offset : end]


@dataclass(frozen=True)
class InstanceTask:
    """One queued or running task of a live instance (a read-only view for inspection)."""

    task_id: str
    task_name: str
    state: str
    """``queued`` or ``running``."""
    parameters: bytes | None
    enqueued_at: datetime
    start_after: datetime
    attempt: int
    workflow_name: str = ""
    """The workflow of the instance that enqueued the task (the built-in stores fill it)."""
    instance_name: str = ""
    """The name of that instance."""
    concurrency_key: str | None = None
    """The task's concurrency key, if it has one (see ``enqueue_task``)."""
    concurrency_limit: int | None = None
    """How many tasks of that key may run at once."""
    rate_limit_starts: int | None = None
    """How many tasks of that key may start per :attr:`rate_limit_seconds`."""
    rate_limit_seconds: float | None = None
    """The rate limit's window, in seconds."""
    priority: int = 0
    """The task's priority (0 to 100, higher first; see ``enqueue_task``)."""
    idempotency_key: str | None = None
    """The key it was enqueued with, if any: no other task of its run has it."""

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The task's parameters, decoded."""
        return values.decode(self.parameters, type)

    def limits_text(self) -> str:
        """Its key's limits in words: ``at most 2; 10 starts per 1.5 s`` (empty without)."""
        parts = []
        if self.concurrency_limit is not None:
            parts.append(f"at most {self.concurrency_limit}")
        if self.rate_limit_starts is not None and self.rate_limit_seconds is not None:
            parts.append(f"{self.rate_limit_starts} starts per {self.rate_limit_seconds:g} s")
        return "; ".join(parts)


@dataclass(frozen=True)
class DeadTask:
    """A task whose last attempt failed or was lost: a dead letter, kept for inspection.

    Every task that ends with a status other than ``success`` (its retries
    exhausted, a non-retryable error, or its lease lost for good) becomes one,
    in the same transaction that hands its result to the workflow. It stays
    listed while its run is live or its finished run is kept by the history
    retention; :meth:`cereal.Manager.requeue_dead_tasks` runs it again.
    """

    task_id: str
    """The dead task's id (the id it had while queued or running)."""
    task_name: str
    workflow_name: str
    instance_name: str
    status: TaskStatus
    """How it ended: ``failed`` or ``lost``."""
    parameters: bytes | None
    error_text: str
    error_type: str | None
    """The qualified type name of the exception (``None`` for a lost task)."""
    error_traceback: str | None
    attempts: int
    enqueued_at: datetime
    died_at: datetime
    run_live: bool
    """Whether its run is still live, so that a requeue can deliver its new result."""

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The task's parameters, decoded."""
        return values.decode(self.parameters, type)


@dataclass(frozen=True)
class FailedRun:
    """A finished run that failed (its decision, a kill or a failed start), kept by retention."""

    run_id: str
    """The finished run's id in the history: newer runs have higher ids."""
    workflow_name: str
    instance_name: str
    parameters: bytes | None
    error_text: str
    error_type: str | None
    error_traceback: str | None
    started_at: datetime
    ended_at: datetime

    def get_parameters(self, type: type[T] | None = None) -> Any:
        """The run's parameters, decoded."""
        return values.decode(self.parameters, type)


@dataclass(frozen=True)
class EnqueuedWorkflow:
    """What one ``Manager.enqueue_workflow`` call did."""

    workflow_name: str
    instance_name: str
    """The run's instance name: the one asked for, or, when the call's
    idempotency key had started a run within its window, that run's."""
    created: bool
    """True when this call started the run; False when its idempotency key
    had already started one (this call wrote nothing)."""


class RequeueOutcome(enum.StrEnum):
    """What a requeue did with one id: a dead task's, or a failed run's.

    See :meth:`cereal.Manager.requeue_dead_tasks` and
    :meth:`cereal.Manager.requeue_failed_runs`.
    """

    REQUEUED = "requeued"
    """A dead task: queued again as a new task of its live run, the dead letter gone.
    A failed run: a new run of its names started with its parameters."""
    NOT_FOUND = "not_found"
    """No dead task (or failed run) has this id: never one, requeued already, or trimmed."""
    RUN_FINISHED = "run_finished"
    """A dead task whose run has finished, so no workflow would get its result; kept."""
    RUN_LIVE = "run_live"
    """A failed run whose names have a live run now; nothing started, kept as it was."""


@dataclass(frozen=True)
class InstanceEvent:
    """One event an instance received (its event history, oldest first).

    ``seq`` orders an instance's events; ``pending`` is True while the event
    still waits for a decision to handle it.
    """

    seq: int
    type: WorkflowEventType
    enqueued_at: datetime
    task_name: str | None = None
    """For a ``task_complete`` event: the task that ended."""
    task_status: TaskStatus | None = None
    """For a ``task_complete`` event: how it ended."""
    error_text: str = ""
    pending: bool = False
    """True while the event waits to be handled; False once a decision consumed it."""
    task_enqueued_at: datetime | None = None
    """For a ``task_complete`` event: when the ended task was enqueued (its first
    attempt's enqueue; retries keep it). With ``enqueued_at`` (when its result
    arrived) it spans the task's life. ``None`` for other events and for history
    recorded before the store kept it (its ``history_task_times`` migration)."""
    task_attempts: int | None = None
    """For a ``task_complete`` event: how many attempts the task took. ``None``
    where ``task_enqueued_at`` is."""


@dataclass(frozen=True)
class TaskQueueStats:
    """The queue of one task name: how many wait, how many run, and the oldest waiting."""

    task_name: str
    queued: int
    running: int
    oldest_queued_at: datetime | None


@dataclass(frozen=True)
class ThroughputBucket:
    """The runs that finished in one time bucket: how many completed, how many failed.

    The bucket holds the runs whose ``ended_at`` is at or after ``start`` and
    before ``start + seconds``. A run that failed, was cancelled into a failure
    or was killed counts as ``failed`` (it has an error text, as
    :meth:`WorkflowInstanceData.outcome` says); a requeued failed run still
    counts where it failed.
    """

    start: datetime
    seconds: int
    completed: int
    failed: int


@dataclass(frozen=True)
class StartKey:
    """An idempotency key that started a run of an instance name, while it is kept (24 h)."""

    idempotency_key: str
    created_at: datetime
    """When the key started its run: the run's ``started_at`` (it is kept 24 h after)."""


@dataclass(frozen=True)
class TaskKey:
    """A task idempotency key a live run holds, with the task it was stored with."""

    idempotency_key: str
    task_id: str
    """The task that holds it (a requeued dead task's replacement takes it over)."""


def key_that_started(keys: Sequence[StartKey], started_at: datetime | None) -> StartKey | None:
    """Of an instance name's kept start keys, the one that started the run of ``started_at``.

    A key is recorded in the transaction that creates its run, with the run's
    start time; a key of an earlier run of the same names is not this run's.
    """
    for key in keys:
        if started_at is not None and key.created_at == started_at:
            return key
    return None


@dataclass(frozen=True)
class RetentionRule:
    """One rule of the history retention the sweeps last applied to the store.

    The store-wide rule has no ``workflow_name`` and holds ``max_rows``,
    ``margin_rows`` and ``max_age``; a workflow name's rule holds its
    ``max_runs`` and ``max_age`` (see :class:`HistoryRetention`).
    """

    workflow_name: str | None
    max_rows: int | None
    margin_rows: int | None
    max_runs: int | None
    max_age: float | None
    applied_at: datetime
    """When a sweep first applied the retention these rules belong to."""

    def text(self) -> str:
        """The rule in words, e.g. ``reports: the newest 100 runs, none older than 7 d``."""
        parts = []
        if self.max_rows is not None:
            after = max(self.max_rows - (self.margin_rows or 0), 0)
            parts.append(f"at most {self.max_rows} runs (trimmed to {after})")
        if self.max_runs is not None:
            parts.append(f"the newest {self.max_runs} runs")
        if self.max_age is not None:
            parts.append(f"none older than {_duration_text(self.max_age)}")
        return f"{self.workflow_name or 'all workflows'}: {', '.join(parts) or 'no bound'}"


def _duration_text(seconds: float) -> str:
    """``7 d``, ``36 h``, ``90 min`` or ``45 s``: the largest unit that divides it."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def rules_of(retention: HistoryRetention, applied_at: datetime) -> list[RetentionRule]:
    """``retention`` as the rules a store records: store-wide first, then by workflow name."""
    rules = [
        RetentionRule(
            None, retention.max_rows, retention.margin_rows, None, retention.max_age, applied_at
        )
    ]
    for workflow_name, rule in sorted(retention.per_workflow.items()):
        rules.append(
            RetentionRule(workflow_name, None, None, rule.max_runs, rule.max_age, applied_at)
        )
    return rules


def _check_count(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_RETENTION_ROWS:
        raise ValueError(f"{name} must be between 0 and {MAX_RETENTION_ROWS}, got {value}")


def _check_age(age: object, name: str) -> None:
    if age is None:
        return
    if isinstance(age, bool) or not isinstance(age, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(age).__name__}")
    if not 0 <= age <= MAX_RETENTION_AGE:  # NaN fails this too
        raise ValueError(f"{name} must be between 0 and {MAX_RETENTION_AGE:.0f} s, got {age!r}")


@dataclass(frozen=True)
class WorkflowRetention:
    """How many finished runs of one workflow name are kept, and for how long.

    On top of the store-wide bounds of :class:`HistoryRetention`: a name's runs
    are trimmed to its newest ``max_runs`` (if set) and those that ended within
    ``max_age`` seconds (if set), and the store-wide bounds still apply to them.

    Raises:
        TypeError / ValueError: as :class:`HistoryRetention`'s fields.
    """

    max_runs: int | None = None
    max_age: float | None = None

    def __post_init__(self) -> None:
        """Refuse counts and ages the stores cannot hold."""
        if self.max_runs is not None:
            _check_count(self.max_runs, "max_runs")
        _check_age(self.max_age, "max_age")


@dataclass(frozen=True)
class HistoryRetention:
    """How much finished-run history a driver keeps.

    When more than ``max_rows`` rows exist the oldest are trimmed down to
    ``max_rows - margin_rows`` (the original's 10 000 / 1 000); rows older than
    ``max_age`` seconds (if set) are removed too. ``per_workflow`` maps a
    workflow name to a :class:`WorkflowRetention` that trims that name's runs
    further (e.g. ``{"reports": WorkflowRetention(max_runs=100, max_age=7 * 86400)}``).
    """

    max_rows: int = 10_000
    margin_rows: int = 1_000
    max_age: float | None = None
    per_workflow: Mapping[str, WorkflowRetention] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse counts, ages and names the stores cannot hold (a sweep would fail on them).

        Raises:
            TypeError: a count is not an int, ``max_age`` not a number, or
                ``per_workflow`` not a mapping of names to WorkflowRetention.
            ValueError: a count is negative or over :data:`MAX_RETENTION_ROWS`,
                ``max_age`` is negative, not finite or over
                :data:`MAX_RETENTION_AGE`, or a workflow name is invalid.
        """
        for name in ("max_rows", "margin_rows"):
            _check_count(getattr(self, name), name)
        _check_age(self.max_age, "max_age")
        if not isinstance(self.per_workflow, Mapping):
            raise TypeError(
                f"per_workflow must be a mapping, got {type(self.per_workflow).__name__}"
            )
        rules: dict[str, WorkflowRetention] = {}
        for workflow_name, rule in self.per_workflow.items():
            names.check_name(workflow_name, what="workflow name")
            if not isinstance(rule, WorkflowRetention):
                raise TypeError(
                    f"per_workflow[{workflow_name!r}] must be a WorkflowRetention,"
                    f" got {type(rule).__name__}"
                )
            rules[workflow_name] = rule
        if len(rules) > MAX_RETENTION_RULES:
            raise ValueError(
                f"per_workflow may name at most {MAX_RETENTION_RULES} workflows, got {len(rules)}"
            )
        object.__setattr__(self, "per_workflow", rules)  # a copy the caller cannot change

    def __hash__(self) -> int:
        """Hashable like the other frozen records (the rules mapping is hashed by its items)."""
        rules = frozenset(self.per_workflow.items())
        return hash((self.max_rows, self.margin_rows, self.max_age, rules))


MAX_RETENTION_ROWS: Final = 2**31 - 1
"""The most finished runs a retention may name (a 32-bit count in every store)."""

MAX_RETENTION_RULES: Final = 1000
"""The most workflow names one retention may give rules of their own."""

MAX_RETENTION_AGE: Final = 100 * 366 * 24 * 3600.0
"""The longest ``max_age`` (about a century): ``now - max_age`` stays a valid time."""


@dataclass(frozen=True)
class QueueDepth:
    """The ready work of one name: how many items wait and since when the oldest does.

    ``kind`` is ``"task"`` (queued tasks whose ``start_after`` has passed) or
    ``"workflow"`` (live instances with pending events that no callback holds).
    """

    kind: str
    name: str
    depth: int
    oldest_at: datetime | None


@dataclass(frozen=True)
class SweepReport:
    """What one maintenance sweep did.

    ``notes`` include one ``"<step> failed: <error>"`` per step that failed
    (logged at ERROR); the other steps ran regardless.
    """

    expired_tasks: int = 0
    released_claims: int = 0
    trimmed_results: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    retried_tasks: int = 0
    """Expired leases queued again under their retry policy (not reported LOST)."""
    retried: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """The (workflow name, task name) of each of the ``retried_tasks``."""
    given_up: tuple[str, ...] = field(default_factory=tuple)
    """Expired leases that used their last attempt of several (poison tasks): who, which."""
    invalid_policies: tuple[str, ...] = field(default_factory=tuple)
    """Expired leases reported LOST because their stored retry policy was refused: who, which.

    Each is also logged at WARNING, and its LOST result's error text says why.
    """


@dataclass(frozen=True)
class ExpiredLease:
    """A running task whose lease deadline has passed, as a store reports it to a sweep.

    ``lease`` is what fences the lease (the store's token for this claim of
    the task): a settlement naming it changes the task only while the task
    still runs under that same lease, past its deadline.
    """

    task_id: str
    lease: str
    attempt: int
    """The attempt the lease was running (1 for the first)."""
    task_name: str
    workflow_name: str
    instance_name: str
    retry_policy: str | None
    """The task's stored retry policy (JSON text, unparsed), or ``None``."""


@dataclass(frozen=True)
class LeaseSettlement:
    """What a sweep decided for one :class:`ExpiredLease`: retry after a delay, or LOST.

    With ``delay`` set the task is queued again ``delay`` seconds from now
    (the store's clock); with ``delay`` ``None`` it becomes a ``LOST`` result
    with the error text ``error`` and a ``task_complete`` event.
    """

    task_id: str
    lease: str
    delay: float | None = None
    error: str = ""


@dataclass(frozen=True)
class NewWorker:
    """A starting Manager as it registers itself; the driver's clock adds the times.

    ``expiry`` is the Manager's ``task_expiry``: its row counts as dead (and is
    dropped) once that many seconds pass without a refresh.
    """

    id: str
    host: str
    pid: int
    workflow_names: tuple[str, ...]
    task_names: tuple[str, ...]
    version: str
    expiry: float


@dataclass(frozen=True)
class WorkerInfo:
    """A live Manager (a worker), as ``Manager.list_workers()`` returns it."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    workflow_names: tuple[str, ...]
    task_names: tuple[str, ...]
    version: str

    def handles_workflow(self, workflow_name: str) -> bool:
        """Whether this worker runs the callbacks of ``workflow_name``."""
        return workflow_name in self.workflow_names
