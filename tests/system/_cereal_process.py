"""Run the real ``cereal`` command in subprocesses: to the end, or live with stderr by line."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

COMMAND_TIMEOUT = 90


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CEREAL_DATABASE_URL", None)
    env.pop("COLUMNS", None)
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def cereal(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m cereal ARGS`` to the end; stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "cereal", *args],
        cwd=cwd,
        env=cli_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The only stderr line of a failed command (exit 1), which starts with ``error:``."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


def default_sigint() -> None:
    """In a child before exec: Ctrl+C at its default, whatever the test run inherited.

    A run started in the background of a shell without job control has
    SIGINT ignored, and the ignore would pass to every command, which then
    could not be interrupted the way a terminal's Ctrl+C interrupts it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LiveProcess:
    """A running command whose stderr is read line by line (stdout collected at the end)."""

    def __init__(self, args: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=cli_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_sigint,
        )
        self.stderr_lines: list[str] = []
        self.stdout = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stdout_chunks: list[str] = []
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self._stdout_chunks.append(self.process.stdout.read())

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for_line(self, needle: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """The first new stderr line containing ``needle`` (fails if the stream ends first)."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no stderr line with {needle!r} within {timeout:g} s: {self.stderr_lines}"
                ) from None
            if line is None:
                raise AssertionError(f"stderr ended without {needle!r}: {self.stderr_lines}")
            self.stderr_lines.append(line)
            if needle in line:
                return line

    def finish(self, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
        """Wait for the exit, at most ``timeout`` s; returns the exit status and all stderr."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout:g} s; stderr so far: {self.stderr_lines}"
            ) from None
        self._stdout_reader.join(timeout=timeout)
        self.stdout = "".join(self._stdout_chunks)
        self._reader.join(timeout=timeout)
        while (line := self._lines.get_nowait()) is not None:
            self.stderr_lines.append(line)
        return self.process.returncode, "\n".join(self.stderr_lines)

    def close(self) -> None:
        """Kill the process if it still runs and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join()
        self._stdout_reader.join()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def live_cereal(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> Iterator[LiveProcess]:
    """``python -m cereal ARGS`` running in the background; killed if still running at the end."""
    live = LiveProcess([sys.executable, "-m", "cereal", *args], cwd, env)
    try:
        yield live
    finally:
        live.close()


class SilentServer:
    """A TCP port that accepts connections and never sends a byte (a hung server).

    ``accepted`` is set once a client has connected, so a test knows the
    client is now waiting for an answer that will not come.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.accepted = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._socket.accept()
            except OSError:  # closed
                return
            self._clients.append(client)
            self.accepted.set()

    def close(self) -> None:
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._socket.close()
        for client in self._clients:
            client.close()
