"""Who may call: token, TLS (server and client certificates), and the bind rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cereal import errors
from cereal.server import CerealServer, ServeOptions
from tests.grpc._certs import Authority

TOKEN = "s3cret-token"
FAST_FAIL = {"connect_timeout": 3.0}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'served.db'}"


async def test_calls_without_the_right_token_are_refused(
    db_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(db_url, token=TOKEN)
    with pytest.raises(errors.DriverError, match="UNAUTHENTICATED"):
        await open_client(server.url(), **FAST_FAIL)
    with pytest.raises(errors.DriverError, match="UNAUTHENTICATED"):
        await open_client(server.url(token="wrong"), **FAST_FAIL)
    allowed = await open_client(server.url(token=TOKEN))
    await allowed.enqueue_workflow("wf", "inst", None)
    assert (await allowed.get_workflow_instance("wf", "inst")).is_running()


async def test_tls_with_the_servers_ca_works_and_another_ca_is_refused(
    tmp_path: Path, db_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    authority, stranger = Authority(tmp_path, "ca"), Authority(tmp_path, "other-ca")
    cert = authority.issue("server", server=True)
    server = grpc_server_factory(db_url, tls_cert=cert.cert, tls_key=cert.key)

    trusted = await open_client(server.url(ca=authority.pem.cert))
    await trusted.enqueue_workflow("wf", "inst", None)
    with pytest.raises(errors.DriverError, match="not reachable"):
        await open_client(server.url(ca=stranger.pem.cert), **FAST_FAIL)
    with pytest.raises(errors.DriverError, match="not reachable"):
        await open_client(server.url(), **FAST_FAIL)  # plaintext to a TLS server


async def test_required_client_certificates(
    tmp_path: Path, db_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    authority, stranger = Authority(tmp_path, "ca"), Authority(tmp_path, "other-ca")
    cert = authority.issue("server", server=True)
    server = grpc_server_factory(
        db_url, tls_cert=cert.cert, tls_key=cert.key, tls_client_ca=authority.pem.cert
    )
    good, bad = authority.issue("client", server=False), stranger.issue("intruder", server=False)

    client = await open_client(server.url(ca=authority.pem.cert, cert=good.cert, key=good.key))
    await client.enqueue_workflow("wf", "inst", None)
    with pytest.raises(errors.DriverError, match="not reachable"):
        await open_client(server.url(ca=authority.pem.cert), **FAST_FAIL)
    with pytest.raises(errors.DriverError, match="not reachable"):
        await open_client(
            server.url(ca=authority.pem.cert, cert=bad.cert, key=bad.key), **FAST_FAIL
        )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_a_non_loopback_bind_needs_a_token_or_insecure(db_url: str, host: str) -> None:
    with pytest.raises(ValueError, match="without a token"):
        CerealServer(db_url, ServeOptions(host=host))
    CerealServer(db_url, ServeOptions(host=host, token=TOKEN))  # allowed (not started)
    CerealServer(db_url, ServeOptions(host=host, insecure=True))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.3.2.1"])
def test_a_loopback_bind_needs_no_token(db_url: str, host: str) -> None:
    CerealServer(db_url, ServeOptions(host=host))


def test_tls_options_are_checked(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both --tls-cert and --tls-key"):
        CerealServer(db_url, ServeOptions(tls_cert=str(tmp_path / "x.crt")))
    with pytest.raises(ValueError, match="cannot read the TLS key"):
        CerealServer(
            db_url, ServeOptions(tls_cert=str(tmp_path / "x.crt"), tls_key=str(tmp_path / "no"))
        )


def test_cereal_serve_refuses_a_public_bind_without_token(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CEREAL_SERVE_TOKEN"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cereal",
            "--db",
            db_url,
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode != 0
    assert "without a token" in done.stderr


def test_cereal_serve_refuses_a_store_it_cannot_serve() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cereal", "--db", "memory://", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "needs a durable store" in done.stderr
