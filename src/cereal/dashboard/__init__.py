"""``cereal dashboard``: a small web UI over a cereal store (Starlette, Jinja2, htmx).

Pages list workflow instances (filtered, paged by the store), show one
instance with its tasks and event history, the task queues, the schedules
and the live workers; each refreshes itself every two seconds by polling its
own URL for an HTML fragment. With a token, a logged-in visitor can cancel
and kill instances and enable, disable or trigger schedules. htmx is vendored
under ``static/``; nothing is fetched at run time.

Needs the ``dashboard`` extra: ``pip install 'cereal-workflows[dashboard]'``.
"""

from __future__ import annotations

from cereal.dashboard._hosts import allowed_hosts_for
from cereal.dashboard.app import create_app

__all__ = ["allowed_hosts_for", "create_app"]
