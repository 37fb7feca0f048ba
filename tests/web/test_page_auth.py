"""Every workspace page refuses anonymous visitors and every change needs a CSRF token — for the page
modules that exist now and those added later (the routes are discovered, not listed)."""

from __future__ import annotations

import re
from typing import Any

from leadflow.web.auth import PageRoute
from tests.conftest import Harness
from tests.web.conftest import csrf_of

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout")}
PUBLIC_PREFIXES = ("/reset-password/",)  # the link is its own credential (one-time, expiring)


def _page_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, PageRoute):
            path = re.sub(r"\{lead_id\}", "lead_0123456789ab", prefix + route.path)
            path = re.sub(r"\{[^}]+\}", "1", path)
            found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
        elif getattr(route, "original_router", None) is not None:
            context = getattr(route, "include_context", None)
            found += _page_routes(
                route.original_router.routes, prefix + (getattr(context, "prefix", "") or "")
            )
    return found


async def test_every_page_needs_a_signed_in_user(harness: Harness) -> None:
    routes = _page_routes(harness.app.routes)
    assert ("GET", "/") in routes and ("POST", "/login") in routes
    form = await harness.client.get("/login")
    token = csrf_of(form.text)
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC or path.startswith(PUBLIC_PREFIXES):
            continue
        if method == "GET":
            answer = await harness.client.get(path)
            assert answer.status_code == 303, (method, path)
            assert answer.headers["location"].startswith("/login?next="), (method, path)
        else:
            refused = await harness.client.request(method, path, data={})
            assert refused.status_code == 403 and "Form expired" in refused.text, (method, path)
            answer = await harness.client.request(method, path, data={"csrf_token": token})
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), (
                method,
                path,
            )
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        checked += 1
    assert checked >= 1


async def test_page_routes_are_not_in_the_api_schema(harness: Harness) -> None:
    schema = (await harness.client.get("/openapi.json")).json()
    assert "/login" not in schema["paths"] and "/" not in schema["paths"]
