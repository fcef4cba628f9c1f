"""One SQLite connection on a dedicated thread, driven from asyncio through futures.

Every statement of a :class:`~cereal.drivers.sqlite.SQLiteDriver` runs on
this thread, one job at a time, so the event loop never blocks on SQLite
(``busy_timeout`` waits included) and a job's transaction never interleaves
with another job's. A job is a plain function of the connection; the helpers
wrap it in ``BEGIN IMMEDIATE`` (writes) or ``BEGIN`` (consistent reads),
retry when another process holds the write lock for longer than
``busy_timeout``, and translate ``sqlite3`` errors into
:class:`~cereal.errors.DriverError`.

Plain writes (no ``ready`` pre-check) queue on a
:class:`~cereal.drivers._batching.Batcher` on the event loop instead, and
each group of them runs as one job: one ``BEGIN IMMEDIATE`` transaction, so
one fsync, for every write queued while the previous group ran.

Between jobs the thread also watches ``PRAGMA data_version``, which changes
when *another* connection (another process, or another driver object in this
one) commits; the driver turns a change into wakeups. Our own commits do not
change it, so a process never wakes itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, LiteralString, TypeVar

from cereal import errors
from cereal.drivers._batching import Batcher, Failed
from cereal.drivers.sqlite._wal_index import WalIndexWatch

logger = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
Mode = Literal["write", "read", "auto"]

_BEGIN: dict[Mode, LiteralString] = {"write": "BEGIN IMMEDIATE", "read": "BEGIN DEFERRED"}
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

# Durability: FULL syncs the WAL on every commit, so an acknowledged enqueue or
# decision survives power loss, like PostgreSQL's default synchronous_commit=on.
# NORMAL is faster and still never corrupts the file, but a power cut may lose
# the last commits; it is offered as an option for those who accept that.
SYNCHRONOUS: dict[str, LiteralString] = {
    "FULL": "PRAGMA synchronous = FULL",
    "NORMAL": "PRAGMA synchronous = NORMAL",
    "EXTRA": "PRAGMA synchronous = EXTRA",
}


@dataclass(frozen=True)
class Settings:
    """How to open and drive the connection."""

    path: str
    busy_timeout: float
    synchronous: str
    attempts: int
    watch_interval: float

    @classmethod
    def parse(
        cls,
        path: str,
        *,
        busy_timeout: object,
        busy_retries: object,
        synchronous: object,
        wakeup_interval: object,
    ) -> Settings:
        """Check the driver's options (numbers may be strings from a URL query).

        Raises:
            ValueError: an option is out of range or not a number.
        """
        sync = str(synchronous).upper()
        if sync not in SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}"
            )
        retries = number(busy_retries, "busy_retries")
        if retries != int(retries):
            raise ValueError(f"busy_retries must be a whole number, got {busy_retries!r}")
        return cls(
            path=path,
            busy_timeout=number(busy_timeout, "busy_timeout"),
            synchronous=sync,
            attempts=int(retries) + 1,
            watch_interval=number(wakeup_interval, "wakeup_interval"),
        )


def number(value: object, name: str) -> float:
    """A finite option >= 0 given as a number or a numeric string (from a URL query).

    Raises:
        ValueError: ``value`` is not such a number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        result = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not 0 <= result < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return result


class _Stop:
    """Marks the end of the job queue."""


@dataclass
class _Job:
    fn: Callable[[], Any]
    future: concurrent.futures.Future[Any]


MAX_GROUP = 64
"""Most queued writes committed together in one transaction (one fsync)."""

WRITE_GATHER_WINDOW = 0.004
"""Seconds a busy process's group of writes may wait for more (one fsync per group; see Batcher)."""

UNWATCHED_INTERVAL = 1.0
"""Seconds between ``data_version`` reads while no Manager listens (baseline only)."""

VERSION_READ_AT_LEAST = 1.0
"""Seconds between ``data_version`` reads, at most, when the WAL-index header did not change."""

QUIET_AFTER = 2.0
"""Seconds without another process's commit after which the watch slows down (see below)."""

QUIET_FACTOR = 4
"""How much longer the watch waits between checks once quiet (10 ms -> 40 ms by default)."""


def watch_interval(base: float, quiet_for: float) -> float:
    """Seconds until the next check for other processes' commits.

    ``base`` (the driver's ``wakeup_interval``) while another process committed
    in the last :data:`QUIET_AFTER` seconds, else :data:`QUIET_FACTOR` times
    longer: an idle process wakes a quarter as often, and the first commit
    seen brings it back to ``base`` at once.
    """
    return base if quiet_for < QUIET_AFTER else base * QUIET_FACTOR


def is_busy(exc: sqlite3.Error) -> bool:
    """True when ``exc`` means another connection holds a lock we waited for."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(exc)
    return "database is locked" in text or "database table is locked" in text


class Connection:
    """A SQLite connection owned by one thread; ``call`` runs a job on it.

    Args:
        settings: path, pragmas and retry policy.
        watching: says whether anyone listens for foreign commits right now.
        on_foreign_change: called on the thread when another connection committed.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        watching: Callable[[], bool],
        on_foreign_change: Callable[[], None],
    ) -> None:
        self.settings = settings
        self._watching = watching
        self._on_foreign_change = on_foreign_change
        self._jobs: queue.SimpleQueue[_Job | _Stop] = queue.SimpleQueue()
        self._stopped = False  # no job is queued after the stop marker (it would never run)
        self._queueing = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # the data_version last read on the thread (the first as the connection opens)
        self._last_version: int | None = None
        # the WAL-index header, looked at before each data_version read (None: no map)
        self._wal_index: WalIndexWatch | None = None
        # when data_version must be read whatever the header says (monotonic seconds)
        self._version_due = 0.0
        # per event loop: their queues hold futures of that loop
        self._batchers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Batcher[Job[Any], Any]
        ] = weakref.WeakKeyDictionary()
        self._thread = threading.Thread(
            target=self._serve, name=f"cereal-sqlite {settings.path}", daemon=True
        )

    # ---- lifecycle (event loop side) ---------------------------------------------

    async def start(self) -> str:
        """Start the thread and open the connection; returns the journal mode in effect.

        Raises:
            DriverError: the file cannot be opened or configured.
        """
        self._thread.start()
        try:
            return await asyncio.wrap_future(self._submit(self._connect))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Finish queued jobs and writes, close the connection and end the thread.

        Writes still queued on another event loop's batcher fail with
        :class:`~cereal.errors.DriverError` when their group comes.
        """
        if not self._thread.is_alive():
            return
        batcher = self._batchers.get(asyncio.get_running_loop())
        if batcher is not None:
            await batcher.drain()  # writes already queued still commit
        done = self._submit(self._disconnect)
        with self._queueing:
            self._stopped = True
            self._jobs.put(_Stop())
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(done)
        self._thread.join(timeout=5.0)  # the thread is past its last job: returns at once

    # ---- running jobs (event loop side) --------------------------------------------

    async def call(
        self,
        fn: Job[T],
        *,
        mode: Mode = "write",
        ready: Callable[[sqlite3.Connection], bool] | None = None,
        empty: T | None = None,
        undo: Callable[[Any], Job[object]] | None = None,
    ) -> T:
        """Run ``fn`` on the connection thread and return its result.

        A plain write (``mode="write"``, no ``ready``, no ``undo``) shares its
        transaction with the plain writes queued beside it (see
        :meth:`_commit_group`); cancelled before its group starts, it never runs.

        Args:
            fn: the job; it receives the connection.
            mode: ``"write"`` runs it in ``BEGIN IMMEDIATE``, ``"read"`` in a
                deferred transaction (one snapshot), ``"auto"`` bare (the job
                manages transactions itself and must be safe to re-run).
            ready: a cheap autocommit read run first; when it says False the
                write lock is never taken and ``empty`` is returned.
            empty: the result when ``ready`` says there is nothing to do.
            undo: when the caller is cancelled after ``fn`` committed a claim
                (a result other than ``None`` or empty), the job built by
                ``undo(result)`` runs to give back what was claimed.

        Raises:
            DriverError: SQLite failed, or the lock stayed busy past every retry.
        """
        if mode == "write" and ready is None and undo is None:
            # a plain write: it may share a transaction with others
            result: T = await self._batcher().run(fn)
            return result

        def job() -> T:
            conn = self._require()
            if ready is not None and not self._with_retries(conn, ready, "auto"):
                return empty  # type: ignore[return-value]
            return self._with_retries(conn, fn, mode)

        future = self._submit(job)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if undo is not None:
                future.add_done_callback(lambda done: self._undo_after_cancel(done, undo))
            raise

    def _undo_after_cancel(
        self, done: concurrent.futures.Future[T], undo: Callable[[Any], Job[object]]
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        result = done.result()
        if result is None or result == []:
            return
        compensate = undo(result)
        self._submit(lambda: self._with_retries(self._require(), compensate, "write"))

    def _submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn`` for the thread (any thread may call this); its future.

        After :meth:`stop` the future fails at once: the thread would never run it.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._queueing:
            if not self._stopped:
                self._jobs.put(_Job(fn, future))
                return future
        future.set_exception(
            errors.DriverError(f"SQLite database {self.settings.path!r} is closed")
        )
        return future

    # ---- group commit -------------------------------------------------------------------

    def _batcher(self) -> Batcher[Job[Any], Any]:
        """This event loop's queue of plain writes."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = Batcher(
                self._commit_writes,
                name="cereal-sqlite-writes",
                max_group=MAX_GROUP,
                # cancelled before its group is taken, a write never runs (as a job
                # still queued for the thread never did)
                withdraw_cancelled=True,
                gather_window=WRITE_GATHER_WINDOW,
            )
        return batcher

    async def _commit_writes(self, group: Sequence[Job[Any]]) -> list[Any]:
        """Run a group of plain writes on the thread as one job (the batcher's flush)."""
        writes = list(group)
        return await asyncio.wrap_future(self._submit(lambda: self._commit_group(writes)))

    # ---- the thread -------------------------------------------------------------------

    def _serve(self) -> None:
        base = self.settings.watch_interval
        next_check = time.monotonic() + base
        last_foreign = time.monotonic()  # when another process's commit was last seen
        while True:
            try:
                item = self._jobs.get(timeout=max(0.0, next_check - time.monotonic()))
            except queue.Empty:
                item = None
            if isinstance(item, _Stop):
                return
            if item is not None:
                self._execute(item)
            if time.monotonic() < next_check:
                continue
            watching = self._watching()
            now = time.monotonic()
            # Unwatched, the baseline is still kept (rarely): a listener that arrives
            # while this thread is busy then compares against a version read before it
            # came, so a foreign commit made just after it arrived is never taken for
            # the baseline and missed.
            interval = watch_interval(base, now - last_foreign)
            next_check = now + (interval if watching else UNWATCHED_INTERVAL)
            if self._conn is None or (watching and not self._may_have_changed()):
                continue
            try:
                version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                self._version_due = 0.0  # the header moved on: read data_version next time
                logger.debug("PRAGMA data_version failed", exc_info=True)
                continue
            self._version_due = time.monotonic() + VERSION_READ_AT_LEAST
            if watching and self._last_version is not None and version != self._last_version:
                last_foreign = time.monotonic()
                next_check = last_foreign + base
                self._on_foreign_change()
            self._last_version = version

    def _may_have_changed(self) -> bool:
        """Whether ``data_version`` is worth a read.

        It is when the WAL-index header says a commit happened since the last
        look, when there is no header to look at, or when the last read is a
        second old (the header is a shortcut; the version is the authority).
        """
        watch = self._wal_index
        if watch is None:
            return True
        if time.monotonic() >= self._version_due:
            watch.reopen_if_replaced()
            watch.changed()  # the look is taken before the read, never after it
            return True
        return watch.changed()

    def _commit_group(self, group: list[Job[Any]]) -> list[Any]:
        """Commit a group of plain writes in one transaction; each one's result.

        Group commit: with ``synchronous=FULL`` every commit is an fsync, the
        cost that bounds SQLite's throughput, so writes that queued up while
        the previous group ran share one. Each write runs in its own
        savepoint: one that raises is rolled back alone and only its caller
        sees the error (:class:`~cereal.drivers._batching.Failed`).

        Raises:
            sqlite3.Error: the transaction failed as a whole (busy past every
                retry): every write of the group fails.
        """
        conn = self._require()
        if len(group) == 1:
            return [self._with_retries(conn, group[0], "write")]
        outcomes: list[Any] = []

        def run_all(conn: sqlite3.Connection) -> None:
            outcomes.clear()  # a busy retry runs the whole group again
            for write in group:
                conn.execute("SAVEPOINT cereal_write")
                try:
                    outcomes.append(write(conn))
                except Exception as exc:
                    if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                        raise  # the whole transaction waits and runs again
                    conn.execute("ROLLBACK TO cereal_write")
                    error = self._driver_error(exc) if isinstance(exc, sqlite3.Error) else exc
                    outcomes.append(Failed(error))
                conn.execute("RELEASE cereal_write")

        self._with_retries(conn, run_all, "write")
        return outcomes

    def _execute(self, job: _Job) -> None:
        """Run a job unless its caller cancelled it first, and resolve its future."""
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.fn()
        except sqlite3.Error as exc:
            job.future.set_exception(self._driver_error(exc))
        except BaseException as exc:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise errors.DriverError(f"SQLite database {self.settings.path!r} is not connected")
        return self._conn

    def _with_retries(self, conn: sqlite3.Connection, fn: Job[T], mode: Mode) -> T:
        """Run ``fn`` (in a transaction unless ``mode`` is auto), retrying while busy.

        SQLite's own busy handler backs off to 100 ms sleeps, so under steady
        contention a waiting process keeps waking up to find the lock taken
        again and can starve for seconds (long enough to lose a task lease).
        We wait here instead, polling every 0.5-2 ms with jitter, for up to
        ``busy_timeout`` per attempt.
        """
        settings = self.settings
        attempt = 1
        deadline = time.monotonic() + settings.busy_timeout
        while True:
            try:
                if mode == "auto":
                    return fn(conn)
                return _in_transaction(conn, fn, _BEGIN[mode])
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if time.monotonic() < deadline:
                    time.sleep(random.uniform(0.0005, 0.002))
                    continue
                if attempt == settings.attempts:
                    raise errors.DriverError(
                        f"SQLite database {settings.path!r} stayed locked: another "
                        f"connection held it for longer than busy_timeout="
                        f"{settings.busy_timeout:g}s on each of {attempt} attempts; "
                        "raise busy_timeout or reduce write contention"
                    ) from exc
                logger.warning(
                    "SQLite database %s busy for %gs (attempt %d of %d); retrying",
                    settings.path,
                    settings.busy_timeout,
                    attempt,
                    settings.attempts,
                )
                attempt += 1
                deadline = time.monotonic() + settings.busy_timeout

    def _driver_error(self, exc: sqlite3.Error) -> errors.DriverError:
        error = errors.DriverError(f"SQLite error on {self.settings.path!r}: {exc}")
        error.__cause__ = exc
        return error

    def _connect(self) -> str:
        settings = self.settings
        try:
            conn = sqlite3.connect(
                settings.path,
                timeout=0,  # no SQLite busy handler: _with_retries waits (see there)
                isolation_level=None,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise errors.DriverError(
                f"cannot open SQLite database {settings.path!r}: {exc}"
            ) from exc
        try:
            conn.row_factory = sqlite3.Row
            # switching to WAL needs a moment of exclusive access: retry like any busy write
            mode = self._with_retries(conn, _enable_wal, "auto")
            conn.execute(SYNCHRONOUS[settings.synchronous])
        except BaseException:
            conn.close()
            raise
        if mode != "wal" and settings.path != ":memory:":
            logger.warning(
                "SQLite database %s runs in journal mode %r, not WAL; readers will block "
                "writers (is it on a network filesystem?)",
                settings.path,
                mode,
            )
        self._conn = conn
        # the first data_version, read now: a foreign commit made before the first
        # poll is then seen as a change, not taken for the baseline
        self._last_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if mode == "wal" and settings.path != ":memory:":
            # opened after that first read, so the first poll reads data_version
            # whatever the header says (_version_due is 0): a commit between the
            # two is not lost
            self._wal_index = WalIndexWatch.open(settings.path)
        return mode

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        watch, self._wal_index = self._wal_index, None
        if watch is not None:
            watch.close()
        if conn is not None:
            conn.close()


def _enable_wal(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()


def _in_transaction(conn: sqlite3.Connection, fn: Job[T], begin: LiteralString) -> T:
    conn.execute(begin)
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return result
