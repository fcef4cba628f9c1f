"""A private PostgreSQL cluster made with ``initdb``/``pg_ctl``: for tests and the crash suite.

The cluster lives in a temp dir on a free loopback port and is removed by
:meth:`ThrowawayCluster.stop`. As root it runs as the ``postgres`` user (via
``runuser``), since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile


def find_binaries() -> tuple[str, str] | None:
    """``(initdb, pg_ctl)`` from PATH or ``/usr/lib/postgresql/*/bin``, else None."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayCluster:
    """A private cluster in a temp dir, started on creation; ``stop()`` removes it.

    ``fsync=off``: a crash here is the server's processes dying (``restart``
    with ``-m immediate``), never the host losing power, so the OS keeps every
    write and WAL recovery replays it; ``synchronous_commit`` stays on.
    """

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self._pg_ctl = pg_ctl
        self._prefix: list[str] = []
        owner = None
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                owner = None
            if runuser is None or owner is None:
                raise RuntimeError("running as root without a 'postgres' user and runuser")
            self._prefix = [runuser, "-u", "postgres", "--"]
        self.root = tempfile.mkdtemp(prefix="cereal-pg-")
        self.data = os.path.join(self.root, "data")
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        self._run(
            [initdb, "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]
        )
        self._options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl_run("start")
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, command: list[str]) -> None:
        subprocess.run(
            self._prefix + command, check=True, capture_output=True, text=True, timeout=120
        )

    def _pg_ctl_run(self, action: str, *extra: str) -> None:
        self._run(
            [
                *(self._pg_ctl, "-D", self.data, "-o", self._options),
                *("-l", f"{self.root}/log", *extra, "-w", action),
            ]
        )

    def crash_restart(self) -> None:
        """Kill the server as a crash would (``-m immediate``: no checkpoint), start it again.

        It comes back through WAL recovery, on the same port.
        """
        self._pg_ctl_run("restart", "-m", "immediate")

    def stop(self) -> None:
        """Stop the server at once and remove its directory."""
        with contextlib.suppress(Exception):
            self._run([self._pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)
