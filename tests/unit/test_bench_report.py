"""The bench report: ratios against the peers and the issue's targets, from a result dict."""

from __future__ import annotations

from typing import Any

from bench import report, scale_out


def _result() -> dict[str, Any]:
    return {
        "mode": "full",
        "date": "2026-01-01T00:00:00Z",
        "postgres": {
            "drain": {"tasks_per_s": 600.0},
            "single": {"workflows_per_s": 150.0, "commits_per_workflow": 15.0},
            "pickup": {"on_start_p50_ms": 2.0, "task_start_p50_ms": 4.5, "task_start_p99_ms": 30.0},
        },
        "sqlite": {"drain": {"tasks_per_s": 300.0}},
        "peers": {"pgqueuer": {"drain_jobs_per_s": 6000.0, "pickup_p50_ms": 4.0}, "dbos": None},
        "errors": [],
    }


def test_ratios_divide_ours_by_the_peers() -> None:
    result = _result()
    report.evaluate(result)
    assert result["ratios"]["drain_vs_pgqueuer"] == 0.1
    assert result["ratios"]["single_vs_drain"] == 0.25
    assert result["ratios"]["pickup_task_p50_vs_pgqueuer"] == 1.125
    assert result["ratios"]["sqlite_drain_vs_postgres"] == 0.5


def test_targets_are_met_missed_or_unknown() -> None:
    result = _result()
    report.evaluate(result)
    targets = result["targets"]
    assert targets["drain_vs_pgqueuer"]["met"] is False
    assert targets["single_vs_drain"]["met"] is False  # 0.25 < 1/3
    assert targets["pickup_on_start_p50_vs_pgqueuer"]["met"] is True  # 0.5 <= 1.0
    assert targets["pickup_task_p50_vs_pgqueuer"]["met"] is True  # 1.125 <= 1.5
    assert targets["pickup_task_p99_ms"]["met"] is False  # 30 ms is not < 25 ms
    assert targets["sqlite_drain_vs_postgres"]["met"] is True  # exactly 1/2 meets >= 1/2
    assert targets["commits_per_workflow"]["met"] is False
    # no DBOS figures: the ratio and its target are unknown, not met or missed
    assert result["ratios"]["single_vs_dbos"] is None
    assert targets["single_vs_dbos"] == {"value": None, "target": ">= 8x DBOS", "met": None}


def test_table_puts_each_figure_beside_the_peer_and_the_verdict() -> None:
    result = _result()
    report.evaluate(result)
    row = next(line for line in report.table(result).splitlines() if "pgqueuer drain" in line)
    # PostgreSQL's and SQLite's figures, the peer's, then each store's ratio to it
    assert row == (
        "| (a) drain, tasks/s | 600 | 300 | pgqueuer drain | 6,000 | 0.1 | 0.05 "
        "| >= 1.0x pgqueuer: missed |"
    )


def test_scale_out_table_sets_ours_beside_pgqueuer_and_the_commit_ceiling() -> None:
    result = _result()
    result["postgres"]["drain"]["commits_per_s"] = 900.0
    result["scale_out"] = {
        "4": {"tasks_per_s": 1200.0, "commits_per_s": 1800.0},
        "8": {"error": "boom"},
    }
    result["peers"]["pgqueuer_scale"] = {"4": 8000.0, "8": 9000.0}
    result["peers"]["pgbench"] = {"commits_per_s_8_clients": 18000.0}
    rows = scale_out.table(result).splitlines()
    assert rows[2] == "| 2 | 600.0 | 6,000.0 | 0.100 | 900.0 | 0.050 |"
    assert rows[3] == "| 4 | 1,200.0 | 8,000.0 | 0.150 | 1,800.0 | 0.100 |"
    assert rows[4] == "| 8 | - | 9,000.0 | - | - | - |"
    assert rows[-1].endswith("18,000.0 commits/s")
