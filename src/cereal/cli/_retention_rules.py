"""Retention given on the command line: store-wide bounds and per-workflow rules.

``--keep-runs NAME=N`` and ``--keep-days NAME=D`` (repeatable) and the
store-wide ``--max-rows``, ``--margin-rows`` and ``--max-age-days``, shared by
``cereal workflows trim`` and ``cereal serve``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from cereal.cli._common import CliError
from cereal.models import MAX_RETENTION_ROWS, HistoryRetention, WorkflowRetention

DAY_S = 86400.0

KeepRunsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--keep-runs",
        metavar="WORKFLOW=N",
        help="Keep only WORKFLOW's newest N finished runs (repeatable).",
    ),
]
KeepDaysOption = Annotated[
    list[str] | None,
    typer.Option(
        "--keep-days",
        metavar="WORKFLOW=DAYS",
        help="Keep only WORKFLOW's finished runs of the last DAYS days (repeatable).",
    ),
]
MaxRowsOption = Annotated[
    int | None,
    typer.Option(
        "--max-rows", help="Store-wide: past this many finished runs, trim the oldest.", min=0
    ),
]
MarginRowsOption = Annotated[
    int | None,
    typer.Option("--margin-rows", help="...down to max-rows minus this many.", min=0),
]
MaxAgeDaysOption = Annotated[
    float | None,
    typer.Option("--max-age-days", help="Store-wide: no finished run older than this."),
]


def _split(rule: str, option: str) -> tuple[str, str]:
    # a workflow name may hold '=': the number is after the last one
    name, equals, value = rule.rpartition("=")
    if not equals or not name:
        raise CliError(f"{option} takes WORKFLOW=NUMBER, got {rule!r}")
    return name, value


def retention_from_options(
    *,
    keep_runs: Sequence[str] | None,
    keep_days: Sequence[str] | None,
    max_rows: int | None,
    margin_rows: int | None,
    max_age_days: float | None,
    unbounded: bool,
) -> HistoryRetention:
    """The :class:`HistoryRetention` the options describe.

    Without ``--max-rows``: no store-wide count bound when ``unbounded``
    (a trim that asked only for per-workflow rules), else the default
    10 000 / 1 000.

    Raises:
        CliError: a rule is not ``WORKFLOW=NUMBER``, names a workflow twice
            in one option, or a value is out of range.
    """
    runs: dict[str, int] = {}
    days: dict[str, float] = {}
    default = HistoryRetention()
    if max_rows is None:
        max_rows = MAX_RETENTION_ROWS if unbounded else default.max_rows
        margin_rows = 0 if unbounded and margin_rows is None else margin_rows
    try:
        for rule in keep_runs or ():
            name, value = _split(rule, "--keep-runs")
            if name in runs:
                raise CliError(f"--keep-runs names {name!r} twice")
            runs[name] = int(value)
        for rule in keep_days or ():
            name, value = _split(rule, "--keep-days")
            if name in days:
                raise CliError(f"--keep-days names {name!r} twice")
            days[name] = float(value) * DAY_S
        return HistoryRetention(
            max_rows=max_rows,
            margin_rows=default.margin_rows if margin_rows is None else margin_rows,
            max_age=None if max_age_days is None else max_age_days * DAY_S,
            per_workflow={
                name: WorkflowRetention(max_runs=runs.get(name), max_age=days.get(name))
                for name in {**runs, **days}
            },
        )
    except (TypeError, ValueError) as exc:
        raise CliError(f"bad retention: {exc}") from exc


def given(*values: object) -> bool:
    """Whether any retention option was given (lists count when non-empty)."""
    return any(value not in (None, []) for value in values)
