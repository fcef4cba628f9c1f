"""docs/api-reference.md is what scripts/api_reference.py generates from the docstrings now."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "api_reference", ROOT / "scripts" / "api_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_api_reference_is_current() -> None:
    expected = generator().render()
    checked_in = (ROOT / "docs" / "api-reference.md").read_text()
    assert checked_in == expected, (
        "docs/api-reference.md is stale: run .venv/bin/python scripts/api_reference.py"
    )


def test_reference_covers_the_public_api() -> None:
    text = (ROOT / "docs" / "api-reference.md").read_text()
    for title in (
        "### class `Manager(",
        "#### `async Manager.enqueue_workflow(",
        "### function `open_driver(",
        "### exception `MissingDependencyError(",
        "### function `normalize(",
    ):
        assert title in text, title
