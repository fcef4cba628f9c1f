"""``cereal dashboard`` as a real subprocess: serving, token from the environment, bad input."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import pytest

from tests._waiting import wait_until_sync

TIMEOUT = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREAL_")}
    env.update(NO_COLOR="1", COLUMNS="200", **extra)
    return env


def _status(url: str, data: bytes | None = None) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text: str = reply.read().decode()
        return text


@contextmanager
def dashboard(
    tmp_path: Path, *args: str, stop: signal.Signals = signal.SIGTERM, **env: str
) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cereal", "dashboard", "--port", str(port), *args],
        cwd=tmp_path,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_sync(
            lambda: process.poll() is not None or _status(base + "/instances") == 200,
            what="the dashboard answering",
            timeout=TIMEOUT,
        )
        assert process.poll() is None, process.communicate()
        yield base
    finally:
        process.send_signal(stop)
        _, err = process.communicate(timeout=TIMEOUT)
        # a graceful stop either way; Ctrl+C exits with the shell's status for it
        assert process.returncode == (130 if stop == signal.SIGINT else 0), err
        assert "cereal dashboard on http://127.0.0.1:" in err
        assert f"cereal dashboard stopped after {stop.name}" in err


def test_ctrl_c_stops_the_dashboard_with_status_130(tmp_path: Path) -> None:
    with dashboard(tmp_path, "--db", f"sqlite:///{tmp_path / 'c.db'}", stop=signal.SIGINT) as base:
        assert _status(base + "/instances") == 200


def test_a_taken_port_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cereal", "--db", f"sqlite:///{tmp_path / 'p.db'}",
             "dashboard", "--port", str(port)],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert lines == [
        f"error: cannot serve the dashboard on 127.0.0.1:{port}: port {port} is already in use"
    ]


def test_serves_the_given_database_read_only_without_a_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    with dashboard(tmp_path, "--db", url) as base:
        assert _status(base + "/schedules") == 200
        assert _status(base + "/actions/instance/kill/wf/x", data=b"") == 403
    assert (tmp_path / "dash.db").exists()


def test_the_token_may_come_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    with dashboard(tmp_path, "--db", url, CEREAL_DASHBOARD_TOKEN="from-env") as base:
        page = _page(base + "/login")
    assert 'id="login-form"' in page
    assert "read-only" not in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "nosuch://x"], "scheme"),
        (["--db", "sqlite:///x.db", "--token", "   "], "token must not be empty"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cereal", "dashboard", *args],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_templates_and_static_files_are_package_data() -> None:
    package = resources.files("cereal.dashboard")
    for name in ("base.html", "_instances.html", "_instance.html", "login.html"):
        assert package.joinpath("templates", name).is_file(), name
    htmx = package.joinpath("static", "htmx.min.js").read_text(encoding="utf-8")
    assert htmx.startswith("/*! htmx 2.") and "Zero-Clause BSD" in htmx.splitlines()[0]
    assert "Zero-Clause BSD" in package.joinpath("static", "htmx.LICENSE").read_text("utf-8")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_a_non_loopback_bind_without_a_token_is_refused(tmp_path: Path, host: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cereal", "dashboard", "--db", "sqlite:///x.db", "--host", host],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1, done.stderr
    assert f"refusing to serve the dashboard on {host!r} without a token" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_allowed_host_names_come_from_options_and_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    env = {"CEREAL_DASHBOARD_ALLOWED_HOSTS": "from-env.example"}
    with dashboard(tmp_path, "--db", url, **env) as base:
        assert _host_status(base, "from-env.example") == 200
        assert _host_status(base, "attacker.example") == 400
    with dashboard(
        tmp_path, "--db", url, "--allowed-host", "a.example", "--allowed-host", "b.example"
    ) as base:
        assert _host_status(base, "a.example") == 200
        assert _host_status(base, "b.example") == 200
        assert _host_status(base, "localhost") == 200
        assert _host_status(base, "attacker.example") == 400


def _host_status(base: str, name: str) -> int | None:
    port = base.rsplit(":", 1)[1]
    request = urllib.request.Request(base + "/instances", headers={"Host": f"{name}:{port}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
