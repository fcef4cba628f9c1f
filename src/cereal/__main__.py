"""``python -m cereal``: the same as the ``cereal`` command."""

from __future__ import annotations

from cereal.cli import main

if __name__ == "__main__":
    main()
