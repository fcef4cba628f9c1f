"""Protocol features beyond the base protocol, named in a server's first wakeup (``ready``).

A client uses a feature only when the server named it, so a newer client
still works with an older server (it falls back to the base protocol).
"""

from __future__ import annotations

SESSIONS = "sessions"
"""One long-lived stream per client carries all its claims and leases."""

UNSTARTED_HAND_BACK = "unstarted_hand_back"
"""A task report may hand back a task that never started, without counting it."""
