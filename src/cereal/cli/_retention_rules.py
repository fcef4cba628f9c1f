"""Retention rules given on the command line: ``--keep-runs NAME=N`` and ``--keep-days NAME=D``."""

from __future__ import annotations

from collections.abc import Sequence

from cereal.cli._common import CliError
from cereal.models import HistoryRetention, WorkflowRetention

DAY_S = 86400.0


def _split(rule: str, option: str) -> tuple[str, str]:
    # a workflow name may hold '=': the number is after the last one
    name, equals, value = rule.rpartition("=")
    if not equals or not name:
        raise CliError(f"{option} takes WORKFLOW=NUMBER, got {rule!r}")
    return name, value


def retention_from_options(
    *,
    keep_runs: Sequence[str],
    keep_days: Sequence[str],
    max_rows: int,
    margin_rows: int,
    max_age_days: float | None,
) -> HistoryRetention:
    """The :class:`HistoryRetention` the options describe.

    Raises:
        CliError: a rule is not ``WORKFLOW=NUMBER``, names a workflow twice
            in one option, or a value is out of range.
    """
    runs: dict[str, int] = {}
    days: dict[str, float] = {}
    try:
        for rule in keep_runs:
            name, value = _split(rule, "--keep-runs")
            if name in runs:
                raise CliError(f"--keep-runs names {name!r} twice")
            runs[name] = int(value)
        for rule in keep_days:
            name, value = _split(rule, "--keep-days")
            if name in days:
                raise CliError(f"--keep-days names {name!r} twice")
            days[name] = float(value) * DAY_S
        return HistoryRetention(
            max_rows=max_rows,
            margin_rows=margin_rows,
            max_age=None if max_age_days is None else max_age_days * DAY_S,
            per_workflow={
                name: WorkflowRetention(max_runs=runs.get(name), max_age=days.get(name))
                for name in {**runs, **days}
            },
        )
    except (TypeError, ValueError) as exc:
        raise CliError(f"bad retention: {exc}") from exc
