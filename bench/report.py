"""Ratios against the peers, the issue's targets, and the table, chart and JSON line."""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("cereal.bench.report")

Result = dict[str, Any]


def _get(result: Result, *path: str) -> float | None:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# ours vs a peer: name -> ((scenario, figure) of ours, the peer's path); each is
# computed for PostgreSQL under its name and for SQLite under "sqlite_" + name
PEER_RATIOS: dict[str, tuple[tuple[str, str], tuple[str, ...]]] = {
    "drain_vs_pgqueuer": (("drain", "tasks_per_s"), ("peers", "pgqueuer", "drain_jobs_per_s")),
    "drain_vs_procrastinate": (
        ("drain", "tasks_per_s"),
        ("peers", "procrastinate", "drain_jobs_per_s"),
    ),
    "single_vs_dbos": (("single", "workflows_per_s"), ("peers", "dbos", "workflows_per_s")),
    "pickup_on_start_p50_vs_pgqueuer": (
        ("pickup", "on_start_p50_ms"),
        ("peers", "pgqueuer", "pickup_p50_ms"),
    ),
    "pickup_task_p50_vs_pgqueuer": (
        ("pickup", "task_start_p50_ms"),
        ("peers", "pgqueuer", "pickup_p50_ms"),
    ),
    "pickup_task_p95_vs_pgqueuer": (
        ("pickup", "task_start_p95_ms"),
        ("peers", "pgqueuer", "pickup_p95_ms"),
    ),
    "pickup_task_p99_vs_pgqueuer": (
        ("pickup", "task_start_p99_ms"),
        ("peers", "pgqueuer", "pickup_p99_ms"),
    ),
    "pickup_task_p50_vs_dbos": (("pickup", "task_start_p50_ms"), ("peers", "dbos", "step_p50_ms")),
}

# name -> (numerator path, denominator path); every key is always in the JSON (null when unknown)
RATIOS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    **{name: (("postgres", *ours), peer) for name, (ours, peer) in PEER_RATIOS.items()},
    **{f"sqlite_{name}": (("sqlite", *ours), peer) for name, (ours, peer) in PEER_RATIOS.items()},
    "single_vs_drain": (
        ("postgres", "single", "workflows_per_s"),
        ("postgres", "drain", "tasks_per_s"),
    ),
    "sqlite_single_vs_drain": (
        ("sqlite", "single", "workflows_per_s"),
        ("sqlite", "drain", "tasks_per_s"),
    ),
    "backlog_large_vs_small": (
        ("postgres", "backlog", "large_tasks_per_s"),
        ("postgres", "backlog", "small_tasks_per_s"),
    ),
    "sqlite_backlog_large_vs_small": (
        ("sqlite", "backlog", "large_tasks_per_s"),
        ("sqlite", "backlog", "small_tasks_per_s"),
    ),
    "commits_vs_dbos": (
        ("postgres", "single", "commits_per_workflow"),
        ("peers", "dbos", "commits_per_workflow"),
    ),
    "sqlite_drain_vs_postgres": (
        ("sqlite", "drain", "tasks_per_s"),
        ("postgres", "drain", "tasks_per_s"),
    ),
    # every task with a concurrency key (limit never binding) against none, same run
    "keyed_drain_vs_drain": (
        ("postgres", "drain_keyed", "tasks_per_s"),
        ("postgres", "drain", "tasks_per_s"),
    ),
    "sqlite_keyed_drain_vs_drain": (
        ("sqlite", "drain_keyed", "tasks_per_s"),
        ("sqlite", "drain", "tasks_per_s"),
    ),
    "keyed_single_vs_single": (
        ("postgres", "single_keyed", "workflows_per_s"),
        ("postgres", "single", "workflows_per_s"),
    ),
    "sqlite_keyed_single_vs_single": (
        ("sqlite", "single_keyed", "workflows_per_s"),
        ("sqlite", "single", "workflows_per_s"),
    ),
}

_GE: Callable[[float, float], bool] = operator.ge
_LE: Callable[[float, float], bool] = operator.le
_LT: Callable[[float, float], bool] = operator.lt

# name -> (where the value is, comparison, bound, how it reads) from issue 8 "Targets"
TARGETS: dict[str, tuple[tuple[str, ...], Callable[[float, float], bool], float, str]] = {
    "drain_vs_pgqueuer": (("ratios", "drain_vs_pgqueuer"), _GE, 1.0, ">= 1.0x pgqueuer"),
    "single_vs_drain": (("ratios", "single_vs_drain"), _GE, 1 / 3, ">= 1/3 of (a)"),
    "single_vs_dbos": (("ratios", "single_vs_dbos"), _GE, 8.0, ">= 8x DBOS"),
    "pickup_on_start_p50_vs_pgqueuer": (
        ("ratios", "pickup_on_start_p50_vs_pgqueuer"),
        _LE,
        1.0,
        "<= 1.0x pgqueuer p50",
    ),
    "pickup_task_p50_vs_pgqueuer": (
        ("ratios", "pickup_task_p50_vs_pgqueuer"),
        _LE,
        1.5,
        "<= 1.5x pgqueuer p50",
    ),
    "pickup_task_p99_ms": (("postgres", "pickup", "task_start_p99_ms"), _LT, 25.0, "< 25 ms"),
    "fanout_commit_s": (("postgres", "fanout_commit", "commit_s"), _LT, 0.5, "< 0.5 s"),
    "backlog_large_vs_small": (("ratios", "backlog_large_vs_small"), _GE, 0.8, ">= 0.8x"),
    "idle_cpu_percent": (("postgres", "idle", "cpu_percent"), _LT, 1.0, "< 1 % of a core"),
    "idle_rss_mb": (("postgres", "idle", "rss_mb"), _LT, 80.0, "< 80 MB"),
    "commits_per_workflow": (("postgres", "single", "commits_per_workflow"), _LE, 3.0, "<= 3"),
    "sqlite_drain_vs_postgres": (
        ("ratios", "sqlite_drain_vs_postgres"),
        _GE,
        0.5,
        ">= 1/2 of PostgreSQL",
    ),
    "sqlite_pickup_task_p99_ms": (("sqlite", "pickup", "task_start_p99_ms"), _LT, 25.0, "< 25 ms"),
}


def evaluate(result: Result) -> None:
    """Fill ``result["ratios"]`` and ``result["targets"]`` from the figures."""
    result["ratios"] = {
        name: _ratio(_get(result, *num), _get(result, *den)) for name, (num, den) in RATIOS.items()
    }
    targets: dict[str, Any] = {}
    for name, (path, compare, bound, text) in TARGETS.items():
        value = _get(result, *path)
        met = None if value is None else bool(compare(value, bound))
        targets[name] = {"value": value, "target": text, "met": met}
    result["targets"] = targets


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}".rstrip("0").rstrip(".")


# (label, (scenario, figure) of ours on both stores, peer label, peer path, ratio key);
# the SQLite ratio is "sqlite_" + the key; labels are formatted with the sizes
ROWS: list[tuple[str, tuple[str, str], str, tuple[str, ...], str]] = [
    (
        "(a) drain, tasks/s",
        ("drain", "tasks_per_s"),
        "pgqueuer drain",
        ("peers", "pgqueuer", "drain_jobs_per_s"),
        "drain_vs_pgqueuer",
    ),
    (
        "(a) drain, tasks/s",
        ("drain", "tasks_per_s"),
        "procrastinate drain",
        ("peers", "procrastinate", "drain_jobs_per_s"),
        "drain_vs_procrastinate",
    ),
    ("(a) worker CPU ms per task", ("drain", "worker_cpu_ms_per_task"), "", (), ""),
    (
        "(a') keyed drain, tasks/s (100 keys, at most 4 each)",
        ("drain_keyed", "tasks_per_s"),
        "",
        (),
        "",
    ),
    ("(a) PostgreSQL backends' CPU ms per task", ("drain", "db_cpu_ms_per_task"), "", (), ""),
    (
        "(b) single-task workflows/s",
        ("single", "workflows_per_s"),
        "DBOS workflows/s",
        ("peers", "dbos", "workflows_per_s"),
        "single_vs_dbos",
    ),
    (
        "(b') keyed single-task workflows/s (100 workflow keys, at most 4 each)",
        ("single_keyed", "workflows_per_s"),
        "",
        (),
        "keyed_single_vs_single",
    ),
    ("(b) start->complete p50 ms", ("single", "complete_p50_ms"), "", (), ""),
    ("(b) start->complete p99 ms", ("single", "complete_p99_ms"), "", (), ""),
    (
        "(c) ->on_start p50 ms",
        ("pickup", "on_start_p50_ms"),
        "pgqueuer pickup p50",
        ("peers", "pgqueuer", "pickup_p50_ms"),
        "pickup_on_start_p50_vs_pgqueuer",
    ),
    (
        "(c) ->task start p50 ms",
        ("pickup", "task_start_p50_ms"),
        "pgqueuer pickup p50",
        ("peers", "pgqueuer", "pickup_p50_ms"),
        "pickup_task_p50_vs_pgqueuer",
    ),
    (
        "(c) ->task start p95 ms",
        ("pickup", "task_start_p95_ms"),
        "pgqueuer pickup p95",
        ("peers", "pgqueuer", "pickup_p95_ms"),
        "pickup_task_p95_vs_pgqueuer",
    ),
    (
        "(c) ->task start p99 ms",
        ("pickup", "task_start_p99_ms"),
        "pgqueuer pickup p99",
        ("peers", "pgqueuer", "pickup_p99_ms"),
        "pickup_task_p99_vs_pgqueuer",
    ),
    (
        "(c) ->task start p50 ms",
        ("pickup", "task_start_p50_ms"),
        "DBOS step p50",
        ("peers", "dbos", "step_p50_ms"),
        "pickup_task_p50_vs_dbos",
    ),
    ("(d) fan-out commit of {fanout_tasks:,} tasks, s", ("fanout_commit", "commit_s"), "", (), ""),
    (
        "(e) drain with {backlog_small:,} queued, tasks/s",
        ("backlog", "small_tasks_per_s"),
        "",
        (),
        "",
    ),
    (
        "(e) drain with {backlog_large:,} queued, tasks/s (ratio: vs {backlog_small:,})",
        ("backlog", "large_tasks_per_s"),
        "",
        (),
        "backlog_large_vs_small",
    ),
    ("(f) idle CPU % of a core", ("idle", "cpu_percent"), "", (), ""),
    ("(f) idle RSS MB", ("idle", "rss_mb"), "", (), ""),
    (
        "(g) commits per workflow",
        ("single", "commits_per_workflow"),
        "DBOS commits/workflow",
        ("peers", "dbos", "commits_per_workflow"),
        "commits_vs_dbos",
    ),
    (
        "pgbench commit ceiling /s",
        ("", ""),
        "pgbench 8 clients",
        ("peers", "pgbench", "commits_per_s_8_clients"),
        "",
    ),
]

_TARGET_OF_RATIO = {
    "drain_vs_pgqueuer": "drain_vs_pgqueuer",
    "single_vs_dbos": "single_vs_dbos",
    "pickup_on_start_p50_vs_pgqueuer": "pickup_on_start_p50_vs_pgqueuer",
    "pickup_task_p50_vs_pgqueuer": "pickup_task_p50_vs_pgqueuer",
    "backlog_large_vs_small": "backlog_large_vs_small",
}


class _Sizes(dict[str, Any]):
    """Scenario sizes for row labels; a size the result lacks shows as "nan"."""

    def __missing__(self, key: str) -> float:
        return float("nan")


def _verdict(target: dict[str, Any] | None) -> str:
    if target is None:
        return ""
    met = {True: "met", False: "missed", None: "n/a"}[target["met"]]
    return f"{target['target']}: {met}"


STORES = ("postgres", "sqlite")


def table(result: Result) -> str:
    """The markdown table: each figure beside the peer's, the ratio, and its target."""
    lines = [
        "| figure | cereal PostgreSQL | cereal SQLite | peer | peer value"
        " | ratio PostgreSQL | ratio SQLite | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    targets = result["targets"]
    ratios = result["ratios"]
    for label, (scenario, figure), peer, peer_path, ratio in ROWS:
        target = targets.get(_TARGET_OF_RATIO.get(ratio, ""))
        ours = [_get(result, kind, scenario, figure) if scenario else None for kind in STORES]
        theirs = _get(result, *peer_path) if peer_path else None
        pair = [ratios.get(ratio), ratios.get(f"sqlite_{ratio}")] if ratio else [None, None]
        shown = label.format_map(_Sizes(result.get("sizes", {})))
        lines.append(
            f"| {shown} | {_fmt(ours[0])} | {_fmt(ours[1])} | {peer} "
            f"| {_fmt(theirs) if peer else ''} "
            f"| {_fmt(pair[0]) if ratio else ''} | {_fmt(pair[1]) if ratio else ''} "
            f"| {_verdict(target)} |"
        )
    lines += ["", "| target | value | bound | verdict |", "|---|---|---|---|"]
    for name, target in targets.items():
        verdict = {True: "met", False: "missed", None: "n/a"}[target["met"]]
        lines.append(f"| {name} | {_fmt(target['value'])} | {target['target']} | {verdict} |")
    return "\n".join(lines)


# throughput bars of the chart: ours beside the peers'
THROUGHPUT: list[tuple[str, tuple[str, ...]]] = [
    ("cereal PG drain tasks/s", ("postgres", "drain", "tasks_per_s")),
    ("cereal SQLite drain tasks/s", ("sqlite", "drain", "tasks_per_s")),
    ("pgqueuer drain jobs/s", ("peers", "pgqueuer", "drain_jobs_per_s")),
    ("procrastinate drain jobs/s", ("peers", "procrastinate", "drain_jobs_per_s")),
    ("cereal PG workflows/s", ("postgres", "single", "workflows_per_s")),
    ("cereal SQLite workflows/s", ("sqlite", "single", "workflows_per_s")),
    ("DBOS workflows/s", ("peers", "dbos", "workflows_per_s")),
    ("pgbench commits/s (8 clients)", ("peers", "pgbench", "commits_per_s_8_clients")),
]


def chart(result: Result, path: Path) -> bool:
    """A PNG of the ratios against their targets; False when matplotlib is not installed."""
    try:
        # only in .venv-bench; the quick bench runs without it
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    names = [n for n, t in result["targets"].items() if t["value"] is not None]
    values = [result["targets"][n]["value"] for n in names]
    bounds = [TARGETS[n][2] for n in names]
    colours = ["tab:green" if result["targets"][n]["met"] else "tab:red" for n in names]
    rates = [(label, _get(result, *path)) for label, path in THROUGHPUT]
    rates = [(label, value) for label, value in rates if value is not None]
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(9, 0.4 * (len(names) + len(rates)) + 3),
        height_ratios=[len(rates) + 1, len(names) + 1],
    )
    top.barh([r[0] for r in rates], [r[1] for r in rates], color="tab:blue")
    top.set_xscale("log")
    top.set_xlim(left=1)  # bars start at 1/s, so their lengths compare on the log scale
    top.set_xlabel("per second (log scale)")
    top.set_title(f"cereal bench ({result['mode']}, {result['date']})")
    bottom.barh(
        names, [v / b if b else 0 for v, b in zip(values, bounds, strict=True)], color=colours
    )
    bottom.axvline(1.0, color="black", linewidth=1)
    bottom.set_xscale("log")
    bottom.set_xlabel("value / target bound (1 = on the bound; green = met)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write(result: Result, results_dir: Path) -> tuple[Path, Path | None]:
    """Write the markdown table and the chart; their paths (chart None without matplotlib)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{result['mode']}-{result['date'].replace(':', '')}"
    md = results_dir / f"{stem}.md"
    md.write_text(f"# cereal bench, {result['mode']} run, {result['date']}\n\n{table(result)}\n")
    png = results_dir / f"{stem}.png"
    return md, png if chart(result, png) else None


def json_line(result: Result) -> str:
    """The single-line JSON object printed last."""
    return json.dumps(result, sort_keys=True)
