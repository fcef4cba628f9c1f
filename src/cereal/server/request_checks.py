"""What ``cereal serve`` checks in a request before its domain's driver sees it.

A client need not be a Manager, so the service applies the Manager's own
checks (:mod:`cereal.checks.validation`) to every field a request would store or
look up: names, JSON values and their size, recurrence rules, overlap, the
catch-up window, tasks inside decisions (name, parameters, start time, retry
policy), results, retry delays and error texts, and a sweep's expiries, batch
sizes, settlements and retention. A refused request raises ``ValueError`` or
``TypeError`` naming the field, which the service answers as
INVALID_ARGUMENT (inside a stream: an error answer of that class); nothing
is stored.
"""

from __future__ import annotations

import dataclasses

from cereal.checks import names as name_checks
from cereal.checks import times, validation
from cereal.drivers._start_key_store import check_start_key
from cereal.models import HistoryRetention, ScheduleUpdate, check_overlap
from cereal.retry import MAX_BACKOFF
from cereal.values import DEFAULT_MAX_VALUE_BYTES, MAX_ERROR_CHARS
from cereal.wire import convert
from cereal.wire.codec import value_from_pb
from cereal.wire.proto import cereal_v1_pb2 as pb

MAX_SWEEP_BATCH = 10_000
"""The most expired leases one call reads or settles (a sweep takes 500 at a time)."""

MAX_REFERENCE_CHARS = 255
"""The longest task id or lease token a settlement may name (the stores issue far shorter)."""


class RequestChecks:
    """The checks, with the server's value size limit."""

    def __init__(self, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> None:
        self.max_value_bytes = validation.positive_int(max_value_bytes, "max_value_bytes")

    def value(self, holder: object, field: str, *, where: str) -> bytes | None:
        """The optional value in ``holder.field``, refused unless JSON within the limit."""
        raw = value_from_pb(holder, field)
        return validation.check_encoded_value(
            raw, where=f"{where} {field}", max_bytes=self.max_value_bytes
        )

    @staticmethod
    def pair(request: pb.InstanceKey | pb.KillWorkflowRequest | pb.TriggerScheduleRequest) -> None:
        """The workflow and instance names of a request."""
        validation.check_pair(request.workflow_name, request.instance_name)

    def enqueue(
        self,
        request: pb.EnqueueWorkflowRequest
        | pb.EnqueueWorkflowOnceRequest
        | pb.EnqueueKeyedWorkflowRequest,
    ) -> bytes | None:
        """A new run's names, parameters, start key and concurrency key; its parameters."""
        validation.check_pair(request.workflow_name, request.instance_name)
        if isinstance(request, pb.EnqueueWorkflowOnceRequest):
            check_start_key(request.idempotency_key)
        if isinstance(request, pb.EnqueueKeyedWorkflowRequest):
            if request.HasField("idempotency_key"):
                check_start_key(request.idempotency_key)
            validation.check_workflow_concurrency(
                request.concurrency_key, request.concurrency_limit, where="enqueue_workflow"
            )
        return self.value(request, "parameters", where="enqueue_workflow")

    @staticmethod
    def listing(request: pb.ListWorkflowInstancesRequest) -> None:
        """A listing's filter, as the Manager checks it."""
        if request.HasField("workflow_name"):
            name_checks.check_name(request.workflow_name, what="workflow name")
        if request.HasField("instance_name"):
            name_checks.check_name(request.instance_name, what="instance name")
        if request.HasField("limit"):
            validation.positive_int(request.limit, "limit")
        validation.non_negative_int(request.offset, "offset")

    @staticmethod
    def schedule_page(request: pb.ListSchedulesRequest) -> None:
        """A schedule listing's page, as the Manager checks it."""
        if request.HasField("limit"):
            validation.positive_int(request.limit, "limit")
        validation.non_negative_int(request.offset, "offset")

    async def new_schedule(self, request: pb.CreateScheduleRequest) -> tuple[bytes | None, str]:
        """A new schedule's fields; returns its parameters and its normalised rule.

        Raises:
            InvalidScheduleError: the rule does not parse or never fires again.
        """
        validation.check_pair(request.workflow_name, request.instance_name)
        parameters = self.value(request, "parameters", where="create_workflow_schedule")
        rule = validation.normalize_recurrence(request.recurrence)
        await validation.first_due(rule)
        check_overlap(request.overlap)
        times.seconds(request.catch_up_window, name="catch_up_window")
        return parameters, rule

    async def schedule_update(self, request: pb.UpdateScheduleRequest) -> ScheduleUpdate:
        """A schedule update's fields; returns the update with its new rule normalised.

        Raises:
            InvalidScheduleError: a new rule does not parse or never fires again.
        """
        validation.check_pair(request.workflow_name, request.instance_name)
        if request.set_parameters:
            self.value(request, "parameters", where="update_workflow_schedule")
        update = convert.update_from_pb(request)
        recurrence = update.recurrence
        if recurrence is not None:
            recurrence = validation.normalize_recurrence(recurrence)
            await validation.first_due(recurrence)
        if update.due_rule is not None:
            # checked only: it is compared with the stored rule, so it stays as read
            validation.normalize_recurrence(update.due_rule)
        if update.catch_up_window is not None:
            times.seconds(update.catch_up_window, name="catch_up_window")
        return dataclasses.replace(update, recurrence=recurrence)

    @staticmethod
    def claim(claim: pb.ClaimWorkflowsRequest) -> None:
        """The workflow names, counts and expiry a claim asks for."""
        for name in claim.workflow_names:
            name_checks.check_name(name, what="workflow name")
        validation.positive_int(claim.max_instances, "max_instances")
        validation.positive_int(claim.max_events, "max_events")
        validation.expiry_seconds(claim.claim_expiry, "claim_expiry")

    @staticmethod
    def dequeue(ask: pb.DequeueTasksRequest) -> None:
        """The task name, count, lease expiry and the executor's retry policy of a dequeue."""
        name_checks.check_name(ask.task_name, what="task name")
        validation.positive_int(ask.max_tasks, "max_tasks")
        validation.expiry_seconds(ask.task_expiry, "task_expiry")
        if ask.HasField("retry_policy"):
            validation.check_stored_retry_policy(ask.retry_policy, where="dequeue retry_policy")

    def decision(self, decision: pb.WorkflowDecision) -> None:
        """The values and tasks a workflow decision would store."""
        action = decision.WhichOneof("action")
        if action == "continue_":
            carried = decision.continue_
            self.value(carried, "payload", where="continue_")
            for index, task in enumerate(carried.tasks):
                validation.check_new_task(
                    convert.NEW_TASK.from_pb(task),
                    where=f"continue_ tasks[{index}]",
                    max_bytes=self.max_value_bytes,
                )
        elif action == "done":
            self.value(decision.done, "result", where="complete")
        elif action == "fail":
            _failure_texts(decision.fail, where="fail")

    def report(self, report: pb.TaskReport) -> None:
        """The result or retry delay a task report would store."""
        action = report.WhichOneof("action")
        if action == "succeed":
            self.value(report.succeed, "result", where="task")
        elif action == "fail":
            _error_text(report.fail, where="fail error")
        elif action == "fail_with_details":
            _failure_texts(report.fail_with_details, where="fail_with_details")
        elif action == "retry":
            _error_text(report.retry.error, where="retry error")
            _delay(report.retry.delay, "retry delay")

    @staticmethod
    def expired_leases(request: pb.ExpiredTaskLeasesRequest) -> None:
        """A sweep's expiry and how many expired leases it reads at once."""
        validation.sweep_expiry_seconds(request.task_expiry, "task_expiry")
        _batch_size(validation.positive_int(request.limit, "limit"), "limit")

    @staticmethod
    def settlements(request: pb.SettleExpiredLeasesRequest) -> None:
        """A sweep's decisions: each names a lease (the store's fence does the rest).

        A settlement naming no expired lease is not refused: the store applies
        nothing for it, exactly as for a lease heartbeated since it was read.
        """
        validation.sweep_expiry_seconds(request.task_expiry, "task_expiry")
        _batch_size(len(request.settlements), "settlements")
        for index, settlement in enumerate(request.settlements):
            where = f"settlements[{index}]"
            _reference(settlement.task_id, f"{where}.task_id")
            _reference(settlement.lease, f"{where}.lease")
            if settlement.HasField("delay"):
                _delay(settlement.delay, f"{where}.delay")
            _error_text(settlement.error, where=f"{where}.error")

    @staticmethod
    def stale_claims(request: pb.ReleaseStaleClaimsRequest) -> None:
        """A sweep's expiry (it judges claims stored without one)."""
        validation.sweep_expiry_seconds(request.task_expiry, "task_expiry")

    @staticmethod
    def trim(request: pb.TrimHistoryRequest) -> HistoryRetention:
        """The retention a trim carries; returns it (``HistoryRetention`` checks its fields)."""
        return convert.RETENTION.from_pb(request)

    @staticmethod
    def worker(request: pb.NewWorker) -> None:
        """A starting worker's row: its id, the names it serves and its expiry."""
        name_checks.check_name(request.id, what="worker id")
        for name in request.workflow_names:
            name_checks.check_name(name, what="workflow name")
        for name in request.task_names:
            name_checks.check_name(name, what="task name")
        validation.expiry_seconds(request.expiry, "expiry")


def _delay(value: float, name: str) -> None:
    """A retry delay: seconds, finite, at most :data:`~cereal.retry.MAX_BACKOFF`."""
    delay = times.seconds(value, name=name)
    if delay > MAX_BACKOFF:  # no policy backs off longer; a store may not hold more
        raise ValueError(f"{name} must be at most {MAX_BACKOFF:.0f} s (366 days), got {delay!r}")


def _batch_size(count: int, name: str) -> None:
    """Refuse a sweep batch larger than :data:`MAX_SWEEP_BATCH`."""
    if count > MAX_SWEEP_BATCH:
        raise ValueError(f"{name} must be at most {MAX_SWEEP_BATCH}, got {count}")


def _reference(text: str, name: str) -> None:
    """A task id or lease token: present, and no longer than any a store issues."""
    if not text:
        raise ValueError(f"{name} must not be empty")
    if len(text) > MAX_REFERENCE_CHARS:
        raise ValueError(f"{name} is {len(text)} characters, over {MAX_REFERENCE_CHARS}")


def _error_text(text: str, *, where: str) -> None:
    """Refuse an error text longer than any Manager stores (a Manager cuts its own)."""
    if len(text) > MAX_ERROR_CHARS:
        raise ValueError(f"{where} is {len(text)} characters, over the limit of {MAX_ERROR_CHARS}")


def _failure_texts(failure: pb.Fail, *, where: str) -> None:
    """A failure's error text, exception type name and traceback, each bounded."""
    _error_text(failure.error, where=f"{where} error")
    if failure.HasField("error_type"):
        _error_text(failure.error_type, where=f"{where} error_type")
    if failure.HasField("error_traceback"):
        _error_text(failure.error_traceback, where=f"{where} error_traceback")
