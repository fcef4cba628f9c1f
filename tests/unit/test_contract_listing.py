"""docs/architecture.md lists every abstract method of the driver contract, by part."""

from __future__ import annotations

import re
from pathlib import Path

from cereal.drivers import base

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
PARTS = [
    base.StoreLifecycle,
    base.WorkflowStore,
    base.WorkflowCompleter,
    base.TaskStore,
    base.TaskCompleter,
    base.ScheduleStore,
    base.ScheduledWorkflowCompleter,
    base.MaintenanceStore,
]


def _listed() -> dict[str, list[str]]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## The contract a new driver writes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", section, flags=re.MULTILINE)
    return {part: re.findall(r"`(\w+)`", methods) for part, methods in rows}


def test_the_listing_is_the_contracts_abstract_methods() -> None:
    in_code = {
        part.__name__: sorted(n for n in vars(part) if n in part.__abstractmethods__)
        for part in PARTS
    }
    assert {part: sorted(methods) for part, methods in _listed().items()} == in_code


def test_driver_abstract_methods_are_exactly_the_store_parts() -> None:
    stores = {n for part in PARTS if not part.__name__.endswith("Completer") for n in vars(part)}
    assert set(base.Driver.__abstractmethods__) <= stores
