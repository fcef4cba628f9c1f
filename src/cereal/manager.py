"""The Manager: registration, start/stop, and every public operation.

It validates and encodes what users pass (names, JSON values, sizes, rules),
talks to the driver, and wires the runners: one workflow runner, one task
runner per registered task name, the scheduler and the maintenance sweeper.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cereal import values
from cereal.checks import names as name_checks
from cereal.checks import times, validation
from cereal.checks.validation import usable_traceparent
from cereal.drivers._dead_letter_store import check_requeue_ids
from cereal.drivers._read_operations import READ_OPERATIONS
from cereal.drivers._start_key_store import check_start_key
from cereal.drivers.base import Driver, LocalPromise, WorkKind
from cereal.engine.scheduler import REPLACED_ERROR, WorkflowScheduler
from cereal.engine.sweeper import run_sweeper
from cereal.engine.task_runner import TaskRunner
from cereal.engine.waits import wait_all_or
from cereal.engine.worker_presence import WorkerPresence, describe_this_process
from cereal.engine.workflow_runner import WorkflowRunner
from cereal.executors import (
    TaskExecutor,
    TaskFunction,
    WorkflowExecutor,
    check_workflow_executor,
    task_callable,
)
from cereal.instance import ImmutableWorkflowInstance
from cereal.models import (
    UNSET,
    DeadTask,
    EnqueuedWorkflow,
    FailedRun,
    HistoryRetention,
    InstanceEvent,
    InstanceTask,
    ListWorkflowFilter,
    Overlap,
    QueueDepth,
    RequeueOutcome,
    RetentionRule,
    RunOutcome,
    Schedule,
    ScheduleUpdate,
    StartKey,
    TaskQueueStats,
    ThroughputBucket,
    Unset,
    WorkerInfo,
    WorkflowEvent,
    WorkflowInstanceData,
    check_overlap,
)
from cereal.observe import Observer, combine
from cereal.retry import RetryPolicy, check_policy

logger = logging.getLogger(__name__)

MaxWakeupInterval = 60.0
"""Default longest sleep of the scheduler, in seconds."""
LateWarningThreshold = 10.0
"""Default lateness of a due schedule, in seconds, past which a warning is logged."""

KILLED = "killed"
"""The error text a killed instance finishes with."""

Duration = float | timedelta


class _TaskRegistration:
    def __init__(
        self,
        function: TaskFunction,
        workers: int,
        timeout: float | None,
        max_strays: int | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.function = function
        self.workers = workers
        self.timeout = timeout
        self.max_strays = max_strays
        self.retry_policy = None if retry is None else retry.to_json()


class Manager:
    """Runs registered workflow and task executors and schedules on one driver.

    Storage operations (enqueue, cancel, kill, lookups, schedules) work before
    :meth:`start`; executors run only between :meth:`start` and :meth:`stop`.

    Names (workflow, instance, task) are 1-255 characters of printable text
    (unicode, right-to-left letters and emoji included); a control character
    or an invisible one (bidi embeddings, overrides and isolates U+202A-U+202E
    and U+2066-U+2069, U+2028, U+2029, U+200B, U+FEFF) is refused with a
    one-line ``ValueError`` naming it and its position.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        task_poll_interval: Duration | None = None,
        task_poll_interval_max_jitter: Duration | None = None,
        workflow_poll_interval: Duration | None = None,
        task_dequeue_workers: int | None = None,
        on_workflow_complete: Callable[[WorkflowEvent], None] | None = None,
        task_heartbeat_interval: Duration = 10.0,
        task_expiry: Duration = 60.0,
        stop_grace_period: Duration = 30.0,
        scheduler_max_wakeup_interval: Duration | None = None,
        late_warning_threshold: Duration | None = None,
        max_value_bytes: int = values.DEFAULT_MAX_VALUE_BYTES,
        workflow_workers: int = 1,
        observers: Sequence[Observer] = (),
    ) -> None:
        if not isinstance(driver, Driver):
            raise TypeError(f"driver must be a cereal Driver, got {type(driver).__name__}")
        self._driver = driver
        self._task_poll = times.seconds(
            task_poll_interval
            if task_poll_interval is not None
            else driver.default_task_poll_interval,
            name="task_poll_interval",
        )
        jitter = times.optional_seconds(
            task_poll_interval_max_jitter, name="task_poll_interval_max_jitter"
        )
        self._task_jitter = min(
            jitter if jitter is not None else self._task_poll / 10, self._task_poll
        )
        self._workflow_poll = times.seconds(
            workflow_poll_interval
            if workflow_poll_interval is not None
            else driver.default_workflow_poll_interval,
            name="workflow_poll_interval",
        )
        # Zero would make the runners poll without pausing, keeping a core busy.
        for option, interval in (
            ("task_poll_interval", self._task_poll),
            ("workflow_poll_interval", self._workflow_poll),
        ):
            if interval <= 0:
                raise ValueError(f"{option} must be positive, got {interval:g}")
        self._dequeue_workers = validation.positive_int(
            2 if task_dequeue_workers is None else task_dequeue_workers, "task_dequeue_workers"
        )
        self._workflow_workers = validation.positive_int(workflow_workers, "workflow_workers")
        # metrics and tracing: None when there are none, so the runners skip every hook
        self._observers = list(observers)
        self._observer = combine(self._observers)
        self._on_workflow_complete = on_workflow_complete
        self._heartbeat = times.seconds(task_heartbeat_interval, name="task_heartbeat_interval")
        self._expiry = validation.expiry_seconds(task_expiry, "task_expiry")
        if self._heartbeat <= 0 or self._expiry <= self._heartbeat:
            raise ValueError(
                f"task_expiry ({self._expiry:g} s) must be longer than "
                f"task_heartbeat_interval ({self._heartbeat:g} s), which must be positive"
            )
        self._grace = times.seconds(stop_grace_period, name="stop_grace_period")
        self._max_wakeup = times.seconds(
            MaxWakeupInterval
            if scheduler_max_wakeup_interval is None
            else scheduler_max_wakeup_interval,
            name="scheduler_max_wakeup_interval",
        )
        self._late_threshold = times.seconds(
            LateWarningThreshold if late_warning_threshold is None else late_warning_threshold,
            name="late_warning_threshold",
        )
        self._max_value_bytes = validation.positive_int(max_value_bytes, "max_value_bytes")
        self._workflow_executors: dict[str, WorkflowExecutor] = {}
        self._task_registrations: dict[str, _TaskRegistration] = {}
        self._started = False
        self._stopped = False
        self._initialised = False
        self._init_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workflow_runner: WorkflowRunner | None = None
        self._task_runners: dict[str, TaskRunner] = {}
        self._scheduler: WorkflowScheduler | None = None
        self._presence: WorkerPresence | None = None
        self._background: list[asyncio.Task[None]] = []
        self._grace_cut = asyncio.Event()
        self._grace_deadline: float | None = None

    @property
    def driver(self) -> Driver:
        """The storage driver this Manager uses."""
        return self._driver

    @property
    def workflow_names(self) -> tuple[str, ...]:
        """The workflow names with a registered executor, in registration order."""
        return tuple(self._workflow_executors)

    @property
    def task_names(self) -> tuple[str, ...]:
        """The task names with a registered executor, in registration order."""
        return tuple(self._task_registrations)

    @property
    def observer(self) -> Observer | None:
        """The instrumentation this Manager reports to (``observers``, combined), if any."""
        return self._observer

    def add_observer(self, observer: Observer) -> None:
        """Report to ``observer`` too (e.g. metrics added by ``cereal worker``).

        Raises:
            RuntimeError: after :meth:`start` (the runners hold their observer).
            TypeError: ``observer`` is not a :class:`~cereal.observe.Observer`.
        """
        if self._started:
            raise RuntimeError("add_observer must be called before start()")
        self._observer = combine([*self._observers, observer])
        self._observers.append(observer)

    # ---- registration ---------------------------------------------------------------

    def register_workflow_executor(self, workflow_name: str, executor: WorkflowExecutor) -> None:
        """Run ``executor``'s callbacks for instances of ``workflow_name``.

        Raises:
            RuntimeError: after :meth:`start`, or the name is registered already.
            ValueError / TypeError: a bad name, or an executor without the three callbacks.
        """
        self._check_registration(workflow_name, "workflow name", self._workflow_executors)
        check_workflow_executor(executor)
        self._workflow_executors[workflow_name] = executor

    def register_task_executor(
        self,
        task_name: str,
        executor: TaskExecutor | TaskFunction,
        *,
        workers: int = 1,
        timeout: Duration | None = None,
        max_stray_threads: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Run tasks of ``task_name`` with ``executor``, at most ``workers`` at a time here.

        A task running longer than ``timeout`` is cancelled (async) or abandoned
        (plain: its thread runs on) and reported failed. While
        ``max_stray_threads`` (default: ``workers``) such abandoned threads of
        a plain executor still run, no more tasks of this name are claimed
        here; a WARNING says so.

        While its tasks are quick (averaging under 20 ms), the runner also
        claims up to ``workers`` more tasks than it has free slots; they wait
        here, their leases kept alive, and start as slots free (a graceful
        stop runs them within its grace period, as it does running tasks).
        So up to twice ``workers`` tasks of this name may be leased here at
        once, though never more than ``workers`` run.

        ``retry`` is the :class:`~cereal.RetryPolicy` of tasks of this name
        enqueued without their own: it is stored with each such task when it
        is first claimed, so every later attempt follows it on any worker.

        Raises:
            RuntimeError: after :meth:`start`, or the name is registered already.
            ValueError / TypeError: bad name, worker count, timeout, executor or retry.
        """
        self._check_registration(task_name, "task name", self._task_registrations)
        policy = check_policy(retry)
        function = task_callable(executor)
        count = validation.positive_int(workers, "workers")
        limit = times.optional_seconds(timeout, name="timeout")
        if limit is not None and limit <= 0:
            raise ValueError("timeout must be positive (or None for no timeout)")
        strays = None
        if max_stray_threads is not None:
            strays = validation.positive_int(max_stray_threads, "max_stray_threads")
        self._task_registrations[task_name] = _TaskRegistration(
            function, count, limit, strays, policy
        )

    def _check_registration(self, name: str, what: str, registry: dict[str, Any]) -> None:
        if self._started:
            raise RuntimeError(f"cannot register {what} {name!r} after Manager.start()")
        name_checks.check_name(name, what=what)
        if name in registry:
            raise RuntimeError(f"{what} {name!r} is registered already")

    # ---- lifecycle ------------------------------------------------------------------

    async def _storage(self) -> Driver:
        """The driver, initialised on first use."""
        if not self._initialised:
            if self._init_lock is None:
                self._init_lock = asyncio.Lock()
            async with self._init_lock:
                if not self._initialised:
                    await self._driver.init()
                    self._initialised = True
        return self._driver

    async def _read(self, operation: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Check and run a read-only store operation (declared on the driver contract)."""
        declared = READ_OPERATIONS[operation]
        return await declared.call(await self._storage(), declared.bind(args, kwargs))

    async def start(self) -> None:
        """Start the runners, the scheduler and the sweeper.

        Raises:
            RuntimeError: called a second time.
        """
        if self._started:
            raise RuntimeError("Manager.start() called more than once")
        self._started = True
        try:
            driver = await self._storage()
        except BaseException:
            self._started = False  # nothing started: stop() has nothing to stop, start may retry
            raise
        self._loop = asyncio.get_running_loop()
        dequeue_slots = asyncio.Semaphore(self._dequeue_workers)
        self._workflow_runner = WorkflowRunner(
            driver,
            self._workflow_executors,
            poll_interval=self._workflow_poll,
            heartbeat_interval=self._heartbeat,
            claim_expiry=self._expiry,
            max_value_bytes=self._max_value_bytes,
            on_tasks_enqueued=self._wake_task_runners,
            on_workflow_complete=self._instance_finished,
            concurrency=self._workflow_workers,
            observer=self._observer,
        )
        for name, registration in self._task_registrations.items():
            self._task_runners[name] = TaskRunner(
                driver,
                name,
                registration.function,
                workers=registration.workers,
                timeout=registration.timeout,
                poll_interval=self._task_poll,
                poll_jitter=self._task_jitter,
                heartbeat_interval=self._heartbeat,
                task_expiry=self._expiry,
                dequeue_slots=dequeue_slots,
                max_value_bytes=self._max_value_bytes,
                on_task_finished=self._workflow_runner.wake,
                max_stray_threads=registration.max_strays,
                retry_policy=registration.retry_policy,
                observer=self._observer,
            )
        self._scheduler = WorkflowScheduler(
            driver,
            on_enqueued=self._workflow_runner.wake,
            max_wakeup_interval=self._max_wakeup,
            late_warning_threshold=self._late_threshold,
            observer=self._observer,
        )
        driver.add_wakeup_listener(self._on_driver_wakeup)
        driver.add_task_taker(self._promise_tasks)
        self._spawn(self._workflow_runner.run(), "workflows")
        for name, runner in self._task_runners.items():
            self._spawn(runner.run(), f"tasks-{name}")
        self._spawn(self._scheduler.run(), "scheduler")
        self._spawn(
            run_sweeper(driver, task_expiry=self._expiry, observer=self._observer), "sweeper"
        )
        # listed once start() returns; the loop keeps the row fresh (or retries)
        self._presence = WorkerPresence(
            driver,
            describe_this_process(
                self._workflow_executors, self._task_registrations, expiry=self._expiry
            ),
            interval=self._heartbeat,
        )
        registered = await self._presence.register()
        self._spawn(self._presence.run(registered=registered), "presence")
        logger.info(
            "manager started: %d workflow executor(s), %d task executor(s)",
            len(self._workflow_executors),
            len(self._task_registrations),
            extra={"event": "manager_started"},
        )

    def _spawn(self, coroutine: Any, name: str) -> None:
        job = asyncio.create_task(coroutine, name=f"cereal-{name}")
        job.add_done_callback(_log_crash)
        self._background.append(job)

    async def stop(self, *, grace_period: Duration | None = None) -> None:
        """Stop taking work, wait up to the grace period, then cancel what runs and hand it back.

        A task still running when the grace period ends is cancelled and
        queued again at once for any worker (no backoff, no attempt used);
        only a task handed back three times before is reported ``LOST``.
        :meth:`end_grace_period` ends the wait early. Idempotent; fine on a
        Manager that never started (it only releases the driver).
        Storage calls after ``stop()`` open the driver again; another ``stop()``
        releases it again.
        """
        if self._stopped:
            await self._release_driver()
            return
        self._stopped = True
        grace = (
            self._grace
            if grace_period is None
            else times.seconds(grace_period, name="grace_period")
        )
        if self._started:
            await self._stop_runners(grace)
            if self._presence is not None:
                await self._presence.unregister()
        await self._release_driver()

    @property
    def stop_grace_period(self) -> float:
        """Seconds :meth:`stop` waits for running tasks when called without ``grace_period``."""
        return self._grace

    def grace_period_left(self) -> float | None:
        """Seconds left of a stop's grace period; ``None`` unless a stop is waiting for it."""
        deadline = self._grace_deadline
        if deadline is None or self._loop is None:
            return None
        return max(0.0, deadline - self._loop.time())

    def end_grace_period(self) -> None:
        """End a stop's grace period now: what still runs is handed back at once.

        Call on the Manager's event loop; before or without a stop it makes
        the next stop hand back at once.
        """
        self._grace_cut.set()

    async def _release_driver(self) -> None:
        if self._initialised:
            self._driver.remove_wakeup_listener(self._on_driver_wakeup)
            self._driver.remove_task_taker(self._promise_tasks)
            self._initialised = False
            await self._driver.close()

    async def _stop_runners(self, grace: float) -> None:
        assert self._workflow_runner is not None
        logger.info(
            "manager stopping: grace period %g s", grace, extra={"event": "manager_stopping"}
        )
        self._workflow_runner.stop()
        if self._scheduler is not None:
            self._scheduler.stop()
        for runner in self._task_runners.values():
            runner.stop_claiming()
        workflow_jobs = [job for job in self._background if job.get_name() == "cereal-workflows"]
        # task runners end once a claim in flight returns (its tasks are abandoned, not
        # started); cancelling one mid-claim would leave that claim to the driver's undo
        claim_jobs = [job for job in self._background if job.get_name().startswith("cereal-tasks-")]
        others = [job for job in self._background if job not in workflow_jobs]
        loop = asyncio.get_running_loop()
        self._grace_deadline = deadline = loop.time() + grace
        grace_cut = loop.create_task(self._grace_cut.wait(), name="cereal-grace-cut")
        try:
            await wait_all_or(grace_cut, [*workflow_jobs, *claim_jobs], deadline)
            for runner in self._task_runners.values():
                await runner.wait_running(deadline, grace_cut)
        finally:
            grace_cut.cancel()
            self._grace_deadline = None
        for runner in self._task_runners.values():
            runner.end_grace()  # every runner first: none starts a waiting task from here on
        for runner in self._task_runners.values():
            await runner.abandon_running()
        for job in self._background:
            job.cancel()
        await asyncio.gather(*workflow_jobs, *others, return_exceptions=True)
        self._background.clear()
        logger.info("manager stopped", extra={"event": "manager_stopped"})

    async def __aenter__(self) -> Manager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- wakeups --------------------------------------------------------------------

    def _on_driver_wakeup(self, kind: WorkKind, name: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._dispatch_wakeup, kind, name)
        except RuntimeError:  # loop closing
            pass

    def _dispatch_wakeup(self, kind: WorkKind, name: str | None) -> None:
        if kind == "workflow" and self._workflow_runner is not None:
            self._workflow_runner.wake()
        elif kind == "task":
            if name is None:
                for runner in self._task_runners.values():
                    runner.wake()
            elif name in self._task_runners:
                self._task_runners[name].wake()
        elif kind == "schedule" and self._scheduler is not None:
            self._scheduler.trigger()

    def _promise_tasks(self, task_name: str, count: int) -> LocalPromise | None:
        """A local runner's promise to take ``count`` new ``task_name`` tasks (see TaskTaker)."""
        runner = self._task_runners.get(task_name)
        if runner is None or self._loop is None:
            return None
        try:
            on_own_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # called off any loop
            on_own_loop = False
        return runner.promise(count) if on_own_loop else None

    def _instance_finished(self, event: WorkflowEvent) -> None:
        self._instance_ended()
        if self._on_workflow_complete is not None:
            self._on_workflow_complete(event)

    def _wake_task_runners(self, names: set[str]) -> None:
        for name in names:
            runner = self._task_runners.get(name)
            if runner is not None:
                runner.wake()

    def wakeup_workflow_executor(self) -> None:
        """Make the workflow runner look for events now; safe from any thread."""
        self._on_driver_wakeup("workflow", None)

    def wakeup_task_poller(self, task_name: str) -> None:
        """Make the poller of ``task_name`` look for tasks now; safe from any thread."""
        self._on_driver_wakeup("task", task_name)

    # ---- workflow instances -----------------------------------------------------------

    async def enqueue_workflow(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: Any = None,
        *,
        connection: object | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
    ) -> EnqueuedWorkflow:
        """Start a new instance; returns which run the call stands for.

        With ``idempotency_key`` (a name's rules: 1-255 printable characters),
        a call repeating a key that started a run of ``workflow_name`` within
        the last 24 hours (:data:`~cereal.drivers.base.START_KEY_WINDOW`)
        starts nothing and returns that run (``created=False``, its
        instance name), whether it is live or finished: a client retrying a
        request it is unsure about starts one run. The key is recorded in the
        transaction that creates the run. Keys are per workflow name.

        With ``concurrency_key`` and ``concurrency_limit`` (1-10 000): of the
        live runs carrying the key (of any workflow name), at most the limit
        are started at once, across every process sharing the store. A run
        over the limit is created at once (its names are taken, it is listed,
        ``waiting_for_key``) but its events, a cancel's included, are not
        delivered until a started run of the key ends; then the oldest waiting
        run is started, in the same transaction. Runs sharing a key should
        share the limit (a waiting run starts when fewer than its own limit
        are started). A failed run requeued goes back under its key.

        With ``connection``, the instance is written on the caller's open
        transaction (the outbox pattern): it exists if and only if the caller
        commits, and workers are woken by that commit. cereal never commits
        or rolls back that transaction. The SQLite driver takes a
        ``sqlite3.Connection`` on its file, the PostgreSQL driver a psycopg
        ``AsyncConnection`` or ``Connection`` (a plain one runs in a thread)
        to its server, database and schema.

        Raises:
            WorkflowInstanceExistsError: an instance with these names is running
                (with a key: a key not seen within its window; it is not recorded).
            ValueError / TypeError: bad names or key, or parameters that are not
                JSON or too large.
            ValueError: ``idempotency_key`` or ``concurrency_key`` together with
                ``connection`` (not supported); a concurrency key without a limit,
                or a limit without a key, or out of 1-10 000.
            DriverError: the driver offers no idempotency keys.
            NotOfferedError: the driver (or server) offers no workflow concurrency keys.
            TypeError: ``connection`` is not of a type the driver takes (the
                memory driver takes none).
            ValueError: ``connection`` has no open transaction (autocommit) or
                reaches another store: for SQLite another database file, for
                PostgreSQL another server, database or schema (nothing is written).
        """
        validation.check_pair(workflow_name, instance_name)
        encoded = values.encode(
            parameters, where="enqueue_workflow", max_bytes=self._max_value_bytes
        )
        if idempotency_key is not None:
            check_start_key(idempotency_key)
            if connection is not None:
                raise ValueError("idempotency_key cannot be combined with connection=")
        validation.check_workflow_concurrency(
            concurrency_key, concurrency_limit, where="enqueue_workflow"
        )
        if concurrency_key is not None and connection is not None:
            raise ValueError("concurrency_key cannot be combined with connection=")
        run = _NewRun(
            workflow_name,
            instance_name,
            encoded,
            idempotency_key,
            None
            if concurrency_key is None or concurrency_limit is None
            else (concurrency_key, concurrency_limit),
        )
        driver = await self._storage()
        if self._observer is None:
            existing = await self._store_new_instance(driver, connection, run)
        else:
            with self._observer.enqueue(workflow_name, instance_name) as observed:
                existing = await self._store_new_instance(
                    driver,
                    connection,
                    run,
                    # an observer written before trace contexts may yield anything
                    getattr(observed, "traceparent", None),
                )
        if existing is not None:
            return EnqueuedWorkflow(workflow_name, existing, created=False)
        if connection is None:
            # with a connection nothing is visible until the caller commits: no wakeup
            self.wakeup_workflow_executor()
        return EnqueuedWorkflow(workflow_name, instance_name, created=True)

    @staticmethod
    async def _store_new_instance(
        driver: Driver,
        connection: object | None,
        run: _NewRun,
        traceparent: str | None = None,
    ) -> str | None:
        """Write the instance on the driver's own connection, or in the caller's transaction.

        ``traceparent`` (the enqueue's span, when traced) is stored with the run.
        It is passed only when there is one (and well formed), so a driver
        written before trace contexts keeps working untraced. Returns None
        when it was written, else (a start key within its window) the
        instance name the key started.
        """
        traced = traceparent if usable_traceparent(traceparent) else None
        # passed only when set: a driver written before these options keeps working
        extra = {} if traced is None else {"traceparent": traced}
        workflow_name, instance_name, parameters = (
            run.workflow_name,
            run.instance_name,
            run.parameters,
        )
        if run.concurrency is not None:
            key, limit = run.concurrency
            return await driver.enqueue_keyed_workflow(
                workflow_name,
                instance_name,
                parameters,
                key,
                limit,
                idempotency_key=run.idempotency_key,
                traceparent=traced,
            )
        if run.idempotency_key is not None:
            return await driver.enqueue_workflow_once(
                workflow_name, instance_name, parameters, run.idempotency_key, **extra
            )
        if connection is None:
            await driver.enqueue_workflow(workflow_name, instance_name, parameters, **extra)
        else:
            await driver.enqueue_workflow_in_transaction(
                connection, workflow_name, instance_name, parameters, **extra
            )
        return None

    async def cancel_workflow(self, workflow_name: str, instance_name: str) -> None:
        """Ask a running instance to cancel: its ``on_cancel`` decides what happens.

        Raises:
            WorkflowInstanceNotFoundError: no running instance with these names.
        """
        validation.check_pair(workflow_name, instance_name)
        driver = await self._storage()
        await driver.cancel_workflow(workflow_name, instance_name)
        self.wakeup_workflow_executor()

    async def kill_workflow(self, workflow_name: str, instance_name: str) -> None:
        """End a running instance at once with the error ``killed``; no callback runs.

        Raises:
            WorkflowInstanceNotFoundError: no running instance with these names.
        """
        validation.check_pair(workflow_name, instance_name)
        driver = await self._storage()
        await driver.kill_workflow(workflow_name, instance_name, KILLED)
        self._instance_ended()

    async def get_workflow_instance(
        self, workflow_name: str, instance_name: str
    ) -> ImmutableWorkflowInstance:
        """The running instance, else its newest finished run.

        Raises:
            WorkflowInstanceNotFoundError: never enqueued (or trimmed from history).
        """
        validation.check_pair(workflow_name, instance_name)
        driver = await self._storage()
        return ImmutableWorkflowInstance(
            await driver.get_workflow_instance(workflow_name, instance_name)
        )

    async def list_workflow_instances(
        self,
        *,
        workflow_name: str | None = None,
        instance_name: str | None = None,
        is_running: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[WorkflowInstanceData]:
        """One entry per (workflow, instance) pair, running or finished, filtered.

        Sorted by workflow name, then instance name; with ``newest_first``, by
        start time (the live run's, else the newest finished run's), newest
        first, then by names. ``offset`` skips that many entries and ``limit``
        (default: no limit) caps how many are returned, for reading a long
        listing a page at a time.

        Raises:
            TypeError: ``limit`` is not an int or None, ``offset`` not an int,
                or ``newest_first`` not a bool.
            ValueError: ``limit`` is below 1 or ``offset`` below 0.
        """
        if not isinstance(newest_first, bool):
            raise TypeError(f"newest_first must be a bool, got {type(newest_first).__name__}")
        if workflow_name is not None:
            name_checks.check_name(workflow_name, what="workflow name")
        if instance_name is not None:
            name_checks.check_name(instance_name, what="instance name")
        if is_running is not None and not isinstance(is_running, bool):
            raise TypeError(f"is_running must be a bool or None, got {type(is_running).__name__}")
        if limit is not None:
            validation.positive_int(limit, "limit")
        validation.non_negative_int(offset, "offset")
        driver = await self._storage()
        where = ListWorkflowFilter(
            workflow_name, instance_name, is_running, limit, offset, newest_first
        )
        return await driver.list_workflow_instances(where)

    async def list_instance_tasks(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[InstanceTask]:
        """The queued and running tasks of the live instance (empty once it has finished).

        Without ``limit`` and ``before``: all of them, oldest first. With
        either: one page, newest first, of the ``limit`` newest tasks enqueued
        before the task whose ``task_id`` is ``before`` (give the last
        ``task_id`` of a page to get the next, older page).

        Raises:
            ValueError: ``limit`` is below 1, or ``before`` is not a task id.
        """
        found: list[InstanceTask] = await self._read(
            "list_instance_tasks", workflow_name, instance_name, limit=limit, before=before
        )
        return found

    async def list_instance_events(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: int | None = None,
    ) -> list[InstanceEvent]:
        """The event history of the live instance, else of the newest finished run, oldest first.

        Handled events stay listed; those still waiting for a decision are
        marked ``pending``. Finished runs' histories are trimmed with them.
        With ``limit`` or ``before``: one page, newest first, of the ``limit``
        newest events whose ``seq`` is below ``before`` (give the last
        ``seq`` of a page to get the next, older page); no OFFSET scan, and
        events arriving meanwhile never shift the older pages.

        Raises:
            ValueError: ``limit`` is below 1 or ``before`` below 0.
        """
        found: list[InstanceEvent] = await self._read(
            "list_instance_events", workflow_name, instance_name, limit=limit, before=before
        )
        return found

    async def list_tasks(
        self, task_name: str, *, limit: int | None = None, before: str | None = None
    ) -> list[InstanceTask]:
        """The queued and running tasks named ``task_name``, of every live instance.

        Each names the instance that enqueued it. Without ``limit`` and
        ``before``: all of them, oldest first. With either: one page, newest
        first, of the ``limit`` newest such tasks enqueued before the task
        whose ``task_id`` is ``before`` (give the last ``task_id`` of a page
        to get the next, older page).

        Raises:
            ValueError: ``task_name`` is not a valid name, ``limit`` is below
                1, or ``before`` is not a task id.
        """
        found: list[InstanceTask] = await self._read(
            "list_tasks", task_name, limit=limit, before=before
        )
        return found

    async def list_dead_tasks(
        self,
        *,
        task_name: str | None = None,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[DeadTask]:
        """Dead letters: tasks whose last attempt failed or was lost, newest first.

        Each carries its error text, exception type and traceback, attempts,
        parameters and whether its run is still live (only then can it be
        requeued). Filter by ``task_name`` and/or ``workflow_name``; page with
        ``limit`` and ``before`` (the last ``task_id`` of the previous page).

        Raises:
            ValueError: a name is invalid, ``limit`` is below 1, or ``before``
                is not a task id.
        """
        found: list[DeadTask] = await self._read(
            "list_dead_tasks",
            task_name=task_name,
            workflow_name=workflow_name,
            limit=limit,
            before=before,
        )
        return found

    async def requeue_dead_tasks(self, task_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """Run dead tasks again: each becomes a new queued task of its live run, due now.

        The new task starts from attempt 0 under its executor's retry policy,
        and its result reaches the workflow's ``on_task_complete`` like any
        task's (the run's ``enqueued_tasks`` count grows by one). A dead task
        whose run has finished is left as it is (``run_finished``); start a
        new run instead. Requeueing is atomic in every store: a dead task is
        requeued at most once, however many callers race.

        Returns:
            Each given id with its :class:`~cereal.models.RequeueOutcome`.

        Raises:
            TypeError: ``task_ids`` is not a sequence of str.
            ValueError: it is empty, holds more than 1000 ids, or one is not
                a task id.
        """
        given = check_requeue_ids(task_ids)
        driver = await self._storage()
        return await driver.requeue_dead_tasks(given)

    async def list_failed_runs(
        self,
        *,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[FailedRun]:
        """Failed runs not requeued yet, newest first: each with its error and parameters.

        Those the history retention still keeps: runs whose decision failed,
        killed runs, cancelled runs whose ``on_cancel`` failed. Filter by
        ``workflow_name``; page with ``limit`` and ``before`` (the last
        ``run_id`` of the previous page).

        Raises:
            ValueError: the name is invalid, ``limit`` is below 1, or
                ``before`` is not a run id.
        """
        found: list[FailedRun] = await self._read(
            "list_failed_runs", workflow_name=workflow_name, limit=limit, before=before
        )
        return found

    async def trim_history(self, retention: HistoryRetention | None = None) -> int | None:
        """Trim finished runs now, as a sweep does: under ``retention``, else the driver's.

        The driver keeps its own retention for its sweeps; ``retention``
        applies to this call only (behind ``cereal serve``, the server keeps
        the last one it was sent, as for sweeps).

        Returns:
            The finished runs removed, or ``None`` when another process was
            trimming the store (this call then skipped it).

        Raises:
            TypeError: ``retention`` is not a HistoryRetention.
        """
        if retention is not None and not isinstance(retention, HistoryRetention):
            raise TypeError(f"retention must be a HistoryRetention, got {type(retention).__name__}")
        driver = await self._storage()
        return await driver.trim_history(retention or driver.retention)

    async def requeue_failed_runs(self, run_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """Start failed runs again: each a new run of its names, with its parameters.

        A failed run is requeued at most once (it then leaves
        :meth:`list_failed_runs`), atomically with the new run's start. While
        a run of the same names is live, nothing changes for that id
        (``run_live``).

        Returns:
            Each given id with its :class:`~cereal.models.RequeueOutcome`.

        Raises:
            TypeError: ``run_ids`` is not a sequence of str.
            ValueError: it is empty, holds more than 1000 ids, or one is not
                a run id.
        """
        given = check_requeue_ids(run_ids, "run id")
        driver = await self._storage()
        outcomes = await driver.requeue_failed_runs(given)
        if RequeueOutcome.REQUEUED in outcomes.values():
            self.wakeup_workflow_executor()
        return outcomes

    async def task_queue_stats(self) -> list[TaskQueueStats]:
        """Per task name with queued or running tasks: the counts and the oldest queued time."""
        found: list[TaskQueueStats] = await self._read("task_queue_stats")
        return found

    async def run_throughput(
        self, bucket_seconds: int, buckets: int, *, until: datetime | None = None
    ) -> list[ThroughputBucket]:
        """Finished runs per time bucket, completed and failed apart, oldest bucket first.

        What the dashboard's throughput chart draws. The answer holds exactly
        ``buckets`` entries of ``bucket_seconds`` each, empty ones counting
        zero, aligned to whole multiples of ``bucket_seconds`` since the epoch
        so repeated calls answer the same buckets; the last holds ``until``
        (default: now, by the store's clock). The store counts from its
        end-time indexes within the window, so the cost follows the runs that
        ended in it, not the whole history; runs the history retention has
        trimmed are no longer counted.

        Args:
            bucket_seconds: each bucket's length, 1 s to a week (e.g. 60).
            buckets: how many, 1 to 1000 (e.g. 60 for the last hour by minute);
                ``bucket_seconds * buckets`` is at most a year.
            until: an aware instant in the last bucket.

        Raises:
            TypeError: ``bucket_seconds`` or ``buckets`` is not an int, or
                ``until`` is not a datetime.
            ValueError: a value is out of range (the message names it), or
                ``until`` is naive.
        """
        end = None if until is None else times.to_utc(until, name="until").timestamp()
        found: list[ThroughputBucket] = await self._read(
            "run_throughput", bucket_seconds, buckets, until=end
        )
        return found

    async def list_start_keys(self, workflow_name: str, instance_name: str) -> list[StartKey]:
        """The idempotency keys that started runs of this instance name, newest first.

        A key is kept for 24 hours after the run it started was created
        (``cereal.drivers.base.START_KEY_WINDOW``), then trimmed with the
        history. Each key's ``created_at`` is its run's ``started_at``:
        ``cereal.models.key_that_started(keys, run.started_at)`` picks the
        key of one run (none for a run started without a key, even when an
        earlier run of the same names had one).

        Raises:
            ValueError / TypeError: a bad name.
        """
        found: list[StartKey] = await self._read("list_start_keys", workflow_name, instance_name)
        return found

    async def applied_retention(self) -> list[RetentionRule]:
        """The history retention the store's trims last applied, as its rules.

        Every sweep trims under its Manager's ``retention`` (and so does
        :meth:`trim_history`); the store records it when it differs from the
        one before, with the time. The store-wide rule comes first, then one
        per workflow name; empty until a trim has run.
        """
        found: list[RetentionRule] = await self._read("applied_retention")
        return found

    async def queue_depths(self) -> list[QueueDepth]:
        """The work ready now, per task name and per workflow name, with its oldest item's age.

        What the Prometheus queue gauges show (``cereal.metrics.render``).
        """
        found: list[QueueDepth] = await self._read("queue_depths")
        return found

    # ---- live workers ------------------------------------------------------------------

    async def list_workers(self) -> list[WorkerInfo]:
        """The live workers on this store: started Managers, here or in other processes.

        A Manager is listed from its ``start()`` until its ``stop()``; one that
        died without stopping drops out once its ``task_expiry`` has passed
        since its last heartbeat.
        """
        driver = await self._storage()
        return await driver.list_workers()

    # ---- schedules --------------------------------------------------------------------

    async def create_workflow_schedule(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: Any,
        recurrence: Any,
        *,
        enabled: bool = True,
        overlap: Overlap = "skip",
        catch_up_window: Duration = 0,
    ) -> None:
        """Enqueue (workflow_name, instance_name) with ``parameters`` whenever the RRULE fires.

        Args:
            workflow_name: the workflow each run starts.
            instance_name: the instance name of every run (one live run at a time).
            parameters: JSON value each run gets.
            recurrence: an RRULE string (optionally with DTSTART) or a dateutil ``rrule``.
            enabled: False creates it disabled.
            overlap: what a due run does while the instance is still live:
                ``skip`` (drop it, as in Go), ``buffer_one`` (start once the live
                one ends; at most one waits), ``cancel_other`` (cancel the live
                one, whose ``on_cancel`` decides, and start once it has ended) or
                ``terminate_other`` (kill the live one and start at once).
            catch_up_window: seconds or a timedelta; a due time missed while no
                Manager ran starts one run on restart if the rule had an
                occurrence within this window of now (0: never, as in Go).

        Raises:
            InvalidScheduleError: the rule does not parse or has no future occurrence.
            WorkflowScheduleExistsError: a schedule with these names exists.
            ValueError: an unknown ``overlap`` or a negative ``catch_up_window``.
        """
        validation.check_pair(workflow_name, instance_name)
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
        policy = check_overlap(overlap)
        window = times.seconds(catch_up_window, name="catch_up_window")
        encoded = values.encode(
            parameters, where="create_workflow_schedule", max_bytes=self._max_value_bytes
        )
        rule = validation.normalize_recurrence(recurrence)
        next_due = await validation.first_due(rule)
        driver = await self._storage()
        await driver.create_workflow_schedule(
            workflow_name,
            instance_name,
            encoded,
            enabled,
            rule,
            next_due,
            overlap=policy,
            catch_up_window=window,
        )
        self._trigger_scheduler()

    async def list_workflow_schedules(
        self, *, limit: int | None = None, offset: int = 0
    ) -> list[Schedule]:
        """Every schedule, sorted by workflow name, then instance name.

        ``offset`` skips that many schedules and ``limit`` (default: no limit)
        caps how many are returned, for reading a long listing a page at a time.

        Raises:
            TypeError: ``limit`` is not an int or None, or ``offset`` not an int.
            ValueError: ``limit`` is below 1 or ``offset`` below 0.
        """
        if limit is not None:
            validation.positive_int(limit, "limit")
        validation.non_negative_int(offset, "offset")
        driver = await self._storage()
        return await driver.list_workflow_schedules(limit=limit, offset=offset)

    async def get_workflow_schedule(self, workflow_name: str, instance_name: str) -> Schedule:
        """One schedule.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        validation.check_pair(workflow_name, instance_name)
        driver = await self._storage()
        return await driver.get_workflow_schedule(workflow_name, instance_name)

    async def update_workflow_schedule(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        enabled: bool | None = None,
        parameters: Any = UNSET,
        recurrence: Any = None,
        overlap: Overlap | None = None,
        catch_up_window: Duration | None = None,
    ) -> None:
        """Change a schedule; every given change commits atomically, or none does.

        ``overlap`` and ``catch_up_window`` are as for
        :meth:`create_workflow_schedule`; ``None`` leaves a setting unchanged.

        A new recurrence, or re-enabling a disabled schedule, recomputes the
        next due time from now; enabling an enabled schedule keeps it. The
        update is one atomic driver call: a change made meanwhile is not lost.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
            InvalidScheduleError: the new rule does not parse or never fires again.
            ValueError: an unknown ``overlap`` or a negative ``catch_up_window``.
        """
        validation.check_pair(workflow_name, instance_name)
        if enabled is not None and not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool or None, got {type(enabled).__name__}")
        policy = None if overlap is None else check_overlap(overlap)
        window = times.optional_seconds(catch_up_window, name="catch_up_window")
        encoded: bytes | Unset | None = UNSET
        if parameters is not UNSET:
            encoded = values.encode(
                parameters, where="update_workflow_schedule", max_bytes=self._max_value_bytes
            )
        rule = None if recurrence is None else validation.normalize_recurrence(recurrence)
        driver = await self._storage()
        next_due = None
        due_rule = None
        if rule is not None:
            next_due = await validation.first_due(rule)
        elif enabled:
            # Computed from the rule read now; the driver stores it only if the
            # schedule is still disabled with this rule when the update lands.
            due_rule = (await driver.get_workflow_schedule(workflow_name, instance_name)).recurrence
            next_due = await validation.first_due(due_rule)
        update = ScheduleUpdate(
            enabled=enabled,
            parameters=encoded,
            recurrence=rule,
            next_due_at=next_due,
            due_rule=due_rule,
            overlap=policy,
            catch_up_window=window,
        )
        await driver.update_workflow_schedule(workflow_name, instance_name, update)
        self._trigger_scheduler()

    async def delete_workflow_schedule(self, workflow_name: str, instance_name: str) -> None:
        """Remove a schedule; instances it started are untouched.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        validation.check_pair(workflow_name, instance_name)
        driver = await self._storage()
        await driver.delete_workflow_schedule(workflow_name, instance_name)

    async def trigger_workflow_schedule(self, workflow_name: str, instance_name: str) -> RunOutcome:
        """Run a schedule once now, under its overlap policy; its due time does not move.

        Works on a disabled schedule too, and before :meth:`start` (any
        started Manager then runs the instance).

        Returns:
            What happened: ``STARTED``, ``REPLACED`` (``terminate_other`` killed the
            live run), ``SKIPPED`` (``skip`` with a live run), ``BUFFERED`` or
            ``CANCELLING`` (the run waits for the live one to end).

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        validation.check_pair(workflow_name, instance_name)
        driver = await self._storage()
        outcome = await driver.trigger_workflow_schedule(
            workflow_name, instance_name, REPLACED_ERROR
        )
        if outcome in (RunOutcome.STARTED, RunOutcome.REPLACED, RunOutcome.CANCELLING):
            self.wakeup_workflow_executor()
        if outcome in (RunOutcome.BUFFERED, RunOutcome.CANCELLING):
            self._trigger_scheduler()  # its pass notes the waiting run and polls for its start
        return outcome

    def _trigger_scheduler(self) -> None:
        self._on_driver_wakeup("schedule", None)

    def _instance_ended(self) -> None:
        # A schedule may have a run waiting for this instance to end (buffer_one, cancel_other).
        scheduler = self._scheduler
        if scheduler is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(scheduler.instance_ended)


@dataclass(frozen=True)
class _NewRun:
    """What an enqueue stores: the names, parameters and the options of the start."""

    workflow_name: str
    instance_name: str
    parameters: bytes | None
    idempotency_key: str | None
    concurrency: tuple[str, int] | None
    """The workflow concurrency key and its limit."""


def _log_crash(job: asyncio.Task[None]) -> None:
    if not job.cancelled() and job.exception() is not None:
        logger.error("%s crashed", job.get_name(), exc_info=job.exception())
