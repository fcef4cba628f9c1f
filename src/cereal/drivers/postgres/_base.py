"""Configuration, lifecycle and connection plumbing of the PostgreSQL driver.

The storage methods live in :mod:`.driver` (workflows and tasks) and
:mod:`._schedules`; this base holds what they share: the pool, the LISTEN
connection, connection checkout with a cheap liveness check, and wakeups.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from types import EllipsisType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from cereal import errors
from cereal.drivers.base import (
    DURABLE,
    MULTIPROCESS,
    RESUMABLE_LEASES,
    Driver,
    TaskCompleter,
    WorkKind,
)
from cereal.drivers.postgres._announce_window import AnnouncementWindow
from cereal.drivers.postgres._db import Conn, Row, fetch_one, looks_alive, translate
from cereal.drivers.postgres._group_commit import (
    GroupCommitter,
    Statement,
    Write,
    group_committer,
    run_completions_merged,
    run_decisions_merged,
    run_enqueues_merged,
)
from cereal.drivers.postgres._heartbeats import HeartbeatBatcher, heartbeat_batcher
from cereal.drivers.postgres._listen import NotificationListener, Wake, encode_note
from cereal.drivers.postgres._migrate import apply_migrations
from cereal.drivers.postgres._store_identity import StoreIdentity
from cereal.drivers.postgres._workflow_keys import WaitingKeysCursor, start_waiting_runs
from cereal.models import HistoryRetention, TaskData

logger = logging.getLogger(__name__)


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _parse_prepare_threshold(value: str) -> int | None:
    if value.strip().lower() in ("none", "off", "never"):
        return None
    return _check_prepare_threshold(int(value))


def _check_prepare_threshold(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"prepare_threshold must be None or an integer >= 0, got {value!r}")
    return value


def _check_listen_url(value: str) -> str:
    """A usable libpq URL or conninfo for the LISTEN connection (no cereal options in it)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("listen_url must be a non-empty PostgreSQL URL")
    conninfo, options = split_url_options(value)
    if options:
        raise ValueError(f"listen_url takes libpq options only, not {sorted(options)}")
    try:
        pg_conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"invalid listen_url: {exc}") from exc
    return conninfo


DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds a new connection may take (libpq's ``connect_timeout``) unless the URL sets it."""

DEFAULT_POOL_TIMEOUT = 10.0
"""Seconds to wait for a pooled connection (``pool_timeout``) unless set by URL or keyword."""

PSYCOPG_PREPARE_THRESHOLD = 5
"""psycopg's default: a statement is prepared on its 5th execution on a connection."""

COMPLETION_GATHER_WINDOW = 0.004
"""Seconds a busy process's completion group may wait for more completions (see Batcher)."""

_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "min_size": int,
    "max_size": int,
    "pool_timeout": float,
    "notify": _parse_bool,
    "prepare_threshold": _parse_prepare_threshold,
    "listen_url": _check_listen_url,
}


def split_url_options(url: str) -> tuple[str, dict[str, Any]]:
    """Separate cereal's own options from a URL's query (the rest is for libpq).

    Raises:
        ValueError: an option has a malformed value.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres") or not parts.query:
        return url, {}
    kept: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _URL_OPTIONS:
            try:
                options[key] = _URL_OPTIONS[key](value)
            except ValueError as exc:
                raise ValueError(f"bad value for {key!r} in the PostgreSQL URL: {exc}") from exc
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), options


def _connect_kwargs(given: dict[str, Any], prepare_threshold: int | None) -> dict[str, Any]:
    """The psycopg connect arguments for a conninfo (its own settings win).

    Without a ``connect_timeout`` psycopg waits 130 s for a server that
    accepts the connection but never answers; cereal's default is 10 s.
    """
    kwargs: dict[str, Any] = {"prepare_threshold": prepare_threshold}
    if "application_name" not in given:
        kwargs["application_name"] = "cereal"
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
    return kwargs


async def _ignore_notifications(conn: Conn) -> None:
    """Drop notifications a pooled connection happens to receive.

    Only the LISTEN connection should get any; but behind a transaction pooler
    the server session a misdirected LISTEN ran on is later lent to pooled
    connections, and psycopg would keep whatever they receive forever.
    """
    conn.add_notify_handler(lambda _: None)


def _prober(conninfo: str, kwargs: dict[str, Any]) -> Callable[[str], Awaitable[None]]:
    """Send a wakeup probe the way real announcements go: to the pool's URL.

    A short connection of its own, not a pooled one: a probe must never hold
    a connection a runner waits for (nor wait for one), and it runs only at
    start, after a reconnect and every few minutes.
    """

    async def send(payload: str) -> None:
        with translate("sending a wakeup probe"):
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, **kwargs)
            async with conn:
                await conn.execute("SELECT pg_notify('cereal_wakeup', %s)", (payload,))

    return send


class PostgresBase(Driver):
    """What every part of the PostgreSQL driver shares; see :class:`PostgresDriver`.

    The options for a transaction-pooling proxy (PgBouncer in ``pool_mode =
    transaction``, or a managed pooler), as keywords or URL query options:

    - ``listen_url``: a URL straight to the server (URL-encoded in the query)
      for the one LISTEN connection. A LISTEN made through such a proxy hears
      nothing; NOTIFY still goes through the pool. Default: the main URL.
    - ``prepare_threshold``: psycopg's: a statement is prepared server-side on
      its n-th execution on a connection; ``None`` (``none`` in the URL) never
      prepares. Default: psycopg's, 5. Set ``none`` behind a proxy that does
      not track prepared statements (PgBouncer before 1.21, or without
      ``max_prepared_statements``).

    The LISTEN connection checks that announcements reach it: at start, after
    a reconnect and every few minutes it sends itself a probe through the main
    URL (the pool's route).
    If a probe does not arrive, one WARNING (logger
    ``cereal.drivers.postgres._listen``) says so; polling carries the work.
    """

    default_task_poll_interval: float = 5.0
    """Seconds between task polls; NOTIFY wakes pollers sooner."""
    default_workflow_poll_interval: float = 5.0
    """Seconds between workflow-event polls; NOTIFY wakes pollers sooner."""
    capabilities: ClassVar[frozenset[str]] = frozenset({DURABLE, MULTIPROCESS, RESUMABLE_LEASES})
    """Durable and shared safely by many processes."""
    wakes_runners_of_new_tasks: ClassVar[bool] = True
    """Every decision group wakes this process for its ready tasks (``GroupFlush``)."""

    def __init__(
        self,
        url: str,
        *,
        retention: HistoryRetention | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        pool_timeout: float | None = None,
        notify: bool | None = None,
        listen_url: str | None = None,
        prepare_threshold: int | EllipsisType | None = ...,
    ) -> None:
        super().__init__(retention=retention)
        if not isinstance(url, str) or not url:
            raise ValueError("PostgresDriver needs a URL such as 'postgresql://user@host/db'")
        conninfo, from_url = split_url_options(url)
        self._conninfo = conninfo
        self._min_size: int = min_size if min_size is not None else from_url.get("min_size", 1)
        self._max_size: int = max_size if max_size is not None else from_url.get("max_size", 10)
        self._pool_timeout: float = (
            pool_timeout
            if pool_timeout is not None
            else from_url.get("pool_timeout", DEFAULT_POOL_TIMEOUT)
        )
        self._notify: bool = notify if notify is not None else from_url.get("notify", True)
        # LISTEN needs a session of its own: behind a transaction pooler it must go direct
        self._listen_conninfo: str = (
            _check_listen_url(listen_url)
            if listen_url is not None
            else from_url.get("listen_url", conninfo)
        )
        # ``...`` means "not given" (None is a value: never prepare, as in psycopg)
        self._prepare_threshold: int | None = (
            _check_prepare_threshold(prepare_threshold)
            if not isinstance(prepare_threshold, EllipsisType)
            else from_url.get("prepare_threshold", PSYCOPG_PREPARE_THRESHOLD)
        )
        if self._min_size < 0 or self._max_size < max(self._min_size, 1):
            raise ValueError("PostgresDriver needs 0 <= min_size <= max_size and max_size >= 1")
        try:
            given = pg_conninfo.conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"invalid PostgreSQL URL: {exc}") from exc
        self._connect_kwargs = _connect_kwargs(given, self._prepare_threshold)
        self._listen_kwargs = _connect_kwargs(
            pg_conninfo.conninfo_to_dict(self._listen_conninfo), self._prepare_threshold
        )
        self._display = " ".join(
            f"{key}={value}" for key, value in given.items() if key != "password"
        )
        self._sender = uuid.uuid4().hex[:16]
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._listener: NotificationListener | None = None
        self._listener_loop: asyncio.AbstractEventLoop | None = None
        # per event loop: their queues hold futures of that loop
        self._committers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, GroupCommitter]
        ] = weakref.WeakKeyDictionary()
        self._background: set[asyncio.Task[None]] = set()
        # the store this driver reaches, read at the first transactional enqueue
        self._store_identity: StoreIdentity | None = None
        # where this process's sweeps go on through keys with runs left waiting
        self._waiting_keys = WaitingKeysCursor()
        self._beaters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HeartbeatBatcher] = (
            weakref.WeakKeyDictionary()
        )
        # a burst of enqueues announced to other processes together, per loop
        self._windows: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AnnouncementWindow] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def dsn(self) -> str:
        """The libpq URL or conninfo this driver connects with (cereal's options removed)."""
        return self._conninfo

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._display!r})"

    # ---- lifecycle ---------------------------------------------------------------

    async def _connect(self) -> Conn:
        return await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, **self._connect_kwargs
        )

    async def migrate(self) -> list[str]:
        """Apply pending migrations now; returns the names applied.

        Raises:
            DriverError: the database is unreachable, or a migration check or
                step failed (nothing of a failed step is kept).
        """
        with translate("opening the database (connect, then migrate its schema)"):
            async with await self._connect() as conn:
                return await apply_migrations(conn)

    async def _open(self) -> None:
        await self.migrate()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True, **self._connect_kwargs},
            configure=_ignore_notifications,
            timeout=self._pool_timeout,
            name="cereal",
            open=False,
        )
        listener: NotificationListener | None = None
        try:
            with translate("opening the connection pool"):
                await pool.open(wait=True, timeout=self._pool_timeout)
            if self._notify:
                listener = NotificationListener(
                    self._listen_conninfo,
                    self._listen_kwargs,
                    self._sender,
                    self._wake,
                    probe=_prober(self._conninfo, self._connect_kwargs),
                )
                # LISTEN only while someone waits for wakeups (a running Manager):
                # every listening session pays a commit for each notification
                await listener.follow(lambda: self._has_wakeup_listeners)
        except BaseException:
            await pool.close()
            raise
        self._pool, self._listener = pool, listener
        self._listener_loop = asyncio.get_running_loop()

    async def _close(self) -> None:
        loop = asyncio.get_running_loop()
        for committer in self._committers.get(loop, {}).values():
            await committer.drain()  # writes already queued still commit
        beater = self._beaters.get(loop)
        if beater is not None:
            await beater.drain()
        window = self._windows.get(loop)
        if window is not None:
            window.flush()  # enqueues already committed are announced before the pool goes
        if self._background:  # claims given back after a cancel
            await asyncio.wait(set(self._background), timeout=self._pool_timeout)
        listener, self._listener = self._listener, None
        self._listener_loop = None
        pool, self._pool = self._pool, None
        self._store_identity = None  # a reopened driver may reach a recreated database
        if listener is not None:
            await listener.stop()
        if pool is not None:
            await pool.close()

    # ---- connections and wakeups (also used by the completers) ------------------

    def _require_pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise errors.DriverError("the PostgreSQL driver is not open; call init() first")
        return self._pool

    async def _acquire(self, pool: AsyncConnectionPool[Conn]) -> Conn:
        """A pooled connection that is not visibly dead (stale ones are dropped)."""
        for _ in range(self._max_size + 1):
            conn = await pool.getconn()
            if looks_alive(conn):
                return conn
            await conn.close()
            await pool.putconn(conn)
        return await pool.getconn()

    async def _release(self, pool: AsyncConnectionPool[Conn], conn: Conn) -> None:
        """Roll back any open transaction and return ``conn`` to ``pool``.

        A connection that cannot roll back is closed (the pool replaces it);
        that failure is not raised, since whatever used the connection has
        already raised or finished.
        """
        try:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.rollback()
        except Exception as exc:
            logger.debug("dropping a connection that failed to roll back: %s", exc)
            await conn.close()
        except BaseException:
            await conn.close()
            raise
        finally:
            await pool.putconn(conn)

    @contextlib.asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Conn]:
        """A pooled autocommit connection for one operation; errors translated."""
        with translate(what):
            pool = self._require_pool()
            conn = await self._acquire(pool)
            try:
                yield conn
            finally:
                await self._release(pool, conn)

    async def _group_commit(
        self,
        order: int,
        statements: Sequence[Statement],
        *,
        announce: Sequence[Wake] = (),
        kind: str = "decision",
    ) -> list[Row | None]:
        """Run ``statements`` in a transaction shared with other writes (see ``_group_commit``).

        Task completions (``kind="completion"``), decisions
        (``kind="decision"``) and new runs (``kind="enqueue"``) are each merged
        into one set-based statement per group; releases of claims
        (``kind="release"``) share a transaction.
        The kinds commit separately, each locking instances in id order, so
        none can wait for another in a cycle.
        """
        loop = asyncio.get_running_loop()
        committers = self._committers.get(loop)
        if committers is None:
            committers = self._committers[loop] = {
                "decision": group_committer(self, claiming=run_decisions_merged),
                "completion": group_committer(
                    self, run_completions_merged, gather_window=COMPLETION_GATHER_WINDOW
                ),
                "release": group_committer(self),
                "enqueue": group_committer(self, run_enqueues_merged),
            }
        return await committers[kind].run(Write(order, statements, announce))

    @abc.abstractmethod
    def _leased_task(self, row: Row) -> tuple[TaskData, TaskCompleter]:
        """The task and completer of a row a claim returned (``PostgresDriver``'s)."""

    @abc.abstractmethod
    async def _unclaim(self, task_name: str, lease: uuid.UUID) -> None:
        """Queue a claim's tasks again by its lease token (``PostgresDriver``'s)."""

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run clean-up work without making the caller wait (kept until it ends)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def _heartbeats(self) -> HeartbeatBatcher:
        """This event loop's lease heartbeat batcher."""
        loop = asyncio.get_running_loop()
        beater = self._beaters.get(loop)
        if beater is None:
            beater = self._beaters[loop] = heartbeat_batcher(self)
        return beater

    @property
    def _announce_window(self) -> AnnouncementWindow:
        """This event loop's window for announcing new runs to other processes."""
        loop = asyncio.get_running_loop()
        window = self._windows.get(loop)
        if window is None:
            window = self._windows[loop] = AnnouncementWindow(self._announce_together)
        return window

    def _announce_together(self, wakes: list[Wake]) -> None:
        """NOTIFY other processes of ``wakes`` in the background, in one notification."""
        note = self._note(wakes)
        if note is not None and self._pool is not None:
            self._in_background(self._send_note(note))

    def _note(self, wakes: Sequence[Wake]) -> str | None:
        """The NOTIFY payload announcing ``wakes`` (None: nothing to send)."""
        if not self._notify or not wakes:
            return None
        return encode_note(self._sender, wakes)

    def _wakeup_listeners_changed(self) -> None:
        """Start LISTEN when the first wakeup listener comes, stop it when the last goes."""
        listener, loop = self._listener, self._listener_loop
        if listener is None or loop is None or loop.is_closed():
            return

        def follow() -> None:
            self._in_background(listener.follow(lambda: self._has_wakeup_listeners))

        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            follow()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(follow)

    def announce_elsewhere(self, kind: WorkKind, name: str | None) -> None:
        """NOTIFY other processes of ready work in the background (see the base class)."""
        self._announce_together([(kind, name)])

    async def _send_note(self, note: str) -> None:
        try:
            async with self._connection("announcing work to other processes") as conn:
                await fetch_one(conn, "notify", {"note": note})
        except errors.DriverError as exc:  # other processes still poll
            logger.warning("could not announce work to other processes: %s", exc)

    async def _start_runs_behind(self, keys: Sequence[str]) -> None:
        """After a waiting keyed run was killed (and committed): start the runs behind it.

        Not in the kill's transaction, which holds the killed row that a start
        of the key, holding the key's lock, may be waiting for. Best effort:
        the sweep starts them if this fails.
        """
        if not keys:
            return
        try:
            async with self._connection("starting waiting runs") as conn, conn.transaction():
                started = await start_waiting_runs(conn, list(keys))
        except errors.DriverError as exc:
            logger.warning("could not start the runs waiting behind a killed run: %s", exc)
            return
        wakes: list[tuple[WorkKind, str | None]] = [
            ("workflow", name) for name in dict.fromkeys(started)
        ]
        note = self._note(wakes)
        if note is not None:
            await self._send_note(note)
        self._wake_all(wakes)

    def _wake_all(self, wakes: Iterable[tuple[WorkKind, str | None]]) -> None:
        for kind, name in dict.fromkeys(wakes):
            self._wake(kind, name)
