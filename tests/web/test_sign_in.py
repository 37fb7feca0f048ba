"""Sign-in, sessions, CSRF, security headers and role gating of the workspace (httpx over ASGI)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.security import repository, users
from leadflow.security.audit import audit
from leadflow.security.sessions import COOKIE, digest
from tests.conftest import Harness
from tests.web.conftest import Staff, csrf_of, make_user, sign_in


def session_cookie(client: httpx.AsyncClient) -> str | None:
    return client.cookies.get(COOKIE)


async def audit_actions(harness: Harness) -> list[str]:
    async with harness.engine.connect() as conn:
        return [r.action for r in (await conn.execute(select(audit.c.action).order_by(audit.c.id))).all()]


async def test_sign_in_and_out(harness: Harness, sales: Staff) -> None:
    client = harness.client
    anonymous = await client.get("/")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/"
    page = await client.get("/login")
    assert 'for="email">Email<' in page.text and 'for="password">Password<' in page.text
    assert ">Sign in</button>" in page.text

    answer = await sign_in(client, sales)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # plain HTTP here
    inbox = await client.get("/")
    assert inbox.status_code == 200 and "Sales User" in inbox.text

    stored = await harness.scalar("SELECT id_hash FROM sessions")
    assert stored == digest(session_cookie(client) or "") and stored != session_cookie(client)
    assert await harness.scalar("SELECT last_sign_in_at FROM users") is not None

    out = await client.post("/logout", data={"csrf_token": csrf_of(inbox.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert await harness.scalar("SELECT COUNT(*) FROM sessions") == 0
    assert (await client.get("/")).status_code == 303
    assert await audit_actions(harness) == ["auth.sign_in", "auth.sign_out"]


async def test_secure_cookie_over_https(harness: Harness, sales: Staff) -> None:
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        answer = await sign_in(client, sales)
        assert "Secure" in answer.headers["set-cookie"]
        assert (await client.get("/")).status_code == 200


async def test_wrong_password_and_unknown_user(harness: Harness, sales: Staff) -> None:
    wrong = await sign_in(harness.client, Staff(sales.email, "not the password!", "sales"))
    assert wrong.status_code == 401 and "not correct" in wrong.text
    assert 'value="sales@example.com"' in wrong.text and "not the password" not in wrong.text
    unknown = await sign_in(harness.client, Staff("nobody@example.com", "whatever it is", "sales"))
    assert unknown.status_code == 401 and "not correct" in unknown.text
    assert session_cookie(harness.client) is None
    assert await audit_actions(harness) == ["auth.sign_in_failed", "auth.sign_in_failed"]
    reasons = await harness.scalar("SELECT COUNT(*) FROM audit_log WHERE target_id IS NOT NULL")
    assert reasons == 1  # the known account's id; an unknown address is not recorded


class TestLockOut:
    @pytest.fixture
    def settings(self, settings_factory: Callable[..., Settings]) -> Settings:
        return settings_factory(lockout_threshold=2, lockout_base_seconds=60)

    async def test_repeated_failures_lock_the_address_out(self, harness: Harness, sales: Staff) -> None:
        bad = Staff(sales.email, "wrong password here", "sales")
        for _ in range(3):
            assert (await sign_in(harness.client, bad)).status_code == 401
        locked = await sign_in(harness.client, sales)  # even the right password
        assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
        assert int(locked.headers["retry-after"]) > 0
        assert "auth.sign_in_locked" in await audit_actions(harness)
        # The same guard as the API: bad tokens from this address are refused too.
        api = await harness.client.get("/v1/api/campaigns", headers={"Authorization": "Bearer lf_x"})
        assert api.status_code == 429


async def test_session_id_rotates_at_sign_in(harness: Harness, sales: Staff) -> None:
    await sign_in(harness.client, sales)
    first = session_cookie(harness.client)
    await sign_in(harness.client, sales)
    second = session_cookie(harness.client)
    assert first and second and first != second
    assert await harness.scalar("SELECT COUNT(*) FROM sessions") == 1  # the old id was ended
    planted = httpx.AsyncClient(transport=httpx.ASGITransport(app=harness.app), base_url="http://testserver")
    async with planted:
        planted.cookies.set(COOKIE, first)
        assert (await planted.get("/")).status_code == 303


async def _age_session(harness: Harness, **values: Any) -> None:
    async with harness.engine.begin() as conn:
        await conn.execute(update(repository.sessions).values(**values))


class TestExpiry:
    @pytest.fixture
    def settings(self, settings_factory: Callable[..., Settings]) -> Settings:
        return settings_factory(session_idle_minutes=30, session_max_hours=8)

    async def test_idle_expiry(self, harness: Harness, sales: Staff) -> None:
        await sign_in(harness.client, sales)
        await _age_session(harness, last_seen_at=utcnow() - timedelta(minutes=29))
        assert (await harness.client.get("/")).status_code == 200  # and it is touched again
        assert (await harness.scalar("SELECT COUNT(*) FROM sessions")) == 1
        await _age_session(harness, last_seen_at=utcnow() - timedelta(minutes=31))
        answer = await harness.client.get("/?mine=1")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=/%3Fmine%3D1"
        assert await harness.scalar("SELECT COUNT(*) FROM sessions") == 0  # deleted

    async def test_absolute_expiry(self, harness: Harness, sales: Staff) -> None:
        await sign_in(harness.client, sales)
        # Active all along, but signed in more than SESSION_MAX_HOURS ago.
        await _age_session(harness, expires_at=utcnow() - timedelta(seconds=1), last_seen_at=utcnow())
        assert (await harness.client.get("/")).status_code == 303


async def test_deactivated_user_is_signed_out_at_once(harness: Harness, sales: Staff) -> None:
    await sign_in(harness.client, sales)
    assert (await harness.client.get("/")).status_code == 200
    async with harness.engine.begin() as conn:
        await users.deactivate(conn, sales.email)
    assert (await harness.client.get("/")).status_code == 303
    again = await sign_in(harness.client, sales)
    assert again.status_code == 401
    # Even a session row left behind (another process racing) no longer signs anyone in.
    async with harness.engine.begin() as conn:
        await repository.set_active(conn, 1, True)
    await sign_in(harness.client, sales)
    async with harness.engine.begin() as conn:
        await repository.set_active(conn, 1, False)
    assert (await harness.client.get("/")).status_code == 303


async def test_posts_without_csrf_token_are_refused(harness: Harness, sales: Staff) -> None:
    login = await harness.client.post(
        "/login", data={"email": sales.email, "password": sales.password, "next": "/"}
    )
    assert login.status_code == 403 and "<h1>Form expired</h1>" in login.text
    assert login.headers["content-type"].startswith("text/html")
    assert session_cookie(harness.client) is None
    await sign_in(harness.client, sales)
    page = await harness.client.get("/")
    for data in ({}, {"csrf_token": "forged"}):
        refused = await harness.client.post("/logout", data=data)
        assert refused.status_code == 403 and "Form expired" in refused.text
    assert await harness.scalar("SELECT COUNT(*) FROM sessions") == 1
    cross = await harness.client.post(
        "/logout", data={"csrf_token": csrf_of(page.text)}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    # htmx sends the token as a header.
    ok = await harness.client.post("/logout", headers={"X-CSRF-Token": csrf_of(page.text)})
    assert ok.status_code == 303
    assert await harness.scalar("SELECT COUNT(*) FROM sessions") == 0


async def test_next_is_never_an_open_redirect(harness: Harness, sales: Staff) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        answer = await sign_in(harness.client, sales, next=target)
        assert answer.headers["location"] == "/", target
    page = await harness.client.get("/login", params={"next": "//evil.example"})
    assert page.headers["location"] == "/"  # already signed in: straight back, but only locally
    answer = await sign_in(harness.client, sales, next="/leads?status=new")
    assert answer.headers["location"] == "/leads?status=new"


async def test_security_headers_on_every_page(harness: Harness, sales: Staff) -> None:
    pages = [await harness.client.get(path) for path in ("/login", "/", "/reset-password/nothing")]
    await sign_in(harness.client, sales)
    pages += [await harness.client.get("/"), await harness.client.post("/logout", data={})]
    for page in pages:
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert "default-src 'none'" in csp and "style-src 'self'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text and " style=" not in page.text and "<style" not in page.text


async def test_htmx_requests_get_hx_redirect(harness: Harness) -> None:
    answer = await harness.client.get("/", headers={"HX-Request": "true"})
    assert answer.status_code == 401 and answer.headers["hx-redirect"] == "/login?next=/"


async def test_navigation_follows_the_role(harness: Harness) -> None:
    expected = {
        "admin": [
            "Inbox",
            "Leads",
            "New lead",
            "Import",
            "Campaigns",
            "Analytics",
            "Team",
            "Integrations",
            "Audit",
            "API tokens",
        ],
        "manager": ["Inbox", "Leads", "New lead", "Import", "Campaigns", "Analytics"],
        "sales": ["Inbox", "Leads", "Campaigns"],
        "analyst": ["Campaigns", "Analytics"],
    }
    for role, labels in expected.items():
        staff = await make_user(harness, role)
        transport = httpx.ASGITransport(app=harness.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await sign_in(client, staff)
            home = await client.get("/")
            if role == "analyst":  # no leads:read: the inbox sends it to its first page
                assert home.status_code == 303 and home.headers["location"] == "/campaigns"
                continue
            nav = home.text.split('aria-label="Main"')[1].split("</nav>")[0]
            found = [part.split("</a>")[0].split(">")[-1] for part in nav.split("<li>")[1:]]
            assert found == labels, role


async def test_reset_link_sets_a_new_password_once(harness: Harness, sales: Staff) -> None:
    await sign_in(harness.client, sales)
    async with harness.engine.begin() as conn:
        user = await repository.user_by_email(conn, sales.email)
        assert user is not None
        token = await users.create_reset(conn, user, timedelta(minutes=5))
    anonymous = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=harness.app), base_url="http://testserver"
    )
    async with anonymous as client:
        path = users.RESET_PATH + token
        form = await client.get(path)
        assert form.status_code == 200 and "sales@example.com" in form.text
        csrf = csrf_of(form.text)
        differ = await client.post(path, data={"csrf_token": csrf, "password": "x" * 12, "confirm": "y" * 12})
        assert differ.status_code == 400 and "differ" in differ.text
        weak = await client.post(path, data={"csrf_token": csrf, "password": "short", "confirm": "short"})
        assert weak.status_code == 400 and "At least 12 characters" in weak.text.replace(
            "at least", "At least"
        )
        new = "a brand new passphrase"
        done = await client.post(path, data={"csrf_token": csrf, "password": new, "confirm": new})
        assert done.status_code == 303 and done.headers["location"] == "/login?reset=1"
        assert (await client.get(path)).status_code == 404  # used up
        assert (await sign_in(client, Staff(sales.email, new, "sales"))).status_code == 303
        assert (await sign_in(client, sales)).status_code == 401  # the old password is gone
    assert (await harness.client.get("/")).status_code == 303  # sessions ended by the change


async def test_expired_reset_link(harness: Harness, sales: Staff) -> None:
    async with harness.engine.begin() as conn:
        user = await repository.user_by_email(conn, sales.email)
        assert user is not None
        token = await users.create_reset(conn, user, timedelta(seconds=-1))
    answer = await harness.client.get(users.RESET_PATH + token)
    assert answer.status_code == 404 and "expired" in answer.text


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_sessions_are_shared_by_every_api_process(harness: Harness, sales: Staff) -> None:
    """Two applications on one database (two API processes): a session made by one works on the
    other, and a sign-out or deactivation on one ends it on both."""
    from leadflow.app import create_app

    second = create_app(harness.settings)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            await sign_in(harness.client, sales)
            other.cookies.set(COOKIE, session_cookie(harness.client) or "")
            page = await other.get("/")
            assert page.status_code == 200 and "Sales User" in page.text
            assert (await other.post("/logout", data={"csrf_token": csrf_of(page.text)})).status_code == 303
            assert (await harness.client.get("/")).status_code == 303

            await sign_in(other, sales)
            assert (await other.get("/")).status_code == 200
            async with harness.engine.begin() as conn:
                await users.deactivate(conn, sales.email)
            assert (await other.get("/")).status_code == 303
