"""``cereal serve`` owns its port: a second server on it fails with one line (no sharing)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from cereal.checks.ports import port_taken
from tests.system._cereal_process import cereal, live_cereal, one_error_line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_second_serve_on_a_taken_port_fails_with_one_line(tmp_path: Path) -> None:
    port = str(free_port())
    first_db = f"sqlite:///{tmp_path / 'first.db'}"
    with live_cereal("--db", first_db, "serve", "--port", port, cwd=tmp_path) as first:
        first.wait_for_line("listening")
        # Given a server on the port, when another is started on it
        second = cereal(
            "--db", f"sqlite:///{tmp_path / 'second.db'}", "serve", "--port", port, cwd=tmp_path
        )
        # Then it exits 1 with one line naming the port, and opened no store
        line = one_error_line(second)
        assert f"port {port} is already in use" in line
        assert not (tmp_path / "second.db").exists()
        # Ctrl+C ends the first with the shell's status for it, after a graceful stop
        first.process.send_signal(signal.SIGINT)
        status, stderr = first.finish()
    assert status == 130, stderr
    assert "cereal serve stopped after SIGINT" in stderr


def test_serve_stopped_by_sigterm_exits_0(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'term.db'}"
    with live_cereal("--db", db, "serve", "--port", "0", cwd=tmp_path) as server:
        server.wait_for_line("listening")
        server.process.send_signal(signal.SIGTERM)
        status, stderr = server.finish()
    assert status == 0, stderr
    assert "cereal serve stopped after SIGTERM" in stderr


def test_a_port_is_free_again_once_its_listener_closed() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        assert port_taken("127.0.0.1", port) is not None
    assert port_taken("127.0.0.1", port) is None
    assert port_taken("127.0.0.1", 0) is None  # any port: never taken
