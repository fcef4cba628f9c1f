"""The dashboard's ASGI app: routes, session cookie, security headers, shutdown."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cereal.dashboard._actions import Actions
from cereal.dashboard._auth import Access, LoginToRead
from cereal.dashboard._hosts import LOOPBACK_NAMES
from cereal.dashboard._pages import Pages
from cereal.dashboard._render import Renderer
from cereal.manager import Manager

SESSION_COOKIE = "cereal_dashboard"
SESSION_MAX_AGE = 12 * 3600
"""Seconds a login lasts."""

_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def create_app(
    manager: Manager,
    *,
    token: str | None = None,
    session_secret: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    login_to_read: bool = False,
) -> Starlette:
    """The dashboard over ``manager``'s store (the Manager is used for storage calls only).

    Args:
        manager: a Manager that is never started; the app stops it (closing its
            driver) at shutdown.
        token: the secret a visitor posts to log in and act; ``None`` makes the
            dashboard read-only.
        session_secret: signs the session cookie; a random one per process by
            default (logins then end with the process).
        allowed_hosts: the ``Host`` names answered; any other gets 400 and no
            data (a DNS-rebinding page sends its own name). Defaults to the
            loopback names; :func:`cereal.dashboard.allowed_hosts_for` derives
            them from a bind address.
        login_to_read: every page but the login page needs a login (or the
            token as a bearer header); ``cereal dashboard`` sets it for a bind
            beyond loopback.

    Raises:
        ValueError: ``token`` is empty or blank, or ``login_to_read`` without a token.
    """
    if token is not None and not token.strip():
        raise ValueError("the dashboard token must not be empty; omit it for read-only")
    if login_to_read and token is None:
        raise ValueError("requiring a login to read needs a token")
    access = Access(token)
    render = Renderer(access)
    pages = Pages(manager, render)
    actions = Actions(manager, access, render)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await manager.stop()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render.message(request, "Error", exc.detail, status_code=exc.status_code)

    async def home(request: Request) -> Response:
        return RedirectResponse("/instances", status_code=303)

    async def metrics(request: Request) -> Response:
        # the store's queue gauges; counters live in the workers (cereal worker --metrics-port)
        try:
            from cereal import metrics as prometheus
        except ImportError:
            return PlainTextResponse(
                "metrics need their extra: pip install 'cereal-workflows[metrics]'\n",
                status_code=501,
            )
        body = await prometheus.render(manager)
        return Response(body, media_type=prometheus.CONTENT_TYPE)

    routes = [
        Route("/", home),
        Route("/instances", pages.instances),
        Route("/instances/{names:path}", pages.instance),
        Route("/tasks", pages.tasks),
        Route("/schedules", pages.schedules),
        Route("/workers", pages.workers),
        Route("/dead-letters", pages.dead_letters),
        Route("/metrics", metrics),
        Route("/login", actions.login_form, methods=["GET"]),
        Route("/login", actions.login, methods=["POST"]),
        Route("/logout", actions.logout, methods=["POST"]),
        Route("/actions/requeue/{kind}", actions.requeue, methods=["POST"]),
        Route("/actions/{route:path}", actions.act, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("cereal.dashboard", "static")]), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                TrustedHostMiddleware,
                allowed_hosts=list(LOOPBACK_NAMES if allowed_hosts is None else allowed_hosts),
                www_redirect=False,
            ),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret or secrets.token_urlsafe(32),
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_MAX_AGE,
                same_site="strict",
            ),
            *([Middleware(LoginToRead, access=access)] if login_to_read else []),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )


class SecurityHeaders:
    """Adds a strict Content-Security-Policy and related headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers as the response starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
