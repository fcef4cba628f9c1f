"""The actions: log in and out; cancel, kill; schedule switches; requeue dead letters.

Every action is a POST of a form carrying the session's CSRF token, and
answers with a redirect back to the page it came from (``next``), where a
one-time message says what happened. A visitor who may not act gets 403.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cereal import errors
from cereal.dashboard._auth import Access, require_csrf
from cereal.dashboard._paths import names_after
from cereal.dashboard._render import Renderer, flash
from cereal.manager import Manager
from cereal.models import RequeueOutcome

REQUEUED = RequeueOutcome.REQUEUED

logger = logging.getLogger("cereal.dashboard")

_PREFIX = "/actions/"


@dataclass(frozen=True)
class Actions:
    """Handlers of every POST endpoint."""

    manager: Manager
    access: Access
    render: Renderer

    async def login_form(self, request: Request) -> Response:
        """The login page (or a note that the dashboard is read-only)."""
        return self.render.page(request, "login", title="Log in", failed=False)

    async def login(self, request: Request) -> Response:
        """Check the posted token; on a match mark the session logged in (else 403)."""
        form = await request.form()
        require_csrf(request, form)
        if self.access.read_only:
            raise HTTPException(403, "the dashboard is read-only (started without a token)")
        given = form.get("token")
        if not isinstance(given, str) or not self.access.token_matches(given):
            logger.warning("dashboard: refused a login with a wrong token")
            return self.render.page(request, "login", status_code=403, title="Log in", failed=True)
        self.access.log_in(request)
        flash(request, "logged in")
        return _back(form, default="/instances")

    async def logout(self, request: Request) -> Response:
        """Forget the login."""
        form = await request.form()
        require_csrf(request, form)
        self.access.log_out(request)
        return RedirectResponse("/instances", status_code=303)

    async def act(self, request: Request) -> Response:
        """``/actions/{kind}/{verb}/{workflow}/{instance}``: run one action, then go back."""
        form = await request.form()
        self.access.require_action(request, form)
        route = names_after(request, _PREFIX, 4)
        if route is None:
            raise HTTPException(404, "expected /actions/KIND/VERB/WORKFLOW/INSTANCE")
        kind, verb, workflow, instance = route
        action = self._action(f"{kind}/{verb}")
        if action is None:
            raise HTTPException(404, f"no action {kind}/{verb}")
        call, done = action
        try:
            found = call(workflow, instance)
            if inspect.isawaitable(found):
                await found
        except (errors.CerealError, ValueError, TypeError) as exc:
            flash(request, f"{kind}/{verb} {workflow}/{instance} failed: {exc}", ok=False)
        else:
            logger.info("dashboard: %s %s/%s", verb, workflow, instance)
            flash(request, f"{done} {workflow}/{instance}")
        return _back(form, default="/instances")

    async def requeue(self, request: Request) -> Response:
        """``/actions/requeue/{dead-tasks|failed-runs}``: requeue the ticked ids, then go back."""
        form = await request.form()
        self.access.require_action(request, form)
        kind = request.path_params["kind"]
        requeue = {
            "dead-tasks": (self.manager.requeue_dead_tasks, "task"),
            "failed-runs": (self.manager.requeue_failed_runs, "run"),
        }.get(kind)
        if requeue is None:
            raise HTTPException(404, f"nothing to requeue called {kind!r}")
        call, what = requeue
        ids = [value for value in form.getlist("id") if isinstance(value, str)]
        if not ids:
            flash(request, f"tick at least one {what} to requeue", ok=False)
            return _back(form, default="/dead-letters")
        try:
            outcomes = await call(ids)
        except (errors.CerealError, ValueError, TypeError) as exc:
            flash(request, f"requeue failed: {exc}", ok=False)
            return _back(form, default="/dead-letters")
        requeued = [given for given, outcome in outcomes.items() if outcome is REQUEUED]
        left = {
            given: str(outcome) for given, outcome in outcomes.items() if outcome is not REQUEUED
        }
        logger.info("dashboard: requeued %s(s) %s", what, ", ".join(requeued) or "none")
        text = f"requeued {len(requeued)} {what}(s)"
        if left:
            text += "; not requeued: " + ", ".join(f"{k} ({v})" for k, v in left.items())
        flash(request, text, ok=not left)
        return _back(form, default="/dead-letters")

    def _action(self, key: str) -> tuple[Callable[[str, str], Any], str] | None:
        manager = self.manager
        table: dict[str, tuple[Callable[[str, str], Any], str]] = {
            "instance/cancel": (manager.cancel_workflow, "cancel requested for"),
            "instance/kill": (manager.kill_workflow, "killed"),
            "schedule/enable": (lambda w, i: _set_enabled(manager, w, i, True), "enabled"),
            "schedule/disable": (lambda w, i: _set_enabled(manager, w, i, False), "disabled"),
            "schedule/trigger": (manager.trigger_workflow_schedule, "triggered"),
        }
        return table.get(key)


def _set_enabled(manager: Manager, workflow: str, instance: str, enabled: bool) -> Awaitable[None]:
    return manager.update_workflow_schedule(workflow, instance, enabled=enabled)


def _back(form: FormData, *, default: str) -> RedirectResponse:
    """Redirect (303) to the form's ``next`` if it is a path on this site, else ``default``."""
    target = form.get("next")
    if isinstance(target, str) and _is_local_path(target):
        return RedirectResponse(target, 303)
    return RedirectResponse(default, 303)


def _is_local_path(target: str) -> bool:
    """A path on this site (browsers read ``//host``, or a backslash for a slash, as a host)."""
    return (
        target.startswith("/")
        and target[1:2] not in ("/", "\\")
        and all(ch.isprintable() and not ch.isspace() for ch in target)
    )
