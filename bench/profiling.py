"""``bench/run.py --profile``: the drain (a) with py-spy recording each worker process.

Each worker runs under ``py-spy record --format speedscope`` (py-spy starts
it, so no ptrace permission over unrelated processes is needed). From the
recordings this writes, under ``bench/results/profile-<time>/``:

- ``<store>-worker<i>.speedscope.json``: open in https://www.speedscope.app/;
- ``<store>-worker<i>.folded``: collapsed stacks (``flamegraph.pl``, ``inferno``,
  speedscope all read them);
- ``<store>-summary.txt``: self and total time by function, self time by file
  and samples by thread, over both workers, also in ms per task.

Figures measured under the profiler are slower than a plain run's (py-spy
pauses the process for each sample); compare profiles with profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import scenarios, stores

log = logging.getLogger("cereal.bench.profile")

RATE = 100  # samples per second, py-spy's default
TOP = 25
REPO = Path(__file__).resolve().parent.parent


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (it is in bench/requirements.txt)")
    return found


def _short(file: str) -> str:
    """A frame's file, without the install prefix."""
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in file:
            return file.split(marker, 1)[1]
    if file.startswith(str(REPO) + "/"):
        return file[len(str(REPO)) + 1 :]
    if "/lib/python3" in file:
        return "stdlib/" + file.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return file


# Leaf frames where a thread sits blocked, not working: py-spy's idle detection
# misses them (a thread blocked in a C call shows as its Python caller), and
# they would otherwise top every list. Matched on (file, function).
WAITING = {
    ("stdlib/selectors.py", "EpollSelector.select"),
    ("stdlib/selectors.py", "PollSelector.select"),
    ("stdlib/selectors.py", "SelectSelector.select"),
    ("stdlib/selectors.py", "_PollLikeSelector.select"),
    ("stdlib/concurrent/futures/thread.py", "_worker"),
    ("stdlib/threading.py", "Condition.wait"),
    ("stdlib/threading.py", "Event.wait"),
    ("stdlib/threading.py", "Thread.join"),
    ("stdlib/threading.py", "Thread._wait_for_tstate_lock"),
    ("stdlib/threading.py", "Semaphore.acquire"),
    ("stdlib/queue.py", "Queue.get"),
    ("bench/worker.py", "wait_for_eof"),
    # a reused task thread waiting for its next job (SimpleQueue.get is C, so the
    # leaf is the loop itself); the loop's own bookkeeping is a few bytecodes
    ("src/cereal/task_threads.py", "ThreadReuse._serve"),
    ("cereal/task_threads.py", "ThreadReuse._serve"),
}


def _is_cereal(file: str) -> bool:
    return file.startswith(("src/cereal/", "cereal/"))


class _Node:
    """One frame of the merged call tree (by function, not line): samples through it."""

    def __init__(self) -> None:
        self.count = 0
        self.waiting = 0
        self.children: dict[tuple[str, str], _Node] = {}

    def add(self, stack: list[tuple[str, str]], waiting: bool) -> None:
        node = self
        node.count += 1
        for key in stack:
            node = node.children.setdefault(key, _Node())
            node.count += 1
            node.waiting += waiting


FLAME_WIDTH = 1600
FLAME_ROW = 17


def _colour(file: str, waiting_share: float) -> str:
    if waiting_share > 0.5:
        return "#c8c8c8"  # mostly blocked below this frame
    if _is_cereal(file):
        return "#f0a040"
    if file.startswith("psycopg"):
        return "#6fa8dc"
    if file.startswith("stdlib/asyncio"):
        return "#93c47d"
    return "#e6d16b" if file.startswith("stdlib/") else "#d5a6bd"


def flame_svg(tree: _Node, title: str) -> str:
    """A flame graph (root at the bottom) of the merged stacks as a standalone SVG.

    Frame width is its share of all samples; grey frames are mostly waiting,
    orange is cereal, blue psycopg, green asyncio, yellow the rest of the
    standard library. Hover a frame for its name, file and share.
    """
    total = max(tree.count, 1)
    boxes: list[tuple[float, int, float, str, str, _Node]] = []

    def walk(node: _Node, x: float, depth: int) -> int:
        deepest = depth
        for (name, file), child in sorted(node.children.items()):
            width = FLAME_WIDTH * child.count / total
            if width >= 0.5:  # narrower frames are invisible anyway
                boxes.append((x, depth, width, name, file, child))
                deepest = max(deepest, walk(child, x, depth + 1))
            x += width
        return deepest

    depth = walk(tree, 0.0, 0) + 1
    height = (depth + 2) * FLAME_ROW
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{FLAME_WIDTH}" height="{height}"'
        ' font-family="monospace" font-size="11">',
        f'<text x="4" y="13">{html.escape(title)}</text>',
    ]
    for x, level, width, name, file, node in boxes:
        y = height - (level + 1) * FLAME_ROW
        share = 100.0 * node.count / total
        label = html.escape(f"{name}  {file}")
        fits = int(width / 7)
        text = html.escape(name[:fits]) if fits >= 3 else ""
        out.append(
            f"<g><title>{label}: {node.count} samples, {share:.2f} %</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{FLAME_ROW - 1}"'
            f' fill="{_colour(file, node.waiting / node.count)}"/>'
            f'<text x="{x + 2:.1f}" y="{y + FLAME_ROW - 5}">{text}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


class Profile:
    """Samples of several speedscope recordings, aggregated by function, file and thread.

    Every sample is one of: *waiting* (its leaf is in :data:`WAITING`),
    *startup* (an import is on its stack: the process starting, or a lazy
    import), or *busy*; the tables rank busy samples only.
    """

    def __init__(self) -> None:
        self.samples = 0
        self.waiting = 0
        self.startup = 0
        self.self_by_function: Counter[tuple[str, str]] = Counter()
        self.total_by_function: Counter[tuple[str, str]] = Counter()
        self.self_by_file: Counter[str] = Counter()
        self.self_by_line: Counter[str] = Counter()
        self.by_thread: Counter[str] = Counter()
        self.tree = _Node()

    @property
    def busy(self) -> int:
        """Samples neither waiting nor starting up."""
        return self.samples - self.waiting - self.startup

    def add(self, speedscope: Path, folded: Path) -> None:
        """Aggregate one py-spy speedscope file; write all its stacks in collapsed form."""
        data = json.loads(speedscope.read_text())
        frames = [(f["name"], _short(f["file"]), f.get("line")) for f in data["shared"]["frames"]]
        stacks: Counter[str] = Counter()
        for profile in data["profiles"]:
            # 'Thread 1234 "name"': keep the name, the id differs per run
            thread = profile["name"].split('"')[1] if '"' in profile["name"] else ""
            for stack in profile["samples"]:
                if not stack:
                    continue
                self.samples += 1
                labels = [frames[i] for i in stack]  # root first, leaf last
                stacks[";".join(f"{n} ({f}:{line})" for n, f, line in labels)] += 1
                name, file, line = labels[-1]
                self.tree.add([(n, f) for n, f, _ in labels], (file, name) in WAITING)
                if (file, name) in WAITING:
                    self.waiting += 1
                    continue
                if any(f.startswith("<frozen importlib") for _, f, _ in labels):
                    self.startup += 1
                    continue
                self.by_thread[thread or "(unnamed)"] += 1
                self.self_by_function[(name, file)] += 1
                self.self_by_file[file] += 1
                self.self_by_line[f"{file}:{line}  {name}"] += 1
                for key in {(n, f) for n, f, _ in labels}:
                    self.total_by_function[key] += 1
        folded.write_text("".join(f"{stack} {count}\n" for stack, count in stacks.items()))

    def top_self(self, tasks: int, n: int = TOP) -> list[dict[str, Any]]:
        """The ``n`` functions with the most busy self time."""
        return [
            {
                "function": name,
                "file": file,
                "self_pct": round(100.0 * count / max(self.busy, 1), 2),
                "self_ms_per_task": round(1000.0 * count / RATE / tasks, 4),
            }
            for (name, file), count in self.self_by_function.most_common(n)
        ]

    def text(self, title: str, tasks: int) -> str:
        """The summary: busy self and total time by function, self by file, by thread."""
        busy = max(self.busy, 1)

        def row(count: int, label: str) -> str:
            ms = 1000.0 * count / RATE / tasks
            return f"{100.0 * count / busy:6.2f}% {ms:9.4f}  {label}"

        lines = [
            title,
            f"{self.samples} samples at {RATE}/s over both workers: {self.busy} busy"
            f" ({self.busy / RATE:.1f} s, {1000.0 * self.busy / RATE / tasks:.3f} ms per task),"
            f" {self.waiting} waiting (blocked in select, queues, locks, stdin),"
            f" {self.startup} starting up (imports); the tables rank busy samples",
            "",
            f"top {TOP} functions by SELF time   (share of busy, ms per task, function, file)",
        ]
        lines += [row(c, f"{n}  {f}") for (n, f), c in self.self_by_function.most_common(TOP)]
        ours = Counter({key: c for key, c in self.total_by_function.items() if _is_cereal(key[1])})
        lines += ["", "top 25 cereal functions by TOTAL time (inclusive: what each step costs)"]
        lines += [row(c, f"{n}  {f}") for (n, f), c in ours.most_common(25)]
        lines += [
            "",
            "top 15 lines by SELF time (a C call, e.g. a query or a commit, counts on its line)",
        ]
        lines += [row(c, at) for at, c in self.self_by_line.most_common(15)]
        lines += ["", "self time by file"]
        lines += [row(c, f) for f, c in self.self_by_file.most_common(15)]
        lines += ["", "busy samples by thread"]
        lines += [row(c, t) for t, c in self.by_thread.most_common(10)]
        return "\n".join(lines) + "\n"


def _profile_store(
    store: stores.PostgresStore | stores.SqliteStore,
    sizes: scenarios.Sizes,
    out: Path,
    result: dict[str, Any],
) -> None:
    kind = store.kind
    py_spy = _py_spy()
    recordings = [out / f"{kind}-worker{i + 1}.speedscope.json" for i in range(2)]

    def wrap(i: int) -> list[str]:
        return [
            py_spy,
            "record",
            "--format",
            "speedscope",
            "--rate",
            str(RATE),
            "--output",
            str(recordings[i]),
            "--",
        ]

    async def measure() -> scenarios.Figures:
        try:
            url = store.fresh("drain")
            dsn = url if isinstance(store, stores.PostgresStore) else None
            return await scenarios.drain(url, sizes, dsn, wrap)
        finally:
            store.cleanup()

    log.info("%s: drain under py-spy ...", kind)
    figures = asyncio.run(measure())
    result[kind] = {"drain": figures}
    profile = Profile()
    folded = []
    for recording in recordings:
        folded.append(recording.with_name(recording.name.replace(".speedscope.json", ".folded")))
        profile.add(recording, folded[-1])
    tasks = int(figures["tasks"])
    title = (
        f"cereal drain profile, {kind}: {figures['tasks']} tasks,"
        f" {figures['tasks_per_s']} tasks/s under the profiler,"
        f" worker CPU {figures['worker_cpu_ms_per_task']} ms/task"
        + (
            f", PostgreSQL backends {figures['db_cpu_ms_per_task']} ms/task"
            if "db_cpu_ms_per_task" in figures
            else ""
        )
    )
    summary = out / f"{kind}-summary.txt"
    summary.write_text(profile.text(title, tasks))
    flame = out / f"{kind}-flamegraph.svg"
    flame.write_text(flame_svg(profile.tree, title + " (all samples; grey = waiting)"))
    result["profile"][kind] = {
        "speedscope": [str(p) for p in recordings],
        "folded": [str(p) for p in folded],
        "summary": str(summary),
        "flamegraph": str(flame),
        "samples": profile.samples,
        "busy_samples": profile.busy,
        "busy_ms_per_task": round(1000.0 * profile.busy / RATE / tasks, 3),
        "top_self": profile.top_self(tasks, 10),
    }


def run(args: argparse.Namespace, results: Path) -> int:
    """Profile the drain on each store; print the summaries and, last, one JSON line."""
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = results / f"profile-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "mode": "profile",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sizes": {"drain_workflows": sizes.drain_workflows, "drain_tasks": sizes.drain_tasks},
        "postgres": {},
        "sqlite": {},
        "profile": {},
        "dir": str(out),
        "errors": [],
    }
    began = time.monotonic()
    dsn = os.environ.get("BENCH_DSN", stores.DEFAULT_DSN)
    for kind in ("postgres", "sqlite"):
        if args.only not in (None, kind):
            continue
        try:
            if kind == "postgres":
                pg = stores.PostgresStore(dsn)
                pg.ensure_bench_database()
                _profile_store(pg, sizes, out, result)
            else:
                _profile_store(stores.SqliteStore(), sizes, out, result)
        except Exception as exc:  # report it, still profile the other store
            log.exception("%s: profiling failed", kind)
            result["errors"].append(f"{kind}: {type(exc).__name__}: {exc}")
            continue
        sys.stdout.write(Path(result["profile"][kind]["summary"]).read_text() + "\n")
    result["seconds"] = round(time.monotonic() - began, 1)
    sys.stdout.write(f"written: {out}/\n")
    for error in result["errors"]:
        sys.stdout.write(f"ERROR: {error}\n")
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 1 if result["errors"] else 0
