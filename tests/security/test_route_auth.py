"""Every non-public route rejects a missing or wrong token (401) and a role without the scope (403)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute

from leadflow.kit.state import state_of
from leadflow.security.tokens import SCOPES
from leadflow.web.auth import PageRoute
from tests.conftest import Harness

PUBLIC = {("POST", "/v1/api/leads"), ("GET", "/healthz"), ("OPTIONS", "/v1/api/leads")}
# The landing-page kit (docs/embed.md): the script, the no-JS form post and the hosted form pages.
PUBLIC |= {
    ("GET", "/v1/embed.js"),
    ("GET", "/v1/embed-some-id.js"),
    ("GET", "/v1/embed.json"),
    ("POST", "/v1/forms/some-id"),
    ("GET", "/f/some-id"),
    ("GET", "/f/some-id/thanks"),
    # The e-mail's unsubscribe link is its own credential (signed, expiring, single use).
    ("GET", "/v1/unsubscribe/some-id"),
    ("POST", "/v1/unsubscribe/some-id"),
}
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Open to loopback (this test's client), else the `metrics` scope: tests/observability/test_metrics.py.
LOOPBACK_OPEN = {("GET", "/metrics")}


def _api_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Flatten routes, including routers that newer FastAPI keeps as included-router entries."""
    flat: list[tuple[str, APIRoute]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            flat.append((prefix, route))
        elif getattr(route, "original_router", None) is not None:
            context = getattr(route, "include_context", None)
            flat += _api_routes(route.original_router.routes, prefix + (getattr(context, "prefix", "") or ""))
    return flat


def _routes(app: Any) -> list[tuple[str, str, str | None]]:
    """(method, concrete path, required scope) for every API route."""
    found = []
    for prefix, route in _api_routes(app.routes):
        if route.path in DOCS or isinstance(route, PageRoute):  # workspace pages: tests/web/test_page_auth.py
            continue
        scope = None
        pending = list(route.dependant.dependencies)  # the whole tree: change_dependency() wraps require()
        while pending:
            dep = pending.pop()
            pending += dep.dependencies
            name = getattr(dep.call, "__name__", "")
            if name.startswith("require_"):
                scope = name.removeprefix("require_").replace("_", ":", 1)
        path = re.sub(r"\{lead_id\}", "lead_0123456789ab", prefix + route.path)
        path = re.sub(r"\{[^}]+\}", "some-id", path)
        for method in route.methods:
            found.append((method, path, scope))
    return found


async def test_every_route_is_protected(harness: Harness) -> None:
    routes = _routes(harness.app)
    assert len(routes) >= 12
    tokens = {role: await harness.token(role) for role in SCOPES}
    checked = 0
    for method, path, scope in routes:
        if (method, path) in PUBLIC:
            assert scope is None
            continue
        if (method, path) in LOOPBACK_OPEN:
            continue
        assert scope is not None, f"{method} {path} has no scope requirement"
        missing = await harness.client.request(method, path)
        assert missing.status_code == 401, (method, path)
        assert missing.json()["error"] == "UNAUTHORIZED"
        wrong = await harness.client.request(
            method, path, headers={"Authorization": "Bearer lf_not-a-real-token"}
        )
        assert wrong.status_code == 401, (method, path)
        for role, scopes in SCOPES.items():
            response = await harness.client.request(method, path, headers=tokens[role], json={})
            if scope in scopes:
                assert response.status_code != 403, (method, path, role)
            else:
                assert response.status_code == 403, (method, path, role, response.status_code)
                assert response.json()["error"] == "FORBIDDEN"
        checked += 1
    assert checked >= 10


async def test_revoked_and_expired_tokens_are_refused(harness: Harness) -> None:
    from datetime import timedelta

    from leadflow.kit.clock import utcnow

    headers = await harness.token("admin")
    assert (await harness.client.get("/v1/api/campaigns", headers=headers)).status_code == 200
    await harness.execute("UPDATE api_tokens SET revoked_at = :t", t=utcnow())
    state_of(harness.app).tokens.forget()
    assert (await harness.client.get("/v1/api/campaigns", headers=headers)).status_code == 401

    expired = await harness.token("admin")
    await harness.execute(
        "UPDATE api_tokens SET expires_at = :t WHERE revoked_at IS NULL", t=utcnow() - timedelta(seconds=1)
    )
    state_of(harness.app).tokens.forget()
    assert (await harness.client.get("/v1/api/campaigns", headers=expired)).status_code == 401


async def test_tokens_are_stored_hashed(harness: Harness) -> None:
    headers = await harness.token("admin")
    secret = headers["Authorization"].split()[1]
    stored = await harness.scalar("SELECT token_hash FROM api_tokens")
    assert secret not in stored
    assert len(stored) == 64
