"""(h) Scale-out on PostgreSQL: the drain with more worker processes, beside pgqueuer's.

A user who outgrows one host adds worker hosts on the same PostgreSQL. This
runs (a)'s drain with 4 and 8 worker processes (8 task workers each; the
2-process figure is (a) itself) and pgqueuer's drain with the same process
counts, and reports the database's commits per second during our drain as a
fraction of pgbench's commit ceiling (8 clients) measured in the same run:
throughput should grow with processes until either the machine's cores or
that ceiling stop it. Full mode only (it needs the peers and pgbench).
"""

from __future__ import annotations

import logging
from typing import Any

from bench import peers, scenarios, stores

log = logging.getLogger("cereal.bench")

PROCESSES = (4, 8)
"""Worker process counts beyond (a)'s two."""


async def run(store: stores.PostgresStore, sizes: scenarios.Sizes) -> dict[str, Any]:
    """Our drain at each process count, by count (as text, for the JSON line)."""
    out: dict[str, Any] = {}
    for count in PROCESSES:
        url = store.fresh(f"scale{count}")
        log.info("postgres: scale-out drain with %d processes ...", count)
        try:
            out[str(count)] = await scenarios.drain(url, sizes, url, processes=count)
        except Exception as exc:  # one failed count must not hide the others
            log.exception("scale-out with %d processes failed", count)
            out[str(count)] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def peer(dsn: str, jobs: int) -> dict[str, Any]:
    """pgqueuer's drain at each process count, jobs/s by count."""
    return {str(count): peers.queue_drain("pgqueuer", dsn, jobs, count) for count in PROCESSES}


def table(result: dict[str, Any]) -> str:
    """Throughput by worker processes, ours beside pgqueuer's, and the commit ceiling's share."""
    ceiling = ((result.get("peers") or {}).get("pgbench") or {}).get("commits_per_s_8_clients")
    ours = {"2": (result.get("postgres") or {}).get("drain") or {}}
    ours.update(result.get("scale_out") or {})
    theirs = {"2": ((result.get("peers") or {}).get("pgqueuer") or {}).get("drain_jobs_per_s")}
    theirs.update((result.get("peers") or {}).get("pgqueuer_scale") or {})
    lines = [
        "| (h) worker processes x 8 | cereal PG tasks/s | pgqueuer jobs/s | ratio"
        " | cereal commits/s | share of pgbench ceiling |",
        "|---|---|---|---|---|---|",
    ]
    for count in ("2", *map(str, PROCESSES)):
        figures = ours.get(count) or {}
        rate, commits, peer_rate = (
            figures.get("tasks_per_s"),
            figures.get("commits_per_s"),
            theirs.get(count),
        )
        lines.append(
            f"| {count} | {_show(rate)} | {_show(peer_rate)} | {_share(rate, peer_rate)}"
            f" | {_show(commits)} | {_share(commits, ceiling)} |"
        )
    lines.append(f"\npgbench commit ceiling (8 clients, same run): {_show(ceiling)} commits/s")
    return "\n".join(lines)


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _share(part: float | None, whole: float | None) -> str:
    return "-" if part is None or not whole else f"{part / whole:.3f}"
