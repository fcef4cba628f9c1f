"""The ``grpc://`` driver: a :class:`~cereal.drivers.base.Driver` served by ``cereal serve``.

``open_driver("grpc://host:port?domain=NAME")`` (domain ``default`` when
absent). URL options: ``token`` (bearer token), ``tls=true`` (TLS with the
system's roots), ``ca`` (TLS trusting this CA file), ``cert`` and ``key``
(a client certificate), ``call_timeout`` and ``connect_timeout`` (seconds).

Every call runs on a private I/O loop (:mod:`._io`). Claimed workflow events
and leased tasks live on a stream each (:mod:`._client_streams`); wakeups are
pushed by the server on a watch stream, re-opened with backoff when it drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import grpc
from cereal import errors
from cereal.drivers._read_operations import READ_OPERATIONS, ReadOperation
from cereal.drivers.base import (
    DEFAULT_TASK_EXPIRY,
    DURABLE,
    MULTIPROCESS,
    ClaimedWorkflow,
    Driver,
    ScheduledWorkflowCompleter,
    TaskCompleter,
    WorkflowCompleter,
    WorkKind,
    check_claim_sizes,
)
from cereal.drivers.grpc._claim_sessions import ClaimSessions
from cereal.drivers.grpc._client_streams import BuildRequest, HeldStream, batch_indexes
from cereal.drivers.grpc._credentials import channel_credentials
from cereal.drivers.grpc._io import IoLoop
from cereal.models import (
    ExpiredLease,
    FailureDetails,
    HistoryRetention,
    LeaseSettlement,
    ListWorkflowFilter,
    NewTask,
    NewWorker,
    Overlap,
    RequeueOutcome,
    RunOutcome,
    Schedule,
    ScheduleUpdate,
    TaskData,
    WorkerInfo,
    WorkflowInstanceData,
)
from cereal.wire import convert, features, reads
from cereal.wire.codec import time_to_pb, value_to_pb
from cereal.wire.domain_names import DEFAULT_DOMAIN, check_domain
from cereal.wire.error_status import error_from_pb, error_from_rpc
from cereal.wire.limits import MAX_MESSAGE_BYTES, channel_options, check_max_message_bytes
from cereal.wire.metadata import DOMAIN_METADATA_KEY, TOKEN_METADATA_KEY, bearer
from cereal.wire.proto import cereal_v1_pb2 as pb
from cereal.wire.proto import cereal_v1_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

T = TypeVar("T")

ALL_KINDS: tuple[WorkKind, ...] = ("workflow", "task", "schedule")
_RECONNECT_BACKOFF = (0.05, 5.0)  # first and largest pause between watch attempts, seconds

REFUSAL_GRACE = 1.0
"""Seconds ``init`` keeps trying a server that refuses connections (one being started)."""


def _refused(exc: grpc.RpcError) -> bool:
    """True when the connection itself was refused (nothing listens at the address)."""
    details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
    return exc.code() == grpc.StatusCode.UNAVAILABLE and "refused" in (details or "").lower()


_REFUSALS = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNIMPLEMENTED,
)


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def _workflow_lost(reason: str) -> errors.CerealError:
    return errors.WorkflowClaimLostError(f"workflow claim lost: {reason}")


def _task_lost(reason: str) -> errors.CerealError:
    return errors.TaskLostError(f"task lease lost: {reason}")


class GrpcDriver(Driver):
    """Reaches a ``cereal serve`` server; every contract method is one RPC or stream.

    Args:
        target: ``host:port`` of the server.
        domain: the domain whose names this driver sees (``default``).
        token: the server's bearer token, if it requires one.
        tls: use TLS (implied by ``ca``, ``cert`` or ``key``).
        ca: a PEM file of the CA that signed the server's certificate
            (default: the system's roots).
        cert: a PEM client certificate (with ``key``), for servers that require one.
        key: the PEM key of ``cert``.
        call_timeout: seconds a call may wait for the server (including reconnecting).
        connect_timeout: seconds ``init`` waits for the server before failing.
        max_message_bytes: the largest request sent (default: the server's default
            limit, 65 MiB); set it to the server's ``--max-message-size``.
            Answers may be up to 1 GiB.
        retention: how much history the domain keeps; sent with every
            :meth:`trim_history` (each sweep's), after which the server's own
            sweeps of the domain use it too.

    Raises:
        ValueError: a malformed domain, target or option.
    """

    capabilities = frozenset({DURABLE, MULTIPROCESS})

    def __init__(
        self,
        target: str,
        *,
        domain: str = DEFAULT_DOMAIN,
        token: str | None = None,
        tls: bool = False,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        call_timeout: float = 60.0,
        connect_timeout: float = 15.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        retention: HistoryRetention | None = None,
    ) -> None:
        super().__init__(retention=retention)
        if not isinstance(target, str) or not target or "/" in target:
            raise ValueError(f"gRPC target must be 'host:port', not {target!r}")
        self.target = target
        self.domain = check_domain(domain)
        self.url = f"grpc://{target}?domain={self.domain}"
        """A URL reaching the same server and domain (without the credentials)."""
        if call_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("call_timeout and connect_timeout must be positive")
        self._credentials = (
            channel_credentials(ca, cert, key) if (tls or ca or cert or key) else None
        )
        metadata = [(DOMAIN_METADATA_KEY, self.domain)]
        if token:
            metadata.append((TOKEN_METADATA_KEY, bearer(token)))
        self._metadata = tuple(metadata)
        self._call_timeout = float(call_timeout)
        self._connect_timeout = float(connect_timeout)
        self._max_message_bytes = check_max_message_bytes(max_message_bytes)
        self._io: IoLoop | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._streams: set[HeldStream] = set()
        # what the server said it serves (its first wakeup); an older one serves less
        self._server_features: frozenset[str] = frozenset()
        self._sessions = ClaimSessions(
            self._open_session,
            self._call_timeout,
            self._max_message_bytes,
            self._track,
            self._untrack,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> GrpcDriver:
        """Build from ``grpc://host:port?domain=...&token=...`` (keywords override the URL).

        Raises:
            ValueError: the URL is malformed or has an unknown option.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "grpc" or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"gRPC URL must look like grpc://host:port?domain=NAME, not {url!r}")
        given: dict[str, Any] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in ("domain", "token", "ca", "cert", "key"):
                given[name] = value
            elif name == "tls":
                given[name] = _parse_bool(value)
            elif name in ("call_timeout", "connect_timeout"):
                given[name] = float(value)
            elif name == "max_message_bytes":
                given[name] = int(value)
            else:
                raise ValueError(
                    f"unknown option {name!r} in {url!r}; known: domain, token, tls, ca,"
                    " cert, key, call_timeout, connect_timeout, max_message_bytes"
                )
        driver = cls(parts.netloc, **{**given, **options})
        if not options:
            driver.url = url  # with its credentials: what other processes need to reach it
        return driver

    # ---- lifecycle -------------------------------------------------------------------

    async def _open(self) -> None:
        io = IoLoop(f"cereal-grpc-{self.target}")
        try:
            await io.run(self._connect())
        except BaseException:
            await asyncio.shield(io.run(self._disconnect()))
            await asyncio.shield(asyncio.to_thread(io.stop))  # may wait for its tasks to end
            raise
        self._io = io

    async def _close(self) -> None:
        io, self._io = self._io, None
        if io is None:
            return
        await asyncio.shield(io.run(self._disconnect()))
        await asyncio.to_thread(io.stop)

    async def _connect(self) -> None:
        options = [
            *channel_options(self._max_message_bytes),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=options)
        else:
            self._channel = grpc.aio.secure_channel(self.target, self._credentials, options)
        self._stub = pb_grpc.CerealStub(self._channel)  # type: ignore[no-untyped-call]
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watcher = asyncio.create_task(self._watch(ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), self._connect_timeout)
        except TimeoutError:
            raise errors.DriverError(
                f"cereal server at {self.target} not reachable within"
                f" {self._connect_timeout:g} s: {self._last_problem}"
            ) from None

    _last_problem = "no answer"

    async def _disconnect(self) -> None:
        for stream in list(self._streams):
            stream.cancel()
        self._streams.clear()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
            self._watcher = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _watch(self, ready: asyncio.Future[None]) -> None:
        """Turn the server's pushed wakeups into this driver's; reconnect with backoff."""
        pause = _RECONNECT_BACKOFF[0]
        refused_since: float | None = None
        while True:
            try:
                call = self._stub.WatchWakeups(pb.Empty(), metadata=self._metadata)
                async for wakeup in call:
                    if wakeup.kind == "ready":
                        # a server that predates sessions is served on batch streams
                        self._sessions.supported = features.SESSIONS in wakeup.features
                        self._server_features = frozenset(wakeup.features)
                        pause = _RECONNECT_BACKOFF[0]
                        if not ready.done():
                            ready.set_result(None)
                        else:  # reconnected: work may have arrived unannounced meanwhile
                            logger.info("reconnected to the cereal server at %s", self.target)
                            for kind in ALL_KINDS:
                                self._wake(kind, None)
                        continue
                    name = wakeup.name if wakeup.HasField("name") else None
                    if wakeup.kind in ALL_KINDS:
                        self._wake(wakeup.kind, name)
                self._last_problem = "the server ended the wakeup stream"
            except grpc.RpcError as exc:
                problem = error_from_rpc(exc)
                self._last_problem = str(problem)
                if exc.code() in _REFUSALS and not ready.done():
                    ready.set_exception(problem)
                    return
                if not ready.done() and _refused(exc):
                    # nothing listens there: a server being started gets a short grace,
                    # a wrong address or a server that is down fails now, not at the timeout
                    loop_time = asyncio.get_running_loop().time()
                    refused_since = refused_since if refused_since is not None else loop_time
                    if loop_time - refused_since >= REFUSAL_GRACE:
                        ready.set_exception(
                            errors.DriverError(
                                f"cereal server at {self.target} refused the connection for"
                                f" {REFUSAL_GRACE:g} s (is it running, on that port?): {problem}"
                            )
                        )
                        return
                else:
                    refused_since = None
                if ready.done():
                    logger.warning(
                        "lost the cereal server at %s (%s); reconnecting", self.target, problem
                    )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RECONNECT_BACKOFF[1])

    def _loop(self) -> IoLoop:
        if self._io is None:
            raise errors.DriverError("the gRPC driver is not open (call init first)")
        return self._io

    async def _call(self, method: str, request: Any) -> Any:
        """One unary RPC, on the I/O loop, waiting for the server up to the call timeout."""
        return await self._loop().run(self._unary(method, request))

    async def _unary(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(
                request, metadata=self._metadata, timeout=self._call_timeout, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    def _open_session(self, rpc: str) -> Any:
        return getattr(self._stub, rpc)(metadata=self._metadata, wait_for_ready=True)

    def _track(self, stream: HeldStream) -> None:
        self._streams.add(stream)

    def _untrack(self, stream: HeldStream) -> None:
        self._streams.discard(stream)

    # ---- workflow instances ----------------------------------------------------------

    async def enqueue_workflow(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        *,
        traceparent: str | None = None,
    ) -> None:
        """See :meth:`Driver.enqueue_workflow`."""
        await self._call(
            "EnqueueWorkflow",
            pb.EnqueueWorkflowRequest(
                workflow_name=workflow_name,
                instance_name=instance_name,
                parameters=value_to_pb(parameters),
                traceparent=traceparent,
            ),
        )

    async def enqueue_keyed_workflow(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        concurrency_key: str,
        concurrency_limit: int,
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> str | None:
        """See :meth:`Driver.enqueue_keyed_workflow` (a server of an earlier release: refused)."""
        reply = await self._call(
            "EnqueueKeyedWorkflow",
            pb.EnqueueKeyedWorkflowRequest(
                workflow_name=workflow_name,
                instance_name=instance_name,
                parameters=value_to_pb(parameters),
                concurrency_key=concurrency_key,
                concurrency_limit=concurrency_limit,
                idempotency_key=idempotency_key,
                traceparent=traceparent,
            ),
        )
        if reply.HasField("existing_instance_name"):
            return str(reply.existing_instance_name)
        return None

    async def enqueue_workflow_once(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        idempotency_key: str,
        *,
        traceparent: str | None = None,
    ) -> str | None:
        """See :meth:`StartKeyStore.enqueue_workflow_once`."""
        reply = await self._call(
            "EnqueueWorkflowOnce",
            pb.EnqueueWorkflowOnceRequest(
                workflow_name=workflow_name,
                instance_name=instance_name,
                parameters=value_to_pb(parameters),
                idempotency_key=idempotency_key,
                traceparent=traceparent,
            ),
        )
        if reply.HasField("existing_instance_name"):
            return str(reply.existing_instance_name)
        return None

    async def claim_workflows(
        self,
        workflow_names: Sequence[str],
        *,
        max_instances: int = 1,
        max_events: int = 1,
        claim_expiry: float = DEFAULT_TASK_EXPIRY,
    ) -> list[ClaimedWorkflow]:
        """See :meth:`Driver.claim_workflows`: the batch lives on one stream."""
        check_claim_sizes(max_instances, max_events)
        claim = pb.ClaimWorkflowsRequest(
            workflow_names=list(workflow_names),
            max_instances=max_instances,
            max_events=max_events,
            claim_expiry=claim_expiry,
        )
        # detached: a caller cancelled once the server claimed releases the claims
        return await self._loop().run_detached(self._claim(claim), if_abandoned=_close_claims)

    async def _claim(self, claim: pb.ClaimWorkflowsRequest) -> list[ClaimedWorkflow]:
        if self._sessions.supported:

            def build(request_id: int) -> pb.WorkflowStreamRequest:
                request = pb.WorkflowStreamRequest(claim=claim)
                request.claim.request_id = request_id
                return request

            got = await self._sessions.claim(
                "WorkflowSession", build, _workflow_lost, self._release_claimed
            )
            return self._claimed(*got)
        return await self._claim_on_batch_stream(claim)

    async def _claim_on_batch_stream(
        self, claim: pb.ClaimWorkflowsRequest
    ) -> list[ClaimedWorkflow]:
        call = self._stub.ClaimWorkflows(metadata=self._metadata, wait_for_ready=True)
        try:
            first = await asyncio.wait_for(
                _exchange(call, pb.WorkflowStreamRequest(claim=claim)), self._call_timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        except TimeoutError:
            call.cancel()
            raise errors.DriverError("the cereal server did not answer a claim in time") from None
        if first is grpc.aio.EOF or not first.HasField("claimed"):
            call.cancel()
            raise errors.DriverError("the cereal server ended a claim stream without a reply")
        instances = first.claimed.instances
        if not instances:
            with contextlib.suppress(grpc.RpcError):
                await call.done_writing()
            return []
        stream = HeldStream(
            call, len(instances), _workflow_lost, self._untrack, self._max_message_bytes
        )
        self._track(stream)
        return self._claimed(stream, first.claimed)

    def _claimed(self, stream: HeldStream, batch: pb.ClaimedWorkflows) -> list[ClaimedWorkflow]:
        return [
            (
                [convert.EVENT.from_pb(e) for e in claimed.events],
                _RemoteWorkflowCompleter(self._loop(), stream, index),
            )
            for index, claimed in zip(batch_indexes(batch), batch.instances, strict=True)
        ]

    async def _release_claimed(self, stream: HeldStream, batch: pb.ClaimedWorkflows) -> None:
        await _close_claims(self._claimed(stream, batch))

    async def cancel_workflow(self, workflow_name: str, instance_name: str) -> None:
        """See :meth:`Driver.cancel_workflow`."""
        await self._call(
            "CancelWorkflow",
            pb.InstanceKey(workflow_name=workflow_name, instance_name=instance_name),
        )

    async def kill_workflow(self, workflow_name: str, instance_name: str, error: str) -> None:
        """See :meth:`Driver.kill_workflow`."""
        await self._call(
            "KillWorkflow",
            pb.KillWorkflowRequest(
                workflow_name=workflow_name, instance_name=instance_name, error=error
            ),
        )

    async def requeue_failed_runs(self, run_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """See :meth:`Driver.requeue_failed_runs` (the server checks the ids again)."""
        found = await self._call(
            "RequeueFailedRuns", pb.RequeueFailedRunsRequest(run_ids=list(run_ids))
        )
        return {
            run_id: RequeueOutcome(outcome)
            for run_id, outcome in zip(found.run_ids, found.outcomes, strict=True)
        }

    async def requeue_dead_tasks(self, task_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """See :meth:`Driver.requeue_dead_tasks` (the server checks the ids again)."""
        found = await self._call(
            "RequeueDeadTasks", pb.RequeueDeadTasksRequest(task_ids=list(task_ids))
        )
        return {
            task_id: RequeueOutcome(outcome)
            for task_id, outcome in zip(found.task_ids, found.outcomes, strict=True)
        }

    async def get_workflow_instance(
        self, workflow_name: str, instance_name: str
    ) -> WorkflowInstanceData:
        """See :meth:`Driver.get_workflow_instance`."""
        found = await self._call(
            "GetWorkflowInstance",
            pb.InstanceKey(workflow_name=workflow_name, instance_name=instance_name),
        )
        return convert.INSTANCE.from_pb(found)

    async def list_workflow_instances(
        self, where: ListWorkflowFilter
    ) -> list[WorkflowInstanceData]:
        """See :meth:`Driver.list_workflow_instances`."""
        found = await self._call("ListWorkflowInstances", convert.LISTING.to_pb(where))
        return [convert.INSTANCE.from_pb(i) for i in found.instances]

    # ---- live workers (stored by the domain's store, stamped by its clock) ---------

    async def register_worker(self, worker: NewWorker) -> None:
        """See :meth:`Driver.register_worker`."""
        await self._call("RegisterWorker", convert.NEW_WORKER.to_pb(worker))

    async def refresh_worker(self, worker_id: str) -> bool:
        """See :meth:`Driver.refresh_worker`."""
        found = await self._call("RefreshWorker", pb.WorkerId(id=worker_id))
        return bool(found.found)

    async def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`Driver.unregister_worker`."""
        await self._call("UnregisterWorker", pb.WorkerId(id=worker_id))

    async def list_workers(self) -> list[WorkerInfo]:
        """See :meth:`Driver.list_workers`."""
        found = await self._call("ListWorkers", pb.Empty())
        return [convert.WORKER_INFO.from_pb(w) for w in found.workers]

    # ---- tasks ---------------------------------------------------------------------

    async def dequeue_tasks(
        self,
        task_name: str,
        max_tasks: int,
        *,
        task_expiry: float = DEFAULT_TASK_EXPIRY,
        retry_policy: str | None = None,
    ) -> list[tuple[TaskData, TaskCompleter]]:
        """See :meth:`Driver.dequeue_tasks`: the leases live on one stream."""
        ask = pb.DequeueTasksRequest(
            task_name=task_name,
            max_tasks=max_tasks,
            task_expiry=task_expiry,
            retry_policy=retry_policy,
        )
        # detached: a caller cancelled after the server leased tasks hands them back
        # (attempt not counted) instead of the stream's end reporting them LOST
        return await self._loop().run_detached(self._dequeue(ask), if_abandoned=_give_back)

    async def _dequeue(self, ask: pb.DequeueTasksRequest) -> list[tuple[TaskData, TaskCompleter]]:
        if self._sessions.supported:

            def build(request_id: int) -> pb.TaskStreamRequest:
                request = pb.TaskStreamRequest(dequeue=ask)
                request.dequeue.request_id = request_id
                return request

            got = await self._sessions.claim("TaskSession", build, _task_lost, self._release_leased)
            return self._leased(*got)
        return await self._dequeue_on_batch_stream(ask)

    async def _dequeue_on_batch_stream(
        self, ask: pb.DequeueTasksRequest
    ) -> list[tuple[TaskData, TaskCompleter]]:
        call = self._stub.DequeueTasks(metadata=self._metadata, wait_for_ready=True)
        try:
            first = await asyncio.wait_for(
                _exchange(call, pb.TaskStreamRequest(dequeue=ask)), self._call_timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        except TimeoutError:
            call.cancel()
            raise errors.DriverError("the cereal server did not answer a dequeue in time") from None
        if first is grpc.aio.EOF or not first.HasField("leased"):
            call.cancel()
            raise errors.DriverError("the cereal server ended a task stream without a reply")
        tasks = first.leased.tasks
        if not tasks:
            with contextlib.suppress(grpc.RpcError):
                await call.done_writing()
            return []
        stream = HeldStream(call, len(tasks), _task_lost, self._untrack, self._max_message_bytes)
        self._track(stream)
        return self._leased(stream, first.leased)

    def _leased(
        self, stream: HeldStream, batch: pb.LeasedTasks
    ) -> list[tuple[TaskData, TaskCompleter]]:
        tokens = list(batch.lease_tokens)
        leased: list[tuple[TaskData, TaskCompleter]] = []
        for offset, (index, task) in enumerate(zip(batch_indexes(batch), batch.tasks, strict=True)):
            data = convert.TASK.from_pb(task)
            token = tokens[offset] if offset < len(tokens) and tokens[offset] else None
            lease = _Lease(data.metadata.task_id, token, self._resume_lease)
            completer = _RemoteTaskCompleter(
                self._loop(),
                stream,
                index,
                lease,
                uncounted_hand_back=features.UNSTARTED_HAND_BACK in self._server_features,
            )
            leased.append((data, completer))
        return leased

    async def _release_leased(self, stream: HeldStream, batch: pb.LeasedTasks) -> None:
        await _give_back(self._leased(stream, batch))

    async def _resume_lease(self, task_id: str, lease_token: str) -> HeldStream:
        """Re-present a lease on a new stream (the old one broke); the server takes it up.

        Waits for the server (a restarting one) up to the call timeout.

        Raises:
            TaskLostError: the store no longer holds the lease under that token.
            DriverError: the server did not answer in time.
        """
        call = self._stub.DequeueTasks(metadata=self._metadata, wait_for_ready=True)
        resume = pb.ResumeLease(task_id=task_id, lease_token=lease_token)
        try:
            first = await asyncio.wait_for(
                _exchange(call, pb.TaskStreamRequest(resume=resume)), self._call_timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        except TimeoutError:
            call.cancel()
            raise errors.DriverError("the cereal server did not take a lease up in time") from None
        if first is grpc.aio.EOF or not first.HasField("leased") or len(first.leased.tasks) != 1:
            call.cancel()
            raise errors.DriverError("the cereal server ended a task stream without a reply")
        stream = HeldStream(call, 1, _task_lost, self._untrack, self._max_message_bytes)
        self._track(stream)
        logger.info("task lease %s taken up again on a new stream", task_id)
        return stream

    # ---- maintenance (the caller's engine decides; each operation is one RPC) ----

    async def expired_task_leases(self, task_expiry: float, limit: int) -> list[ExpiredLease]:
        """See :meth:`Driver.expired_task_leases`."""
        if limit <= 0:
            return []
        ask = pb.ExpiredTaskLeasesRequest(task_expiry=task_expiry, limit=limit)
        found = await self._call("ExpiredTaskLeases", ask)
        return [convert.EXPIRED_LEASE.from_pb(lease) for lease in found.leases]

    async def settle_expired_leases(
        self, settlements: Sequence[LeaseSettlement], *, task_expiry: float
    ) -> list[str]:
        """See :meth:`Driver.settle_expired_leases` (the server's store applies them)."""
        if not settlements:
            return []
        ask = pb.SettleExpiredLeasesRequest(
            settlements=[convert.SETTLEMENT.to_pb(each) for each in settlements],
            task_expiry=task_expiry,
        )
        found = await self._call("SettleExpiredLeases", ask)
        return list(found.task_ids)

    async def release_stale_claims(self, task_expiry: float) -> int:
        """See :meth:`Driver.release_stale_claims`."""
        ask = pb.ReleaseStaleClaimsRequest(task_expiry=task_expiry)
        found = await self._call("ReleaseStaleClaims", ask)
        return int(found.released)

    async def trim_history(self, retention: HistoryRetention) -> int | None:
        """See :meth:`Driver.trim_history`; ``retention`` becomes the domain's too."""
        found = await self._call("TrimHistory", convert.RETENTION.to_pb(retention))
        return int(found.trimmed) if found.HasField("trimmed") else None

    # ---- schedules -----------------------------------------------------------------

    async def create_workflow_schedule(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        enabled: bool,
        recurrence: str,
        next_due_at: datetime,
        *,
        overlap: Overlap = "skip",
        catch_up_window: float = 0.0,
    ) -> None:
        """See :meth:`Driver.create_workflow_schedule`."""
        await self._call(
            "CreateWorkflowSchedule",
            pb.CreateScheduleRequest(
                workflow_name=workflow_name,
                instance_name=instance_name,
                parameters=value_to_pb(parameters),
                enabled=enabled,
                recurrence=recurrence,
                next_due_at=time_to_pb(next_due_at),
                overlap=overlap,
                catch_up_window=catch_up_window,
            ),
        )

    async def list_workflow_schedules(
        self, *, limit: int | None = None, offset: int = 0
    ) -> list[Schedule]:
        """See :meth:`Driver.list_workflow_schedules`."""
        request = pb.ListSchedulesRequest(limit=limit, offset=offset)
        found = await self._call("ListWorkflowSchedules", request)
        # a server older than the page fields sends every schedule: keep the page asked for
        schedules = [convert.SCHEDULE.from_pb(s) for s in found.schedules]
        return schedules if limit is None else schedules[:limit]

    async def get_workflow_schedule(self, workflow_name: str, instance_name: str) -> Schedule:
        """See :meth:`Driver.get_workflow_schedule`."""
        found = await self._call(
            "GetWorkflowSchedule",
            pb.InstanceKey(workflow_name=workflow_name, instance_name=instance_name),
        )
        return convert.SCHEDULE.from_pb(found)

    async def update_workflow_schedule(
        self, workflow_name: str, instance_name: str, update: ScheduleUpdate
    ) -> None:
        """See :meth:`Driver.update_workflow_schedule`."""
        await self._call(
            "UpdateWorkflowSchedule", convert.update_to_pb(workflow_name, instance_name, update)
        )

    async def delete_workflow_schedule(self, workflow_name: str, instance_name: str) -> None:
        """See :meth:`Driver.delete_workflow_schedule`."""
        await self._call(
            "DeleteWorkflowSchedule",
            pb.InstanceKey(workflow_name=workflow_name, instance_name=instance_name),
        )

    async def get_due_scheduled_workflow(self) -> tuple[Schedule, ScheduledWorkflowCompleter]:
        """See :meth:`Driver.get_due_scheduled_workflow`: the lock lives on one stream."""
        return await self._loop().run(self._lock_due())

    async def _lock_due(self) -> tuple[Schedule, ScheduledWorkflowCompleter]:
        call = self._stub.GetDueScheduledWorkflow(metadata=self._metadata, wait_for_ready=True)
        try:
            first = await asyncio.wait_for(
                _exchange(call, pb.ScheduleStreamRequest(lock=pb.Empty())), self._call_timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        except TimeoutError:
            call.cancel()
            raise errors.DriverError("the cereal server did not answer in time") from None
        if first is grpc.aio.EOF:
            raise errors.DriverError("the cereal server ended a schedule stream without a reply")
        if first.HasField("none"):
            with contextlib.suppress(grpc.RpcError):
                await call.done_writing()
            raise error_from_pb(first.none)
        completer = _RemoteScheduleCompleter(self._loop(), call, due=not first.waiting_run)
        return convert.SCHEDULE.from_pb(first.due), completer

    async def get_next_scheduled_workflow(self) -> Schedule:
        """See :meth:`Driver.get_next_scheduled_workflow`."""
        return convert.SCHEDULE.from_pb(await self._call("GetNextScheduledWorkflow", pb.Empty()))

    async def trigger_workflow_schedule(
        self, workflow_name: str, instance_name: str, kill_error: str
    ) -> RunOutcome:
        """See :meth:`Driver.trigger_workflow_schedule`."""
        found = await self._call(
            "TriggerWorkflowSchedule",
            pb.TriggerScheduleRequest(
                workflow_name=workflow_name, instance_name=instance_name, kill_error=kill_error
            ),
        )
        return RunOutcome(found.outcome)

    async def has_waiting_schedule_runs(self) -> bool:
        """See :meth:`Driver.has_waiting_schedule_runs`."""
        found = await self._call("HasWaitingScheduleRuns", pb.Empty())
        return bool(found.waiting)


async def _give_back(leased: list[tuple[TaskData, TaskCompleter]]) -> None:
    """Hand back the leases of a dequeue whose caller was cancelled: nobody runs them."""
    if not leased:
        return
    logger.info("a cancelled dequeue won %d task(s); handing them back", len(leased))
    outcomes = await asyncio.gather(
        *(completer.hand_back_unstarted() for _, completer in leased), return_exceptions=True
    )
    for (task, _), outcome in zip(leased, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.warning(
                "handing back task %s of a cancelled dequeue failed",
                task.metadata.task_id,
                exc_info=outcome,
            )


async def _close_claims(claimed: list[ClaimedWorkflow]) -> None:
    """Release the claims of a claim whose caller was cancelled: nobody decides them."""
    for _, completer in claimed:
        try:
            await completer.close()
        except Exception:
            logger.warning("releasing a claim nobody will decide failed", exc_info=True)


async def _exchange(call: Any, request: Any) -> Any:
    """Send a stream's first request and read the first reply."""
    await call.write(request)
    return await call.read()


async def _on_io(io: IoLoop, work: Coroutine[Any, Any, T], lost: errors.CerealError) -> T:
    """Run one request of a shared stream on the driver's I/O loop, detached from its caller.

    A cancelled caller stops waiting, but the request still goes out whole and
    the stream (other callers' claims and leases) stays up. Once the driver is
    closed, raise ``lost``.
    """
    try:
        return await io.run_detached(work)
    except errors.DriverError:
        if io.stopped:
            raise lost from None
        raise


class _RemoteWorkflowCompleter(WorkflowCompleter):
    """Decides claim ``index`` of a claimed batch on its stream."""

    def __init__(self, io: IoLoop, stream: HeldStream, index: int) -> None:
        self._io = io
        self._stream = stream
        self._index = index
        self._closed = False
        self._decided = False  # the server releases the claim with a decision

    async def _send(self, build: BuildRequest) -> None:
        lost = errors.WorkflowClaimLostError("workflow claim lost: the driver was closed")
        await _on_io(self._io, self._stream.request(build), lost)

    def _decision(self, **action: Any) -> BuildRequest:
        index = self._index
        return lambda request_id: pb.WorkflowStreamRequest(
            decision=pb.WorkflowDecision(request_id=request_id, claim=index, **action)
        )

    async def _decide(self, build: BuildRequest) -> None:
        self._decided = True
        await self._send(build)

    async def continue_(self, payload: bytes | None, tasks: Sequence[NewTask]) -> None:
        """See :meth:`WorkflowCompleter.continue_`."""
        carried = pb.Continue(
            payload=value_to_pb(payload), tasks=[convert.NEW_TASK.to_pb(t) for t in tasks]
        )
        await self._decide(self._decision(continue_=carried))

    async def done(self, result: bytes | None) -> None:
        """See :meth:`WorkflowCompleter.done`."""
        await self._decide(self._decision(done=pb.Done(result=value_to_pb(result))))

    async def fail(self, error: str) -> None:
        """See :meth:`WorkflowCompleter.fail`."""
        await self._decide(self._decision(fail=pb.Fail(error=error)))

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """See :meth:`WorkflowCompleter.fail_with_details`."""
        await self._decide(self._decision(fail=convert.FAILURE.to_pb(failure)))

    async def heartbeat(self) -> None:
        """See :meth:`WorkflowCompleter.heartbeat`."""
        await self._send(self._decision(heartbeat=pb.Empty()))

    async def close(self) -> None:
        """Release the claim on the server (rolls back if undecided); idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._io.stopped:  # a closed driver's streams were dropped: released already
            with contextlib.suppress(errors.DriverError):
                await asyncio.shield(self._io.run(self._release()))

    async def _release(self) -> None:
        if self._stream.is_open(self._index) and not self._decided:
            with contextlib.suppress(errors.CerealError):
                await self._stream.request(self._decision(close=pb.Empty()))
        await self._stream.finish(self._index)


@dataclass(frozen=True)
class _Lease:
    """What re-presents a lease on a new stream when its own broke."""

    task_id: str
    token: str | None  # None: the server gave none (it cannot take leases up)
    resume: Callable[[str, str], Awaitable[HeldStream]]


_RESUME_ATTEMPTS = 3  # new streams tried for one request (each may break again)


class _RemoteTaskCompleter(TaskCompleter):
    """Reports lease ``index`` of a leased batch on its stream.

    When the stream breaks (the server stopped or crashed, the connection
    dropped) the lease is re-presented on a new stream, and the request sent
    there: the server takes it up if the store still holds it under its
    token, so a result is applied once or, the lease gone, not at all.
    """

    def __init__(
        self,
        io: IoLoop,
        stream: HeldStream,
        index: int,
        lease: _Lease,
        *,
        uncounted_hand_back: bool,
    ) -> None:
        self._io = io
        self._stream = stream
        self._index = index
        self._lease = lease
        self._uncounted_hand_back = uncounted_hand_back  # the server takes hand_back_unstarted
        self._resuming: asyncio.Lock | None = None  # made on the I/O loop

    async def _report(self, final: bool, **action: Any) -> pb.Answer:
        index = self._index
        # an outcome carries the traced run's span, kept with the result
        traceparent = self.result_traceparent if final else None

        def build(request_id: int) -> pb.TaskStreamRequest:
            return pb.TaskStreamRequest(
                report=pb.TaskReport(
                    request_id=request_id, lease=index, traceparent=traceparent, **action
                )
            )

        lost = errors.TaskLostError("task lease lost: the driver was closed")
        return await _on_io(self._io, self._send(build, final), lost)

    async def _send(self, build: BuildRequest, final: bool) -> pb.Answer:
        resumed = 0
        while True:
            stream, index = self._stream, self._index
            try:
                answer = await stream.request(build)
            except errors.TaskLostError:
                if not stream.broken or self._lease.token is None or resumed == _RESUME_ATTEMPTS:
                    await stream.finish(index)
                    raise
                resumed += 1
                await self._take_up_again(stream)
                continue
            if final:
                await stream.finish(index)
            return answer

    async def _take_up_again(self, broken: HeldStream) -> None:
        """Move the lease from ``broken`` to a new stream (once, for concurrent requests).

        Raises:
            TaskLostError: the server no longer holds the lease.
            DriverError: the server could not be reached in time.
        """
        if self._resuming is None:
            self._resuming = asyncio.Lock()
        async with self._resuming:
            if self._stream is not broken:
                return  # another request of this lease took it up already
            assert self._lease.token is not None
            try:
                stream = await self._lease.resume(self._lease.task_id, self._lease.token)
            except errors.TaskLostError:
                await broken.finish(self._index)
                raise
            await broken.finish(self._index)
            self._stream, self._index = stream, 0

    async def heartbeat(self) -> None:
        """See :meth:`TaskCompleter.heartbeat`."""
        await self._report(False, heartbeat=pb.Empty())

    async def succeed(self, result: bytes | None) -> None:
        """See :meth:`TaskCompleter.succeed`."""
        await self._report(True, succeed=pb.Succeed(result=value_to_pb(result)))

    async def fail(self, error: str) -> None:
        """See :meth:`TaskCompleter.fail`."""
        await self._report(True, fail=error)

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """See :meth:`TaskCompleter.fail_with_details`."""
        await self._report(True, fail_with_details=convert.FAILURE.to_pb(failure))

    async def abandon(self) -> None:
        """See :meth:`TaskCompleter.abandon`."""
        await self._report(True, abandon=pb.Empty())

    async def retry(self, error: str, delay: float) -> None:
        """See :meth:`TaskCompleter.retry`."""
        await self._report(True, retry=pb.Retry(error=error, delay=delay))

    async def hand_back(self) -> bool:
        """See :meth:`TaskCompleter.hand_back`."""
        answer = await self._report(True, hand_back=pb.Empty())
        return answer.handed_back

    async def hand_back_unstarted(self) -> bool:
        """See :meth:`TaskCompleter.hand_back_unstarted`.

        A server that predates it is sent a plain (counted) hand-back: one
        that did not name the feature, and one that refuses the report (the
        lease was taken up again by an older server of a mixed fleet).
        """
        if not self._uncounted_hand_back:
            return await self.hand_back()
        try:
            answer = await self._report(True, hand_back_unstarted=pb.Empty())
        except errors.TaskLostError:
            raise
        except (errors.CerealError, ValueError):  # an older server: "names no action"
            logger.info("the cereal server refused an uncounted hand-back; handing back counted")
            return await self.hand_back()
        return answer.handed_back


class _RemoteScheduleCompleter(ScheduledWorkflowCompleter):
    """Applies one action to the schedule locked on its stream."""

    def __init__(self, io: IoLoop, call: Any, *, due: bool) -> None:
        self.due = due
        self._io = io
        self._call = call
        self._done = False

    async def _apply(self, apply: pb.ScheduleApply) -> pb.ScheduleAnswer:
        return await self._io.run(self._exchange(apply))

    async def _exchange(self, apply: pb.ScheduleApply) -> pb.ScheduleAnswer:
        if self._done:
            raise RuntimeError("this schedule was already applied or released")
        self._done = True
        try:
            await self._call.write(pb.ScheduleStreamRequest(apply=apply))
            reply = await self._call.read()
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        if reply is grpc.aio.EOF or not reply.HasField("answer"):
            raise errors.DriverError("the cereal server ended a schedule stream without an answer")
        answer: pb.ScheduleAnswer = reply.answer
        if answer.HasField("error"):
            raise error_from_pb(answer.error)
        with contextlib.suppress(grpc.RpcError):
            await self._call.done_writing()
        return answer

    async def run_and_advance(
        self,
        *,
        run: bool,
        next_due_at: datetime | None = None,
        enabled: bool | None = None,
        kill_error: str = "killed",
    ) -> RunOutcome:
        """See :meth:`ScheduledWorkflowCompleter.run_and_advance`."""
        answer = await self._apply(
            pb.ScheduleApply(
                request_id=1,
                run_and_advance=pb.RunAndAdvance(
                    run=run,
                    next_due_at=time_to_pb(next_due_at),
                    enabled=enabled,
                    kill_error=kill_error,
                ),
            )
        )
        return RunOutcome(answer.outcome)

    async def disable(self) -> None:
        """See :meth:`ScheduledWorkflowCompleter.disable`."""
        await self._apply(pb.ScheduleApply(request_id=1, disable=pb.Empty()))

    async def close(self) -> None:
        """Release the schedule (unchanged if nothing was applied); idempotent."""
        if self._done:
            return
        self._done = True
        if not self._io.stopped:
            with contextlib.suppress(errors.DriverError):
                await asyncio.shield(self._io.run(self._release()))

    async def _release(self) -> None:
        # wait for the server's end of the stream: the schedule is released by then
        with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError, RuntimeError):
            await self._call.done_writing()
            while await self._call.read() is not grpc.aio.EOF:
                pass


def _remote_read(operation: ReadOperation) -> Callable[..., Awaitable[list[Any]]]:
    """The client side of a read-only operation: its request, the RPC, its records."""

    async def call(self: GrpcDriver, *args: Any, **kwargs: Any) -> list[Any]:
        arguments = operation.bind(args, kwargs)
        request = reads.request_to_pb(operation, arguments)
        found = await self._call(reads.rpc_name(operation), request)
        return reads.results_from_pb(operation, found)

    call.__name__ = call.__qualname__ = operation.name
    call.__doc__ = f"See :meth:`Driver.{operation.name}` (answered by the domain's store)."
    return call


# Every read-only operation of the contract is sent the same way (see cereal.wire.reads).
for _operation in READ_OPERATIONS.values():
    setattr(GrpcDriver, _operation.name, _remote_read(_operation))
