"""Run a bench script in an interpreter that has the project: this one, else ``.venv``.

Standard library only: it runs before the project can be imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ensure(script: str, modules: Sequence[str]) -> None:
    """Return if ``modules`` import here; else re-run ``script`` in ``.venv`` (made if missing).

    ``.venv`` is bootstrapped as ``python3 scripts/dev.py test`` does it. On
    return the repository root is on ``sys.path``, so ``bench`` imports.
    """
    if any(importlib.util.find_spec(name) is None for name in modules):
        sys.path.insert(0, str(ROOT / "scripts"))
        import dev

        dev.ensure_venv(dev.DEV)
        python = str(dev.DEV.python)
        os.execv(python, [python, str(Path(script).resolve()), *sys.argv[1:]])
    sys.path.insert(0, str(ROOT))
