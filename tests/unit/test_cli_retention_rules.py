"""The retention the command line builds: ``workflows trim`` bounds only what it is given."""

from __future__ import annotations

import pytest

from cereal.cli._common import CliError
from cereal.cli._retention_rules import retention_from_options
from cereal.models import MAX_RETENTION_ROWS, HistoryRetention, WorkflowRetention


def _build(*, unbounded: bool, **given: object) -> HistoryRetention:
    options: dict[str, object] = {
        "keep_runs": None,
        "keep_days": None,
        "max_rows": None,
        "margin_rows": None,
        "max_age_days": None,
        **given,
    }
    return retention_from_options(unbounded=unbounded, **options)  # type: ignore[arg-type]


def test_a_trim_with_rules_only_sets_no_store_wide_bound() -> None:
    built = _build(unbounded=True, keep_runs=["reports=5"], keep_days=["beats=1.5", "reports=2"])
    assert (built.max_rows, built.margin_rows, built.max_age) == (MAX_RETENTION_ROWS, 0, None)
    assert built.per_workflow == {
        "reports": WorkflowRetention(max_runs=5, max_age=2 * 86400.0),
        "beats": WorkflowRetention(max_age=1.5 * 86400.0),
    }


def test_a_server_without_max_rows_keeps_the_default_bound() -> None:
    built = _build(unbounded=False, keep_runs=["a=b=3"])  # the name holds '='
    assert (built.max_rows, built.margin_rows) == (10_000, 1_000)
    assert built.per_workflow == {"a=b": WorkflowRetention(max_runs=3)}


def test_given_bounds_apply() -> None:
    built = _build(unbounded=True, max_rows=50, margin_rows=5, max_age_days=2)
    assert (built.max_rows, built.margin_rows, built.max_age) == (50, 5, 2 * 86400.0)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"keep_runs": ["x"]}, "--keep-runs takes WORKFLOW=NUMBER, got 'x'"),
        ({"keep_runs": ["=3"]}, "--keep-runs takes WORKFLOW=NUMBER, got '=3'"),
        ({"keep_runs": ["x=1", "x=2"]}, "--keep-runs names 'x' twice"),
        ({"keep_days": ["x=soon"]}, "bad retention: could not convert string to float"),
        ({"max_rows": 10, "margin_rows": 20}, None),
    ],
)
def test_bad_rules_are_cli_errors(given: dict[str, object], says: str | None) -> None:
    if says is None:  # a margin above max_rows is allowed: everything past max_rows goes
        _build(unbounded=True, **given)
        return
    with pytest.raises(CliError, match=says):
        _build(unbounded=True, **given)
