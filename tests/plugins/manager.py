"""Manager fixtures: owned by the engine work."""

from __future__ import annotations
