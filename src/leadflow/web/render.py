"""Jinja2 templates of the workspace and the one function that renders a page.

Autoescaping is on for every template. A page's context always has ``user`` (the signed-in
:class:`~leadflow.security.sessions.SessionPrincipal` or None), ``csrf_token`` (for forms), ``nav``
(the navigation entries the user's role may open) and ``asset()`` for static URLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from leadflow.leads.models import GRADES, STATUSES
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.assets import asset
from leadflow.web.security import apply_headers

TEMPLATES = Path(__file__).parent / "templates"


class _Undefined(StrictUndefined):
    """``{% if error %}`` tests a missing variable as false; printing or using one is still an error."""

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=_Undefined,  # a misspelt variable fails the page's test instead of rendering ""
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals["asset"] = asset


# The lead pages' small pieces as Python functions, not Jinja macros: the inbox and the lead list show
# them for every lead, and three macro calls per lead were most of the time spent rendering a list.
def when(value: datetime | None, empty: str = "—") -> Markup:
    """A UTC time as ``2025-10-03 14:05 UTC`` (static/leads.js shows it in the browser's time zone)."""
    if not value:
        return escape(empty)
    iso = value.isoformat()  # digits and "-:.+T" only: nothing to escape
    return Markup(f'<time datetime="{iso}" data-local>{iso[:10]} {iso[11:16]} UTC</time>')  # noqa: S704


def _badge(kind: str, css: str, label: str, title: str = "") -> Markup:
    return Markup('<span class="{0} {0}-{1}"{2}>{3}</span>').format(
        kind, css, Markup(' title="{}"').format(title) if title else "", label
    )


def _grade(letter: str) -> Markup:
    hidden = Markup('<span class="visually-hidden">Grade </span>')
    return _badge("grade", letter.lower(), hidden + letter, f"Grade {letter}")


def _status(value: str) -> Markup:
    return _badge("status", value, value.replace("_", " "))


_GRADES = {g: _grade(g) for g in GRADES}
_STATUSES = {s: _status(s) for s in STATUSES}


def grade_badge(letter: str) -> Markup:
    """The grade letter in its coloured badge (read as "Grade A")."""
    return _GRADES.get(letter) or _grade(letter)


def status_badge(value: str) -> Markup:
    """A lead's or a delivery's status in its badge."""
    return _STATUSES.get(value) or _status(value)


env.globals.update(when=when, grade_badge=grade_badge, status_badge=status_badge)


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    href: str
    scope: str  # the API scope the page needs (security/tokens.py SCOPES): shown only to roles with it


NAV = (
    NavItem("Inbox", "/", "leads:read"),
    NavItem("Leads", "/leads", "leads:read"),
    NavItem("New lead", "/leads/new", "leads:create"),
    NavItem("Import", "/leads/import", "leads:create"),
    NavItem("Campaigns", "/campaigns", "campaigns:read"),
    NavItem("Analytics", "/analytics", "analytics:read"),
    NavItem("Team", "/team", "admin"),
    NavItem("Integrations", "/integrations", "admin"),
    NavItem("Audit", "/audit", "admin"),
    NavItem("API tokens", "/tokens", "admin"),
)


def nav_for(user: SessionPrincipal | None) -> list[NavItem]:
    if user is None:
        return []
    return [item for item in NAV if item.scope in user.scopes]


def current_nav(items: list[NavItem], path: str) -> str | None:
    """The entry the page belongs to: the longest matching prefix (``/leads/new`` is "New lead")."""
    matching = [i.href for i in items if path == i.href or (i.href != "/" and path.startswith(i.href + "/"))]
    return max(matching, key=len, default=None)


def page_user(request: Request) -> SessionPrincipal | None:
    user = getattr(request.state, "page_principal", None)
    return user if isinstance(user, SessionPrincipal) else None


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page (or an htmx fragment) with the common context and the security headers."""
    user = page_user(request)
    nav = nav_for(user)
    values: dict[str, Any] = {
        "request": request,
        "user": user,
        "csrf_token": getattr(request.state, "csrf_token", "") or (user.csrf_token if user else ""),
        "nav": nav,
        "current_nav": current_nav(nav, request.url.path),
        "title": "",
    }
    values.update(context or {})
    response = HTMLResponse(
        env.get_template(template).render(values), status_code=status_code, headers=headers
    )
    apply_headers(response)
    return response
