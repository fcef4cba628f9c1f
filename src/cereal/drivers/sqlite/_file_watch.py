"""Learn of other processes' commits to a SQLite file as they happen (Linux inotify).

A commit writes the database's write-ahead log (``<file>-wal``; in rollback
journal modes, the file itself) with ``write(2)``, which inotify reports on
the directory holding it. :class:`FileWatch` blocks a small thread on those
reports and calls back on each burst, so an idle process reads
``PRAGMA data_version`` only when something was written, instead of every
``wakeup_interval``: idle CPU falls to nothing and a foreign commit is seen at
once. Our own commits are reported too; the version check tells them apart.

Elsewhere (another system, a file system without inotify, no watch
descriptor left) :func:`watch_database` answers ``None`` and the connection
polls as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import struct
import sys
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class FileWatch:
    """A thread calling ``on_write`` when the watched files of one directory are written."""

    def __init__(self, fd: int, names: frozenset[bytes], on_write: Callable[[], None]) -> None:
        self._fd = fd
        self._names = names
        self._on_write = on_write
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="cereal-sqlite-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and release the descriptors (idempotent)."""
        if self._wake_w < 0:
            return
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        for fd in (self._fd, self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_w = -1

    def _run(self) -> None:
        while True:
            try:
                readable, _, _ = select.select([self._fd, self._wake_r], [], [])
                if self._wake_r in readable:
                    return
                written = self._written(os.read(self._fd, 65536))
            except BlockingIOError:
                continue  # nothing to read after all
            except OSError:
                logger.debug("SQLite file watch stopped", exc_info=True)
                return
            if written:
                try:
                    self._on_write()
                except Exception:  # a failing callback must not end the watch
                    logger.exception("SQLite file watch callback failed")

    def _written(self, data: bytes) -> bool:
        """Whether a batch of inotify events names one of the watched files."""
        offset = 0
        found = False
        while offset + _EVENT.size <= len(data):
            _, _, _, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start : start + length].rstrip(b"\0")
            found = found or name in self._names
            offset = start + length
        return found


def watch_database(path: str, on_write: Callable[[], None]) -> FileWatch | None:
    """Watch the SQLite file at ``path`` (and its ``-wal``) for writes; ``None`` if unavailable."""
    if not sys.platform.startswith("linux") or not os.path.isfile(path):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    except (OSError, AttributeError):
        return None
    if fd < 0:
        logger.debug("inotify_init1 failed: errno %d", ctypes.get_errno())
        return None
    directory = os.path.dirname(os.path.abspath(path)).encode()
    mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
    if int(libc.inotify_add_watch(fd, directory, mask)) < 0:
        logger.debug("inotify_add_watch failed: errno %d", ctypes.get_errno())
        os.close(fd)
        return None
    base = os.path.basename(path).encode()
    return FileWatch(fd, frozenset({base, base + b"-wal"}), on_write)
