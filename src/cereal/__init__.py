"""cereal: a durable workflow and task engine."""

from __future__ import annotations
