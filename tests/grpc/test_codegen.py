"""The checked-in generated modules are what the .proto generates today."""

from __future__ import annotations

from pathlib import Path

from cereal.wire import codegen


def test_checked_in_modules_equal_a_fresh_generation(tmp_path: Path) -> None:
    fresh = codegen.generate(tmp_path)
    for name, content in fresh.items():
        checked_in = (codegen.PROTO_DIR / name).read_bytes()
        assert checked_in == content, f"{name} is stale: run python -m cereal.wire.codegen"
