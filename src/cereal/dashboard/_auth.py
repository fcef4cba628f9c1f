"""Who may act: the dashboard token, the login session and CSRF protection.

Without a token the dashboard is read-only: action buttons are hidden and
every action endpoint answers 403. With one, a visitor logs in once by posting
the token; the signed, HttpOnly session cookie then marks them as logged in.
Every form (login included) carries a per-session CSRF token that a POST must
echo, so another site cannot make a logged-in browser act. Served beyond
loopback, reads need the login too (:class:`LoginToRead`), or the token as a
bearer header (a metrics scraper).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("cereal.dashboard")

_LOGGED_IN = "logged_in"
_CSRF = "csrf"


@dataclass(frozen=True)
class Access:
    """The dashboard's token (``None``: read-only) and the checks built on it."""

    token: str | None

    @property
    def read_only(self) -> bool:
        """True when no token was configured: nobody can act."""
        return self.token is None

    def can_act(self, request: Request) -> bool:
        """Whether this visitor may see and use action buttons."""
        return not self.read_only and request.session.get(_LOGGED_IN) is True

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the configured token (constant-time comparison)."""
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def bearer_matches(self, header: str | None) -> bool:
        """Whether an ``Authorization: Bearer <token>`` header carries the configured token."""
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    def log_in(self, request: Request) -> None:
        """Mark the session as logged in, with a fresh CSRF token (no fixation)."""
        request.session[_LOGGED_IN] = True
        request.session[_CSRF] = secrets.token_urlsafe(32)

    def log_out(self, request: Request) -> None:
        """Forget the login."""
        request.session.clear()

    def require_action(self, request: Request, form: FormData) -> None:
        """Refuse (403) an action by a visitor who may not act or a form without our CSRF token.

        Raises:
            HTTPException: 403, naming why.
        """
        if self.read_only:
            raise HTTPException(403, "the dashboard is read-only (started without a token)")
        if not self.can_act(request):
            raise HTTPException(403, "log in with the dashboard token first")
        require_csrf(request, form)


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    found = request.session.get(_CSRF)
    if not isinstance(found, str):
        found = secrets.token_urlsafe(32)
        request.session[_CSRF] = found
    return found


def require_csrf(request: Request, form: FormData) -> None:
    """Refuse (403) a form whose ``csrf`` field is not this session's token.

    Raises:
        HTTPException: 403.
    """
    expected = request.session.get(_CSRF)
    given = form.get("csrf")
    if (
        not isinstance(expected, str)
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
    ):
        logger.warning("dashboard: refused a form without a valid CSRF token")
        raise HTTPException(403, "missing or stale form token: reload the page and try again")


_OPEN_PATHS = ("/login", "/logout")
_OPEN_PREFIXES = ("/static/",)


class LoginToRead:
    """ASGI middleware: every page but the login page and static files needs a login.

    Placed inside the session middleware. A visitor who is not logged in is
    sent to ``/login`` (an htmx poll gets 401, so no login form lands inside
    a page); a request carrying the token as a bearer header passes.
    """

    def __init__(self, app: ASGIApp, access: Access) -> None:
        if access.read_only:
            raise ValueError("requiring a login to read needs a token")
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass an open path or a logged-in visitor on; refuse anyone else without data."""
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if request.session.get(_LOGGED_IN) is True or self.access.bearer_matches(
            request.headers.get("authorization")
        ):
            await self.app(scope, receive, send)
            return
        response: Response
        if request.headers.get("HX-Request") == "true":
            response = PlainTextResponse("log in again", status_code=401)
        else:
            response = RedirectResponse("/login", status_code=303)
        await response(scope, receive, send)
