"""Rendering pages and fragments with Jinja2 (autoescaped) and the dashboard's filters."""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from cereal.dashboard import _format
from cereal.dashboard._auth import Access, csrf_token
from cereal.dashboard._paths import segment

_FLASH = "flash"


def build_environment() -> jinja2.Environment:
    """The template environment: package templates, every value escaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cereal.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["seg"] = segment
    env.filters["json_text"] = _format.json_text
    env.filters["instant"] = _format.instant
    env.filters["age"] = _format.age
    return env


class Renderer:
    """Renders a page whole, or only its live fragment when htmx polls it."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.templates = Jinja2Templates(env=build_environment())

    def page(
        self, request: Request, name: str, *, status_code: int = 200, **context: Any
    ) -> Response:
        """``name.html`` (the whole page) or ``_name.html`` (its fragment, for htmx)."""
        # a boosted link (HX-Boosted) swaps the whole body: it gets the page, not the fragment
        polled = (
            request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-Boosted") != "true"
        )
        context.update(
            can_act=self.access.can_act(request),
            read_only=self.access.read_only,
            csrf=csrf_token(request),
            here=_here(request),
            flash=None if polled else request.session.pop(_FLASH, None),
        )
        template = f"_{name}.html" if polled else f"{name}.html"
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def message(self, request: Request, title: str, text: str, *, status_code: int) -> Response:
        """A page that only says ``text`` (errors: not found, refused, bad input)."""
        return self.page(request, "message", status_code=status_code, title=title, text=text)


def flash(request: Request, text: str, *, ok: bool = True) -> None:
    """Show ``text`` once, on the next page this visitor loads."""
    request.session[_FLASH] = {"text": text, "ok": ok}


def _here(request: Request) -> str:
    """This page's path and query, still encoded: where a form sends the visitor back."""
    raw = request.scope.get("raw_path") or request.url.path.encode("utf-8")
    query = request.scope.get("query_string", b"")
    return (raw + (b"?" + query if query else b"")).decode("latin-1")
