"""The README's commands and quickstart code work as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def quickstart_code() -> str:
    """The first Python block under '## Quickstart'."""
    section = README.split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the quickstart has no python block"
    return match.group(1)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    (cwd / "hello.py").write_text(code)
    return subprocess.run(
        [sys.executable, "hello.py"], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_first_two_commands_are_demo_and_test() -> None:
    commands = re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)
    assert commands[:2] == ["python3 scripts/dev.py demo", "python3 scripts/dev.py test"]


def test_quickstart_prints_its_promised_result(tmp_path: Path) -> None:
    done = run_python(quickstart_code(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['hello, ada', 'hello, alan']"


def test_quickstart_finishes_with_no_names(tmp_path: Path) -> None:
    code = quickstart_code()
    given = '{"names": ["ada", "alan"]}'
    assert given in code
    done = run_python(code.replace(given, '{"names": []}'), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_install_section_names_no_pypi_package() -> None:
    assert "pip install cereal-workflows" not in README
    assert "pip install 'cereal-workflows[postgres]'" not in README
