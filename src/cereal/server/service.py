"""The ``cereal.v1.Cereal`` service: each RPC calls the caller's domain driver.

A read-only operation of the contract (one declared with
:func:`~cereal.drivers._read_operations.read_operation`) needs nothing here:
its RPC is served by a handler made from the declaration (:func:`_read_handler`),
which checks the request as the Manager checks the call. Any other RPC is a
method here decorated with :func:`_unary` (it resolves the domain and maps
errors), with the matching call in ``GrpcDriver``.

Streams hold claimed work: a claimed batch of events, leased tasks or a locked
schedule live on one stream and are decided on it. Whatever is undecided when
the stream ends (the client closed it, crashed, or the connection dropped) is
rolled back by the driver's rules: workflow claims are closed (their events are
redelivered), unreported task leases are abandoned (their workflows see the
tasks ``LOST``), a locked schedule is released. Task leases are the exception
while the server stops: they stay in the store, and a client still running the
task re-presents the lease (task id and lease token) on a new stream to the
next server, which takes it up if the store still holds it.

A batch stream (``ClaimWorkflows``, ``DequeueTasks``) holds one claimed batch;
a session stream (``WorkflowSession``, ``TaskSession``) is a client's one
long-lived stream for all its claims, each answered with a batch numbered on
from the last (:mod:`cereal.server.held_work`), so a busy worker opens no
stream per claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import grpc
from cereal import errors
from cereal.checks import validation
from cereal.drivers._dead_letter_store import check_requeue_ids
from cereal.drivers._read_operations import READ_OPERATIONS, ReadOperation
from cereal.drivers.base import Driver, ScheduledWorkflowCompleter, TaskCompleter, WorkflowCompleter
from cereal.models import NewTask, TaskData, check_overlap
from cereal.server.domains import DomainRegistry, HostedDomain, Wakeup, offer
from cereal.server.held_work import HeldClaims, HeldLeases
from cereal.server.request_checks import RequestChecks
from cereal.wire import convert, features, reads
from cereal.wire.codec import optional_field, time_from_pb, value_from_pb
from cereal.wire.domain_names import DEFAULT_DOMAIN
from cereal.wire.error_status import error_to_pb, is_carried, status_code
from cereal.wire.metadata import DOMAIN_METADATA_KEY, ERROR_KEY
from cereal.wire.proto import cereal_v1_pb2 as pb
from cereal.wire.proto import cereal_v1_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


SERVER_FEATURES = (features.SESSIONS, features.UNSTARTED_HAND_BACK)
"""What this server serves beyond the base protocol, told in each client's first wakeup."""

Context: TypeAlias = Any
"""A ``grpc.aio.ServicerContext`` (grpcio ships no type information)."""
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def domain_name(context: Context) -> str:
    """The domain named in the call's metadata (``default`` when absent)."""
    for key, value in context.invocation_metadata() or ():
        if key == DOMAIN_METADATA_KEY:
            return str(value)
    return DEFAULT_DOMAIN


async def abort_with(context: Context, exc: BaseException) -> None:
    """End the call with the status a carried error travels with (see wire.error_status)."""
    await context.abort(
        status_code(exc), str(exc), trailing_metadata=((ERROR_KEY, type(exc).__name__),)
    )


def _unary(handler: Handler) -> Handler:
    """Map carried errors of ``handler`` to statuses; anything else becomes INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: CerealService, request: Any, context: Context) -> Any:
        try:
            return await handler(self, request, context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            if not is_carried(exc):
                logger.exception("%s failed", handler.__name__)
                exc = errors.DriverError(f"{type(exc).__name__}: {exc}")
            await abort_with(context, exc)
            raise  # abort raised already; keeps type checkers content

    return wrapper  # type: ignore[return-value]


def _read_handler(operation: ReadOperation) -> Callable[..., Awaitable[Any]]:
    """The RPC handler of a read-only operation: check the request, ask the domain's store."""
    reads.check_rpc(operation)

    async def handler(self: CerealService, request: Any, context: Context) -> Any:
        arguments = reads.arguments_from_pb(operation, request)
        operation.check(**arguments)
        driver = await self._driver(context)
        return reads.results_to_pb(operation, await operation.call(driver, arguments))

    handler.__name__ = handler.__qualname__ = reads.rpc_name(operation)
    handler.__doc__ = f"Serves :meth:`Driver.{operation.name}` (a read-only operation)."
    return _unary(handler)


async def _answer(request_id: int, apply: Callable[[], Awaitable[object]]) -> pb.Answer:
    """Run one decision or report; its error (if any) goes into the answer.

    ``apply`` returns True only for a hand-back that queued the task again.
    """
    try:
        outcome = await apply()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return _refusal(request_id, exc)
    return pb.Answer(request_id=request_id, handed_back=outcome is True)


def _refusal(request_id: int, exc: Exception) -> pb.Answer:
    """The answer carrying ``exc`` (an unexpected one is logged and sent as a DriverError)."""
    if not is_carried(exc):
        logger.exception("applying a streamed request failed", exc_info=exc)
        exc = errors.DriverError(f"{type(exc).__name__}: {exc}")
    return pb.Answer(request_id=request_id, error=error_to_pb(exc))


def _leased_batch(
    leased: Sequence[tuple[TaskData, TaskCompleter]], request_id: int, first: int
) -> pb.LeasedTasks:
    return pb.LeasedTasks(
        tasks=[convert.TASK.to_pb(task) for task, _ in leased],
        lease_tokens=[completer.lease_token or "" for _, completer in leased],
        request_id=request_id,
        first_lease=first,
    )


def _units_of(request: Any) -> Sequence[Any]:
    """The one decision or report a batch stream's request carries."""
    kind = request.WhichOneof("message")
    if kind not in ("decision", "report"):
        raise ValueError(f"expected a decision or a report on this stream, not {kind}")
    return (getattr(request, kind),)


def _session_units_of(request: Any) -> Sequence[Any]:
    """What a session's request carries: a claim, or one or more decisions or reports."""
    kind = request.WhichOneof("message")
    if kind in ("claim", "dequeue", "decision", "report"):
        return (getattr(request, kind),)
    if kind == "decisions":
        return request.decisions.decisions  # type: ignore[no-any-return]
    if kind == "reports":
        return request.reports.reports  # type: ignore[no-any-return]
    raise ValueError(f"a session takes claims, decisions and reports, not {kind}")


class _LiveSession:
    """A session stream being served: what it holds, and its requests in flight."""

    def __init__(self, held: HeldClaims | HeldLeases) -> None:
        self.held = held
        self.in_flight = 0
        self.reading = False  # suspended reading the next request: safe to end
        self.ending = False
        self._handler = asyncio.current_task()

    def end_if_idle(self) -> None:
        """End the session now if it holds nothing, applies nothing and waits for a request.

        Its handler is then suspended reading: cancelling it there drops
        nothing (a request not read yet fails on the client as a broken
        stream, and holds nothing here), and the read loop ends the call
        normally, so the client sees the stream end.
        """
        idle = self.in_flight == 0 and self.held.empty and self.reading
        if idle and not self.ending and self._handler is not None:
            self.ending = True
            self._handler.cancel()

    def ended_by_server(self) -> bool:
        """After a cancelled read: True when it was :meth:`end_if_idle` (the call goes on)."""
        if not self.ending or self._handler is None:
            return False
        self._handler.uncancel()  # end the call normally: the client sees the stream end
        return True


class _StreamWriter:
    """Serialises a stream's replies; on a session, answers ready together go in one message.

    Answers of one group commit come back in the same turn of the loop: the
    first queues a flush, which runs once they all have queued theirs.
    """

    def __init__(self, context: Context, response: type[Any], coalesce: bool) -> None:
        self._context = context
        self._response = response
        self._coalesce = coalesce
        self._lock = asyncio.Lock()
        self._answers: list[pb.Answer] = []
        self._flushing: asyncio.Task[None] | None = None

    async def send(self, field: str, reply: Any) -> None:
        """Send ``reply`` as the response's ``field`` (an answer may wait for a flush)."""
        if field == "answer" and self._coalesce:
            self._answers.append(reply)
            if self._flushing is None:
                self._flushing = asyncio.get_running_loop().create_task(self._flush())
            return
        await self._write(self._response(**{field: reply}))

    async def drain(self) -> None:
        """Wait until every queued answer is written."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        try:
            while self._answers:
                answers, self._answers = self._answers, []
                if len(answers) == 1:
                    await self._write(self._response(answer=answers[0]))
                else:
                    await self._write(self._response(answers=pb.Answers(answers=answers)))
        finally:
            self._flushing = None

    async def _write(self, message: object) -> None:
        async with self._lock:
            with contextlib.suppress(Exception):  # the client is gone; nothing to tell it
                await self._context.write(message)


class CerealService(pb_grpc.CerealServicer):
    """The service over a registry of domains."""

    def __init__(self, domains: DomainRegistry, checks: RequestChecks | None = None) -> None:
        self._domains = domains
        self._checks = checks or RequestChecks()
        self._keep_leases = False
        self._sessions: set[_LiveSession] = set()
        self._watching: set[asyncio.Queue[Wakeup]] = set()  # live WatchWakeups streams
        # shielded lease endings still writing: the server waits for them before
        # it closes the stores, so none is cut off by a closing loop
        self._abandoning: set[asyncio.Task[None]] = set()

    def keep_leases(self) -> None:
        """From now on, leave the leases of ending streams in the store (the server stops).

        Their clients, still running the tasks, re-present them to the next
        server; a lease nobody re-presents expires as usual. Session streams
        claim nothing more: those holding nothing end now, the others once
        their last claim or lease is finished. Wakeup streams end now.
        """
        self._keep_leases = True
        for session in list(self._sessions):
            session.end_if_idle()  # the rest end as their last claim or lease finishes
        for queue in list(self._watching):
            # a wakeup stream lasts as long as its client: end it now, or the graceful
            # stop would wait its whole grace (the client reconnects, with backoff);
            # any wakeup wakes its handler, which then sees the stop
            offer(queue, "workflow", None)

    async def finish_lease_endings(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the lease endings of streams that already closed.

        An ending still waiting after that (e.g. on a lock) is left to run
        while the stores close; its lease then expires as usual.
        """
        if not self._abandoning:
            return
        logger.info(
            "server stopping: waiting for %d lease ending(s) before closing the stores",
            len(self._abandoning),
        )
        _, pending = await asyncio.wait(set(self._abandoning), timeout=timeout)
        if pending:
            logger.warning(
                "server stopping: %d lease ending(s) still running after %g s;"
                " their leases will expire",
                len(pending),
                timeout,
            )

    async def _driver(self, context: Context) -> Driver:
        return (await self._hosted(context)).driver

    async def _hosted(self, context: Context) -> HostedDomain:
        name = domain_name(context)
        try:
            return await self._domains.get(name)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise

    # ---- instances ----------------------------------------------------------------

    @_unary
    async def EnqueueWorkflow(
        self, request: pb.EnqueueWorkflowRequest, context: Context
    ) -> pb.Empty:
        """Create a live instance."""
        parameters = self._checks.enqueue(request)
        driver = await self._driver(context)
        await driver.enqueue_workflow(
            request.workflow_name,
            request.instance_name,
            parameters,
            traceparent=validation.usable_traceparent(optional_field(request, "traceparent")),
        )
        return pb.Empty()

    @_unary
    async def EnqueueWorkflowOnce(
        self, request: pb.EnqueueWorkflowOnceRequest, context: Context
    ) -> pb.EnqueueWorkflowOnceResponse:
        """Create a live instance unless its start key started one within the window."""
        parameters = self._checks.enqueue(request)
        driver = await self._driver(context)
        existing = await driver.enqueue_workflow_once(
            request.workflow_name,
            request.instance_name,
            parameters,
            request.idempotency_key,
            traceparent=validation.usable_traceparent(optional_field(request, "traceparent")),
        )
        return pb.EnqueueWorkflowOnceResponse(existing_instance_name=existing)

    @_unary
    async def EnqueueKeyedWorkflow(
        self, request: pb.EnqueueKeyedWorkflowRequest, context: Context
    ) -> pb.EnqueueWorkflowOnceResponse:
        """Create a live instance under a workflow concurrency key (see the driver's)."""
        parameters = self._checks.enqueue(request)
        driver = await self._driver(context)
        existing = await driver.enqueue_keyed_workflow(
            request.workflow_name,
            request.instance_name,
            parameters,
            request.concurrency_key,
            request.concurrency_limit,
            idempotency_key=optional_field(request, "idempotency_key"),
            traceparent=validation.usable_traceparent(optional_field(request, "traceparent")),
        )
        return pb.EnqueueWorkflowOnceResponse(existing_instance_name=existing)

    @_unary
    async def CancelWorkflow(self, request: pb.InstanceKey, context: Context) -> pb.Empty:
        """Append a cancel event."""
        self._checks.pair(request)
        driver = await self._driver(context)
        await driver.cancel_workflow(request.workflow_name, request.instance_name)
        return pb.Empty()

    @_unary
    async def KillWorkflow(self, request: pb.KillWorkflowRequest, context: Context) -> pb.Empty:
        """Finish an instance at once."""
        self._checks.pair(request)
        driver = await self._driver(context)
        await driver.kill_workflow(request.workflow_name, request.instance_name, request.error)
        return pb.Empty()

    @_unary
    async def GetWorkflowInstance(self, request: pb.InstanceKey, context: Context) -> pb.Instance:
        """The live instance or its newest finished run."""
        self._checks.pair(request)
        driver = await self._driver(context)
        found = await driver.get_workflow_instance(request.workflow_name, request.instance_name)
        return convert.INSTANCE.to_pb(found)

    @_unary
    async def ListWorkflowInstances(
        self, request: pb.ListWorkflowInstancesRequest, context: Context
    ) -> pb.ListWorkflowInstancesResponse:
        """Instances matching the filter."""
        self._checks.listing(request)
        driver = await self._driver(context)
        found = await driver.list_workflow_instances(convert.LISTING.from_pb(request))
        return pb.ListWorkflowInstancesResponse(
            instances=[convert.INSTANCE.to_pb(i) for i in found]
        )

    # ---- queues and maintenance ---------------------------------------------------

    @_unary
    async def ExpiredTaskLeases(
        self, request: pb.ExpiredTaskLeasesRequest, context: Context
    ) -> pb.ExpiredTaskLeasesResponse:
        """Running tasks past their lease deadline, for the caller's sweep to decide."""
        self._checks.expired_leases(request)
        driver = await self._driver(context)
        found = await driver.expired_task_leases(request.task_expiry, request.limit)
        return pb.ExpiredTaskLeasesResponse(
            leases=[convert.EXPIRED_LEASE.to_pb(lease) for lease in found]
        )

    @_unary
    async def SettleExpiredLeases(
        self, request: pb.SettleExpiredLeasesRequest, context: Context
    ) -> pb.SettleExpiredLeasesResponse:
        """Apply the caller's sweep decisions where their leases are still expired."""
        self._checks.settlements(request)
        driver = await self._driver(context)
        applied = await driver.settle_expired_leases(
            [convert.SETTLEMENT.from_pb(each) for each in request.settlements],
            task_expiry=request.task_expiry,
        )
        return pb.SettleExpiredLeasesResponse(task_ids=applied)

    @_unary
    async def ReleaseStaleClaims(
        self, request: pb.ReleaseStaleClaimsRequest, context: Context
    ) -> pb.ReleaseStaleClaimsResponse:
        """Release workflow claims whose claimer stopped heartbeating."""
        self._checks.stale_claims(request)
        driver = await self._driver(context)
        return pb.ReleaseStaleClaimsResponse(
            released=await driver.release_stale_claims(request.task_expiry)
        )

    @_unary
    async def TrimHistory(
        self, request: pb.TrimHistoryRequest, context: Context
    ) -> pb.TrimHistoryResponse:
        """Trim finished runs under the caller's retention (now the domain's)."""
        retention = self._checks.trim(request)
        driver = await self._driver(context)
        driver.retention = retention
        return pb.TrimHistoryResponse(trimmed=await driver.trim_history(retention))

    @_unary
    async def RequeueFailedRuns(
        self, request: pb.RequeueFailedRunsRequest, context: Context
    ) -> pb.RequeueFailedRunsResponse:
        """Start failed runs again under their names; each id's outcome."""
        run_ids = check_requeue_ids(list(request.run_ids), "run id")
        driver = await self._driver(context)
        outcomes = await driver.requeue_failed_runs(run_ids)
        return pb.RequeueFailedRunsResponse(
            run_ids=list(outcomes), outcomes=[str(outcome) for outcome in outcomes.values()]
        )

    @_unary
    async def RequeueDeadTasks(
        self, request: pb.RequeueDeadTasksRequest, context: Context
    ) -> pb.RequeueDeadTasksResponse:
        """Queue dead tasks again in their live runs; each id's outcome."""
        task_ids = check_requeue_ids(list(request.task_ids))
        driver = await self._driver(context)
        outcomes = await driver.requeue_dead_tasks(task_ids)
        return pb.RequeueDeadTasksResponse(
            task_ids=list(outcomes), outcomes=[str(outcome) for outcome in outcomes.values()]
        )

    # ---- live workers -------------------------------------------------------------

    @_unary
    async def RegisterWorker(self, request: pb.NewWorker, context: Context) -> pb.Empty:
        """Store a starting worker's row in the domain's store."""
        self._checks.worker(request)
        driver = await self._driver(context)
        await driver.register_worker(convert.NEW_WORKER.from_pb(request))
        return pb.Empty()

    @_unary
    async def RefreshWorker(
        self, request: pb.WorkerId, context: Context
    ) -> pb.RefreshWorkerResponse:
        """Mark a worker seen now; tell whether its row still existed."""
        driver = await self._driver(context)
        return pb.RefreshWorkerResponse(found=await driver.refresh_worker(request.id))

    @_unary
    async def UnregisterWorker(self, request: pb.WorkerId, context: Context) -> pb.Empty:
        """Remove a stopping worker's row."""
        driver = await self._driver(context)
        await driver.unregister_worker(request.id)
        return pb.Empty()

    @_unary
    async def ListWorkers(self, request: pb.Empty, context: Context) -> pb.ListWorkersResponse:
        """The domain's live workers."""
        driver = await self._driver(context)
        found = await driver.list_workers()
        return pb.ListWorkersResponse(workers=[convert.WORKER_INFO.to_pb(w) for w in found])

    # ---- schedules ----------------------------------------------------------------

    @_unary
    async def CreateWorkflowSchedule(
        self, request: pb.CreateScheduleRequest, context: Context
    ) -> pb.Empty:
        """Store a new schedule."""
        parameters, rule = await self._checks.new_schedule(request)
        driver = await self._driver(context)
        next_due_at = time_from_pb(request, "next_due_at")
        if next_due_at is None:
            raise ValueError("next_due_at is required")
        await driver.create_workflow_schedule(
            request.workflow_name,
            request.instance_name,
            parameters,
            request.enabled,
            rule,
            next_due_at,
            overlap=check_overlap(request.overlap),
            catch_up_window=request.catch_up_window,
        )
        return pb.Empty()

    @_unary
    async def ListWorkflowSchedules(
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        """One page of the domain's schedules, by names (every one without a limit)."""
        self._checks.schedule_page(request)
        limit = request.limit if request.HasField("limit") else None
        driver = await self._driver(context)
        found = await driver.list_workflow_schedules(limit=limit, offset=request.offset)
        return pb.ListSchedulesResponse(schedules=[convert.SCHEDULE.to_pb(s) for s in found])

    @_unary
    async def GetWorkflowSchedule(self, request: pb.InstanceKey, context: Context) -> pb.Schedule:
        """One schedule."""
        self._checks.pair(request)
        driver = await self._driver(context)
        found = await driver.get_workflow_schedule(request.workflow_name, request.instance_name)
        return convert.SCHEDULE.to_pb(found)

    @_unary
    async def UpdateWorkflowSchedule(
        self, request: pb.UpdateScheduleRequest, context: Context
    ) -> pb.Empty:
        """Apply a schedule update."""
        update = await self._checks.schedule_update(request)
        driver = await self._driver(context)
        await driver.update_workflow_schedule(request.workflow_name, request.instance_name, update)
        return pb.Empty()

    @_unary
    async def DeleteWorkflowSchedule(self, request: pb.InstanceKey, context: Context) -> pb.Empty:
        """Remove a schedule."""
        self._checks.pair(request)
        driver = await self._driver(context)
        await driver.delete_workflow_schedule(request.workflow_name, request.instance_name)
        return pb.Empty()

    @_unary
    async def GetNextScheduledWorkflow(self, request: pb.Empty, context: Context) -> pb.Schedule:
        """The enabled schedule due soonest."""
        driver = await self._driver(context)
        return convert.SCHEDULE.to_pb(await driver.get_next_scheduled_workflow())

    @_unary
    async def TriggerWorkflowSchedule(
        self, request: pb.TriggerScheduleRequest, context: Context
    ) -> pb.RunOutcomeReply:
        """Ask a schedule for a run now, under its overlap policy."""
        self._checks.pair(request)
        driver = await self._driver(context)
        outcome = await driver.trigger_workflow_schedule(
            request.workflow_name, request.instance_name, request.kill_error
        )
        return pb.RunOutcomeReply(outcome=outcome.value)

    @_unary
    async def HasWaitingScheduleRuns(
        self, request: pb.Empty, context: Context
    ) -> pb.WaitingRunsResponse:
        """Whether a schedule's run waits for its live instance to end."""
        driver = await self._driver(context)
        return pb.WaitingRunsResponse(waiting=await driver.has_waiting_schedule_runs())

    # ---- streams holding claimed work ---------------------------------------------

    @_unary
    async def ClaimWorkflows(self, request_iterator: Any, context: Context) -> None:
        """Claim a batch of instances; decide each on the stream; roll back the rest at its end."""
        driver = await self._driver(context)
        first = await context.read()
        if first is grpc.aio.EOF or not first.HasField("claim"):
            raise ValueError("a ClaimWorkflows stream starts with a claim request")
        claims = HeldClaims()
        try:
            batch = await self._claim(driver, claims, first.claim)
            await context.write(pb.WorkflowStreamResponse(claimed=batch))
            if batch.instances:
                writer = _StreamWriter(context, pb.WorkflowStreamResponse, coalesce=False)
                await self._serve_requests(
                    context, writer, _units_of, functools.partial(self._apply_decision, claims)
                )
        finally:
            await asyncio.shield(claims.close_all())

    @_unary
    async def WorkflowSession(self, request_iterator: Any, context: Context) -> None:
        """A client's long-lived claim stream: claims and decisions, in any number."""
        driver = await self._driver(context)
        claims = HeldClaims()

        async def apply(unit: Any) -> tuple[str, Any]:
            if isinstance(unit, pb.WorkflowDecision):
                return await self._apply_decision(claims, unit)
            try:
                return "claimed", await self._claim(driver, claims, unit)
            except Exception as exc:
                return "answer", _refusal(unit.request_id, exc)

        try:
            writer = _StreamWriter(context, pb.WorkflowStreamResponse, coalesce=True)
            await self._serve_session(context, writer, claims, apply)
        finally:
            await asyncio.shield(claims.close_all())

    async def _claim(
        self, driver: Driver, claims: HeldClaims, claim: pb.ClaimWorkflowsRequest
    ) -> pb.ClaimedWorkflows:
        """Claim what ``claim`` asks for (nothing once the server stops) and hold it."""
        self._checks.claim(claim)
        claimed = []
        if not self._keep_leases:
            claimed = await driver.claim_workflows(
                list(claim.workflow_names),
                max_instances=claim.max_instances,
                max_events=claim.max_events,
                claim_expiry=claim.claim_expiry,
            )
        first = claims.add([completer for _, completer in claimed])
        return pb.ClaimedWorkflows(
            instances=[
                pb.ClaimedInstance(events=[convert.EVENT.to_pb(e) for e in events])
                for events, _ in claimed
            ],
            request_id=claim.request_id,
            first_claim=first,
        )

    async def _apply_decision(
        self, claims: HeldClaims, decision: pb.WorkflowDecision
    ) -> tuple[str, pb.Answer]:

        async def apply() -> None:
            completer = claims.get(decision.claim)
            action = decision.WhichOneof("action")
            if action in ("continue_", "done", "fail"):
                # a decision also releases the claim: the client's close needs no round trip
                try:
                    self._checks.decision(decision)
                    await _decide(completer, decision)
                finally:
                    claims.finish(decision.claim)
                    await completer.close()
            elif action == "heartbeat":
                await completer.heartbeat()
            elif action == "close":
                claims.finish(decision.claim)
                await completer.close()
            else:
                raise ValueError("a workflow decision names no action")

        return "answer", await _answer(decision.request_id, apply)

    @_unary
    async def DequeueTasks(self, request_iterator: Any, context: Context) -> None:
        """Lease a batch of tasks; report each on the stream; abandon the rest at its end."""
        driver = await self._driver(context)
        first = await context.read()
        leases = HeldLeases()
        try:
            if first is not grpc.aio.EOF and first.HasField("resume"):
                resumed = await driver.resume_task_lease(
                    first.resume.task_id, first.resume.lease_token
                )
                leases.add([resumed])
                batch = _leased_batch([resumed], 0, 0)
            elif first is not grpc.aio.EOF and first.HasField("dequeue"):
                batch = await self._dequeue(driver, leases, first.dequeue)
            else:
                raise ValueError("a DequeueTasks stream starts with a dequeue or resume request")
            await context.write(pb.TaskStreamResponse(leased=batch))
            if batch.tasks:
                writer = _StreamWriter(context, pb.TaskStreamResponse, coalesce=False)
                await self._serve_requests(
                    context, writer, _units_of, functools.partial(self._apply_report, leases)
                )
        finally:
            await self._end_leases(leases)

    @_unary
    async def TaskSession(self, request_iterator: Any, context: Context) -> None:
        """A client's long-lived lease stream: dequeues and reports, in any number."""
        driver = await self._driver(context)
        leases = HeldLeases()

        async def apply(unit: Any) -> tuple[str, Any]:
            if isinstance(unit, pb.TaskReport):
                return await self._apply_report(leases, unit)
            try:
                return "leased", await self._dequeue(driver, leases, unit)
            except Exception as exc:
                return "answer", _refusal(unit.request_id, exc)

        try:
            writer = _StreamWriter(context, pb.TaskStreamResponse, coalesce=True)
            await self._serve_session(context, writer, leases, apply)
        finally:
            await self._end_leases(leases)

    async def _dequeue(
        self, driver: Driver, leases: HeldLeases, ask: pb.DequeueTasksRequest
    ) -> pb.LeasedTasks:
        """Lease what ``ask`` asks for (nothing once the server stops) and hold it."""
        self._checks.dequeue(ask)
        leased: list[tuple[TaskData, TaskCompleter]] = []
        if not self._keep_leases:
            leased = await driver.dequeue_tasks(
                ask.task_name,
                ask.max_tasks,
                task_expiry=ask.task_expiry,
                retry_policy=ask.retry_policy if ask.HasField("retry_policy") else None,
            )
        return _leased_batch(leased, ask.request_id, leases.add(leased))

    async def _end_leases(self, leases: HeldLeases) -> None:
        """A lease stream ended: leave its unreported leases (stopping), else end them now."""
        if self._keep_leases:
            leases.leave_unreported()
            return
        ending = asyncio.create_task(leases.abandon_unreported())
        self._abandoning.add(ending)
        ending.add_done_callback(self._abandoning.discard)
        await asyncio.shield(ending)

    async def _apply_report(
        self, leases: HeldLeases, report: pb.TaskReport
    ) -> tuple[str, pb.Answer]:

        async def apply() -> bool:
            completer = leases.get(report.lease)
            action = report.WhichOneof("action")
            handed_back = False
            try:
                self._checks.report(report)
                if report.HasField("traceparent"):
                    # a malformed one is ignored: the result is stored all the same
                    completer.result_traceparent = validation.usable_traceparent(report.traceparent)
                if action == "heartbeat":
                    await completer.heartbeat()
                    return False
                if action == "succeed":
                    await completer.succeed(value_from_pb(report.succeed, "result"))
                elif action == "fail":
                    await completer.fail(report.fail)
                elif action == "fail_with_details":
                    await completer.fail_with_details(
                        convert.FAILURE.from_pb(report.fail_with_details)
                    )
                elif action == "abandon":
                    await completer.abandon()
                elif action == "retry":
                    await completer.retry(report.retry.error, report.retry.delay)
                elif action == "hand_back":
                    handed_back = await completer.hand_back()
                elif action == "hand_back_unstarted":
                    handed_back = await completer.hand_back_unstarted()
                else:
                    raise ValueError("a task report names no action")
            except errors.TaskLostError:
                leases.finish(report.lease)
                raise
            leases.finish(report.lease)
            return handed_back

        return "answer", await _answer(report.request_id, apply)

    async def _serve_session(
        self,
        context: Context,
        writer: _StreamWriter,
        held: HeldClaims | HeldLeases,
        apply: Callable[[Any], Awaitable[tuple[str, Any]]],
    ) -> None:
        """Serve a session until the client half-closes it, or the stopping server ends it."""
        session = _LiveSession(held)
        self._sessions.add(session)
        try:
            await self._serve_requests(context, writer, _session_units_of, apply, session)
        finally:
            self._sessions.discard(session)

    async def _serve_requests(
        self,
        context: Context,
        writer: _StreamWriter,
        units_of: Callable[[Any], Sequence[Any]],
        apply: Callable[[Any], Awaitable[tuple[str, Any]]],
        session: _LiveSession | None = None,
    ) -> None:
        """Apply each request of the stream concurrently; answer each; wait for all.

        ``units_of`` splits a request into what is applied and answered one by
        one (several reports or decisions may come in one message).
        """
        running: set[asyncio.Task[None]] = set()

        async def one(unit: Any) -> None:
            try:
                await writer.send(*await apply(unit))
            finally:
                if session is not None:
                    session.in_flight -= 1
                    if self._keep_leases:
                        session.end_if_idle()

        try:
            while True:
                try:
                    if session is not None:
                        session.reading = True
                    request = await context.read()
                except asyncio.CancelledError:
                    if session is not None and session.ended_by_server():
                        break
                    raise
                finally:
                    if session is not None:
                        session.reading = False
                if request is grpc.aio.EOF:
                    break
                for unit in units_of(request):
                    if session is not None:
                        session.in_flight += 1
                    task = asyncio.create_task(one(unit))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            # requests already read complete even if the client went away meanwhile
            if running:
                await asyncio.shield(asyncio.gather(*running, return_exceptions=True))
            await writer.drain()

    @_unary
    async def GetDueScheduledWorkflow(self, request_iterator: Any, context: Context) -> None:
        """Lock the earliest due schedule; apply one action on the stream; release at its end."""
        driver = await self._driver(context)
        first = await context.read()
        if first is grpc.aio.EOF or not first.HasField("lock"):
            raise ValueError("a GetDueScheduledWorkflow stream starts with a lock request")
        try:
            schedule, completer = await driver.get_due_scheduled_workflow()
        except errors.NoDueWorkflowsError as exc:
            await context.write(pb.ScheduleStreamResponse(none=error_to_pb(exc)))
            return
        try:
            await context.write(
                pb.ScheduleStreamResponse(
                    due=convert.SCHEDULE.to_pb(schedule), waiting_run=not completer.due
                )
            )
            request = await context.read()
            if request is not grpc.aio.EOF and request.HasField("apply"):
                await context.write(
                    pb.ScheduleStreamResponse(
                        answer=await _apply_schedule(completer, request.apply)
                    )
                )
        finally:
            await asyncio.shield(completer.close())

    # ---- wakeups ------------------------------------------------------------------

    async def WatchWakeups(self, request: pb.Empty, context: Context) -> AsyncIterator[pb.Wakeup]:
        """Push the domain's wakeups; this stream's life is the client's connection."""
        try:
            hosted = await self._domains.get(domain_name(context))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        except errors.CerealError as exc:  # the domain's store failed to open
            await abort_with(context, exc)
            raise
        peer = context.peer()  # read now: the call's context is gone by the finally block
        logger.info("client connected: peer=%s domain=%s", peer, hosted.name)
        try:
            with hosted.watch() as queue:
                self._watching.add(queue)
                try:
                    # the watch is live: the client may rely on it, and on these features
                    yield pb.Wakeup(kind="ready", features=SERVER_FEATURES)
                    while not self._keep_leases:  # a stopping server ends the stream
                        kind, name = await queue.get()
                        if self._keep_leases:
                            break
                        yield pb.Wakeup(kind=kind, name=name)
                finally:
                    self._watching.discard(queue)
        finally:
            logger.info("client disconnected: peer=%s domain=%s", peer, hosted.name)


def _keeping_usable_traceparent(task: NewTask) -> NewTask:
    """``task`` without its trace context when that is malformed (ignored, never refused)."""
    if task.traceparent is None or validation.usable_traceparent(task.traceparent):
        return task
    return dataclasses.replace(task, traceparent=None)


async def _decide(completer: WorkflowCompleter, decision: pb.WorkflowDecision) -> None:
    """Apply a continue, done or fail decision."""
    action = decision.WhichOneof("action")
    if action == "continue_":
        carried = decision.continue_
        await completer.continue_(
            value_from_pb(carried, "payload"),
            [_keeping_usable_traceparent(convert.NEW_TASK.from_pb(t)) for t in carried.tasks],
        )
    elif action == "done":
        await completer.done(value_from_pb(decision.done, "result"))
    elif decision.fail.HasField("error_type") or decision.fail.HasField("error_traceback"):
        await completer.fail_with_details(convert.FAILURE.from_pb(decision.fail))
    else:
        await completer.fail(decision.fail.error)


async def _apply_schedule(
    completer: ScheduledWorkflowCompleter, apply: pb.ScheduleApply
) -> pb.ScheduleAnswer:
    try:
        action = apply.WhichOneof("action")
        if action == "run_and_advance":
            ask = apply.run_and_advance
            outcome = await completer.run_and_advance(
                run=ask.run,
                next_due_at=time_from_pb(ask, "next_due_at"),
                enabled=ask.enabled if ask.HasField("enabled") else None,
                kill_error=ask.kill_error,
            )
            return pb.ScheduleAnswer(
                request_id=apply.request_id, outcome=outcome.value, enqueued=outcome.started
            )
        if action == "disable":
            await completer.disable()
            return pb.ScheduleAnswer(request_id=apply.request_id)
        raise ValueError("a schedule apply names no action")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not is_carried(exc):
            logger.exception("applying a schedule failed")
            exc = errors.DriverError(f"{type(exc).__name__}: {exc}")
        return pb.ScheduleAnswer(request_id=apply.request_id, error=error_to_pb(exc))


for _operation in READ_OPERATIONS.values():
    setattr(CerealService, reads.rpc_name(_operation), _read_handler(_operation))
