"""``cereal serve`` keeps the retention it was started with for its own sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cereal.models import HistoryRetention, WorkflowRetention
from cereal.wire.domain_names import DEFAULT_DOMAIN
from tests.system._cereal_process import cereal, one_error_line


def test_each_domain_store_takes_the_servers_retention(
    tmp_path: Path, grpc_server_factory: Any
) -> None:
    retention = HistoryRetention(
        max_rows=500, margin_rows=0, per_workflow={"reports": WorkflowRetention(max_runs=3)}
    )
    server = grpc_server_factory(f"sqlite:///{tmp_path / 's.db'}", retention=retention)
    domain = server._server._domains._domains[DEFAULT_DOMAIN]
    assert domain.driver.retention == retention


def test_a_bad_retention_option_is_one_error_line(tmp_path: Path) -> None:
    done = cereal(
        "--db",
        f"sqlite:///{tmp_path / 's.db'}",
        "serve",
        "--port",
        "0",
        "--keep-runs",
        "x",
        cwd=tmp_path,
    )
    assert one_error_line(done) == "error: --keep-runs takes WORKFLOW=NUMBER, got 'x'"
