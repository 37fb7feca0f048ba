"""Sign-in in real headless Chromium at a phone's width: screenshots and axe-core accessibility checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.web.browser import PHONE, Live, axe_violations, browser, live, page_for, screenshot, sign_in

__all__ = ["browser", "live", "page_for"]  # fixtures


def test_sign_in_at_phone_width(live: Live, page_for: Callable[..., Any]) -> None:
    page = page_for(viewport=PHONE)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    page.goto(f"{live.url}/")
    assert page.url.endswith("/login?next=/")
    screenshot(page, "web-login-375")
    assert axe_violations(page) == []

    page.get_by_label("Email").fill("sales@example.com")
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("The e-mail address or password is not correct")
    assert axe_violations(page) == []

    sign_in(page, live, "sales")
    assert page.url == f"{live.url}/"
    assert page.get_by_role("heading", name="Inbox").is_visible()
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Inbox").get_attribute("aria-current") == "page"
    assert nav.get_by_role("link", name="Audit").count() == 0  # sales: no admin pages
    # Nothing is wider than the phone (the navigation scrolls inside its own row).
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "web-inbox-375")
    assert axe_violations(page) == []
    # htmx and app.js loaded under the strict CSP, no violation reported.
    assert page.evaluate("typeof htmx") == "object"
    assert not [e for e in errors if "Content Security Policy" in e], errors

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live.url}/login")
    page.goto(f"{live.url}/")
    assert "/login" in page.url


def test_docs_render_offline(live: Live, page_for: Callable[..., Any]) -> None:
    page = page_for()
    outside: list[str] = []
    page.on(
        "request", lambda request: None if request.url.startswith(live.url) else outside.append(request.url)
    )
    page.goto(f"{live.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Leadflow" in page.inner_text(".swagger-ui .info .title")
    assert outside == []


def test_admin_navigation_fits_a_phone(live: Live, page_for: Callable[..., Any]) -> None:
    page = page_for(viewport=PHONE)
    sign_in(page, live, "admin")
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link").count() == 10  # with "API tokens"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    nav.get_by_role("link", name="Audit").focus()  # the row scrolls to a focused link
    screenshot(page, "web-admin-nav-375")
    assert axe_violations(page) == []
