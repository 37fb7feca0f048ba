"""embed.js, the no-JS post and the hosted form in real headless Chromium (Debian's ``chromium``).

Leadflow runs as a real uvicorn server on one free 127.0.0.1 port; the landing pages come from a
second server on another port (another origin), and ``http://localhost:<that port>`` serves as an
origin the campaign does not allow. One browser for the module; every wait is bounded.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.migrations.runner import upgrade_async
from tests.conftest import REPO, SUBMITTED_PII, TEST_KEY, run_async
from tests.fuzz.test_openapi_fuzz import _Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTEFACTS = REPO / "var" / "test-artifacts"
CAMPAIGN = "kit-browser"
WAIT_MS = 15_000  # the longest any single wait in this module may take


def _require_browser() -> Any:
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "playwright is not installed (pip install -e '.[dev]')"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


@dataclass
class Site:
    api: str  # Leadflow, e.g. http://127.0.0.1:41234
    landing: str  # the landing pages' origin (allowed by the campaign)
    foreign: str  # the same pages from an origin the campaign does not allow
    auth: dict[str, str]

    def leads(self, email: str) -> list[dict[str, Any]]:
        """Every stored lead of the campaign with this address, in detail."""
        listed = httpx.get(
            f"{self.api}/v1/api/leads", params={"campaign_id": CAMPAIGN, "limit": 200}, headers=self.auth
        )
        assert listed.status_code == 200, listed.text
        found = []
        for item in listed.json()["items"]:
            if item["email"] == email:
                detail = httpx.get(f"{self.api}/v1/api/leads/{item['lead_id']}", headers=self.auth)
                found.append(detail.json())
        return found

    def wait_for_lead(self, email: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            found = self.leads(email)
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no lead arrived for {email}")


def _page(api: str, query: dict[str, list[str]]) -> str:
    consent = (query.get("consent") or ["none"])[0]
    head = {
        "granted": '<script>window.Leadflow = [["consent", "granted"]];</script>',
        "denied": '<script>window.Leadflow = [["consent", "denied"]];</script>',
        "gcm-granted": "<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);}"
        " gtag('consent', 'default', {analytics_storage: 'denied'});"
        " gtag('consent', 'update', {analytics_storage: 'granted'});</script>",
        "none": "",
    }[consent]
    novalidate = " novalidate" if "novalidate" in query else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Landing</title>{head}
<script src="{api}/v1/embed.js" defer></script></head><body>
<h1>Nextcloud installation</h1><a id="next" href="/page?consent={consent}">Pricing</a>
<form data-leadflow-campaign="{CAMPAIGN}" action="{api}/v1/forms/{CAMPAIGN}" method="post"{novalidate}>
<label>First name <input name="firstName" required></label>
<label>Last name <input name="lastName" required></label>
<label>Email <input name="email" type="email" required></label>
<label>Company <input name="company"></label>
<label>Service <input name="service_interest"></label>
<label>Urgency <select name="urgency"><option value="">-</option><option>High (Same day)</option></select></label>
<label>Message <textarea name="message"></textarea></label>
<label><input type="checkbox" name="consent_given" value="true"> You may contact me</label>
<button type="submit">Send</button></form></body></html>"""


def _landing_server(api: str) -> ThreadingHTTPServer:
    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/page":
                body = _page(api, parse_qs(url.query, keep_blank_values=True))
            elif url.path == "/frame":
                body = f'<!doctype html><title>Frame</title><iframe src="{api}/f/{CAMPAIGN}" title="Form"></iframe>'
            else:
                body = "<!doctype html><title>Thanks</title><h1>Thanks page</h1>"
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    server.daemon_threads = True
    return server


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    _require_browser()
    db = tmp_path_factory.mktemp("browser") / "browser.db"
    run_async(upgrade_async(f"sqlite+aiosqlite:///{db}"))
    settings = Settings(
        database_url=f"sqlite:///{db}",
        encryption_key=TEST_KEY,
        leadflow_env="test",
        run_worker=False,
        rate_limit_per_ip="100000/minute",
        lockout_threshold=100000,
        bot_min_fill_seconds=1.0,
        gc_freeze=False,
    )
    with _Server(create_app(settings)) as server:
        landing = _landing_server(server.url)
        thread = threading.Thread(target=landing.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            port = landing.server_address[1]
            from leadflow.db import create_engine
            from leadflow.security.tokens import create_token

            async def token() -> str:
                engine = create_engine(settings)
                try:
                    async with engine.begin() as conn:
                        return (await create_token(conn, name="browser", role="admin")).token
                finally:
                    await engine.dispose()

            auth = {"Authorization": f"Bearer {run_async(token())}"}
            origin = f"http://127.0.0.1:{port}"
            created = httpx.post(
                f"{server.url}/v1/api/campaigns",
                headers=auth,
                json={
                    "id": CAMPAIGN,
                    "name": "Nextcloud Installation",
                    "campaign_type": "service",
                    "services": ["Nextcloud Installation", "Nextcloud Backup"],
                    "allowed_origins": [origin],
                    "frame_ancestors": [origin],
                    "thank_you_url": f"{origin}/thanks",
                    "form_title": "Get Nextcloud installed",
                    "form_intro": "Tell us about your team; we call back within two hours.",
                    "consent_text": "I agree that Nexlink may contact me about my request.",
                    "privacy_notice_url": f"{origin}/privacy",
                    "privacy_notice_version": "2025-09",
                },
            )
            assert created.status_code == 201, created.text
            yield Site(server.url, origin, f"http://localhost:{port}", auth)
        finally:
            landing.shutdown()
            landing.server_close()


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (skips, or fails under CI, without it)."""
    sync_playwright = _require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=WAIT_MS * 2
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def new_context(browser: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(**options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def _email(name: str) -> str:
    address = f"{name}@browser-test.example.com"
    SUBMITTED_PII.add(address)
    return address


def _fill(page: Any, email: str, *, wait_ms: int = 1100) -> None:
    page.wait_for_timeout(wait_ms)  # a person takes longer than BOT_MIN_FILL_SECONDS (1 s here)
    page.fill("input[name=firstName]", "Ada")
    page.fill("input[name=lastName]", "Lovelace")
    page.fill("input[name=email]", email)
    page.fill("input[name=company]", "Analytical Engines Ltd")
    page.fill("input[name=service_interest]", "Nextcloud Installation")
    page.select_option("select[name=urgency]", "High (Same day)")
    page.check("input[name=consent_given]")


def _listen(page: Any) -> None:
    page.evaluate(
        """() => { window.__events = [];
        for (const name of ["leadflow:success", "leadflow:error"])
          document.addEventListener(name, (e) => window.__events.push([e.type, e.detail])); }"""
    )


def _state(page: Any, state: str) -> None:
    page.wait_for_selector(f"form[data-leadflow-state={state}]", timeout=WAIT_MS)


def _storage(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            "() => ({local: {...localStorage}, session: {...sessionStorage}, cookie: document.cookie})"
        )
    )


def test_submit_carries_utm_time_on_page_referrer_and_a_visitor(site: Site, new_context: Any) -> None:
    page = new_context().new_page()
    started = time.monotonic()
    page.goto(
        f"{site.landing}/page?consent=granted&utm_source=google&utm_medium=cpc&utm_campaign=nc-q4"
        "&utm_term=nextcloud&utm_content=ad-a",
        referer="https://www.google.com/search?q=nextcloud+installation",
    )
    _listen(page)
    email = _email("utm")
    _fill(page, email, wait_ms=3000)
    spent = time.monotonic() - started
    page.click("button[type=submit]")
    _state(page, "success")
    events = page.evaluate("window.__events")
    lead = site.wait_for_lead(email)
    assert events == [["leadflow:success", {"lead_id": lead["lead_id"]}]]
    assert (lead["utm_source"], lead["utm_medium"], lead["utm_campaign"]) == ("google", "cpc", "nc-q4")
    assert (lead["utm_term"], lead["utm_content"]) == ("nextcloud", "ad-a")
    assert lead["referrer_url"] == "https://www.google.com/search?q=nextcloud+installation"
    assert lead["landing_page_url"].startswith(f"{site.landing}/page?consent=granted&utm_source=google")
    assert abs(lead["time_on_page_seconds"] - spent) <= 1.5, (lead["time_on_page_seconds"], spent)
    assert lead["visitor_id"].startswith("vis_") and lead["session_id"].startswith("sess_")
    assert (lead["visit_count"], lead["returning_visitor"]) == (1, False)
    assert (lead["source"], lead["form_type"], lead["consent_given"]) == ("embed", "embed", True)
    assert lead["channel"] == "Paid Search"
    # What the visitor sees: the state, a message; the outbox is empty again.
    assert "leadflow.outbox" not in _storage(page)["local"]


def test_utm_survive_a_second_page_and_the_next_visit_is_returning(site: Site, new_context: Any) -> None:
    context = new_context()
    page = context.new_page()
    # Google Consent Mode (analytics_storage: granted) instead of Leadflow.consent().
    page.goto(f"{site.landing}/page?consent=gcm-granted&utm_source=newsletter&utm_medium=email")
    page.click("#next")
    page.wait_for_url(f"{site.landing}/page?consent=gcm-granted")
    first = _email("second-page")
    _fill(page, first)
    page.click("button[type=submit]")
    _state(page, "success")
    lead = site.wait_for_lead(first)
    assert (lead["utm_source"], lead["utm_medium"]) == ("newsletter", "email")
    assert "utm_source=newsletter" in lead["landing_page_url"]
    assert lead["returning_visitor"] is False
    assert lead["first_touch"]["utm_source"] == "newsletter"  # tracking.first_touch is kept
    assert lead["first_touch"]["utm_medium"] == "email" and lead["first_touch"]["at"] is not None
    page.close()

    again = context.new_page()  # a new tab: a new session of the same visitor
    again.goto(f"{site.landing}/page?consent=gcm-granted")
    colleague = _email("returning")
    _fill(again, colleague)
    again.click("button[type=submit]")
    _state(again, "success")
    second = site.wait_for_lead(colleague)
    assert second["visitor_id"] == lead["visitor_id"]
    assert (second["visit_count"], second["returning_visitor"]) == (2, True)
    assert second["utm_source"] == "newsletter"  # last touch, kept for 90 days
    # A later visit from an ad: that is the last touch now, the newsletter stays the first.
    again.goto(f"{site.landing}/page?consent=gcm-granted&utm_source=ads&utm_medium=cpc")
    third_email = _email("third-visit")
    _fill(again, third_email)
    again.click("button[type=submit]")
    _state(again, "success")
    third = site.wait_for_lead(third_email)
    assert (third["utm_source"], third["utm_medium"]) == ("ads", "cpc")
    assert (third["first_touch"]["utm_source"], third["first_touch"]["utm_medium"]) == ("newsletter", "email")
    # Consent withdrawn: the identifiers and the UTM history go.
    assert "leadflow.visitor" in _storage(again)["local"]
    again.evaluate("Leadflow.consent('denied')")
    assert _storage(again) == {"local": {}, "session": {}, "cookie": ""}


def test_offline_during_submit_arrives_exactly_once(site: Site, new_context: Any) -> None:
    context = new_context()
    page = context.new_page()
    page.goto(f"{site.landing}/page?consent=granted")
    email = _email("offline")
    _fill(page, email)
    context.set_offline(True)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-leadflow-message][data-kind=info]", timeout=WAIT_MS)
    assert page.get_attribute("form", "data-leadflow-state") == "sending"
    assert site.leads(email) == []
    context.set_offline(False)  # reconnect: sent from the same page
    _state(page, "success")
    assert len(site.leads(email)) == 1

    # Cut during submit, page closed while offline: sent on the next page view, exactly once.
    # The first page is closed too: an open page of the site sends the shared outbox when the
    # browser comes back online (as it should), which would race the "nothing sent yet" check.
    page.close()
    later = _email("next-view")
    page = context.new_page()
    page.goto(f"{site.landing}/page?consent=granted")
    _fill(page, later)
    context.set_offline(True)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-leadflow-message][data-kind=info]", timeout=WAIT_MS)
    assert "leadflow.outbox" in _storage(page)["local"]
    page.close()
    context.set_offline(False)
    # Not asserted: that nothing arrives before the next view. About 1 run in 10, Chromium delivered the
    # submission right after reconnecting although its page was closed. The issue asks for "after
    # reconnect or on the next page view, exactly once", and the checks below hold in both cases.
    view = context.new_page()
    view.goto(f"{site.landing}/page?consent=granted")
    lead = site.wait_for_lead(later)
    view.wait_for_function("() => !localStorage.getItem('leadflow.outbox')", timeout=WAIT_MS)
    view.reload()
    view.wait_for_timeout(500)
    assert [x["lead_id"] for x in site.leads(later)] == [lead["lead_id"]]


def test_400_marks_the_right_input_and_a_fixed_form_goes_through(site: Site, new_context: Any) -> None:
    page = new_context().new_page()
    page.goto(f"{site.landing}/page?consent=granted&novalidate=1")
    _listen(page)
    _fill(page, "not-an-email")
    page.click("button[type=submit]")
    _state(page, "error")
    email = page.locator("input[name=email]")
    assert email.get_attribute("aria-invalid") == "true"
    described = email.get_attribute("aria-describedby")
    assert described
    assert "email" in page.locator(f"#{described}").inner_text().lower()
    assert page.locator("input[name=firstName]").get_attribute("aria-invalid") is None
    assert page.evaluate("document.activeElement.name") == "email"
    kind, detail = page.evaluate("window.__events")[0]
    assert (kind, detail["error"], detail["field"], detail["code"]) == (
        "leadflow:error",
        "VALIDATION_ERROR",
        "contact.email",
        400,
    )
    fixed = _email("fixed")
    page.fill("input[name=email]", fixed)
    page.click("button[type=submit]")
    _state(page, "success")
    assert email.get_attribute("aria-invalid") is None
    assert page.locator(f"#{described}").count() == 0
    lead = site.wait_for_lead(fixed)
    # The same person again (a new submission, new key): a 409 duplicate, shown as success.
    page.click("button[type=submit]")
    page.wait_for_function("() => window.__events.length === 3", timeout=WAIT_MS)
    assert page.evaluate("window.__events")[2] == ["leadflow:success", {"lead_id": lead["lead_id"]}]
    assert page.get_attribute("form", "data-leadflow-state") == "success"
    assert len(site.leads(fixed)) == 1


def test_a_lost_answer_and_a_503_are_retried_with_the_same_key(site: Site, new_context: Any) -> None:
    page = new_context().new_page()
    seen: list[tuple[str, str | None]] = []

    def flaky(route: Any) -> None:
        request = route.request
        if request.method != "POST":
            route.continue_()
            return
        seen.append((request.post_data_json["contact"]["email"], request.headers.get("idempotency-key")))
        attempts = sum(1 for email, _ in seen if email == seen[-1][0])
        if attempts == 1 and seen[-1][0].startswith("lost"):
            route.fetch()  # the lead is stored, then the connection drops before the answer
            route.abort("connectionreset")
        elif attempts == 1:
            route.fulfill(
                status=503,
                headers={
                    "Retry-After": "1",
                    "Access-Control-Allow-Origin": site.landing,
                    "Access-Control-Expose-Headers": "Retry-After",
                },
                json={"success": False, "error": "SERVICE_UNAVAILABLE", "message": "down", "code": 503},
            )
        else:
            route.continue_()

    page.route(f"{site.api}/v1/api/leads", flaky)
    for name in ("lost", "unavailable"):
        page.goto(f"{site.landing}/page?consent=granted")
        email = _email(name)
        _fill(page, email)
        page.click("button[type=submit]")
        _state(page, "success")
        keys = [key for sent, key in seen if sent == email]
        assert len(keys) == 2 and keys[0] == keys[1] and keys[0]
        assert len(site.leads(email)) == 1


@pytest.mark.parametrize("consent", ["denied", "none"])
def test_consent_denied_or_unknown_stores_nothing_and_the_lead_still_arrives(
    site: Site, new_context: Any, consent: str
) -> None:
    context = new_context()
    page = context.new_page()
    page.goto(f"{site.landing}/page?consent={consent}&utm_source=google&utm_medium=cpc")
    email = _email(f"consent-{consent}")
    _fill(page, email)
    page.click("button[type=submit]")
    _state(page, "success")
    assert context.cookies() == []
    assert _storage(page) == {"local": {}, "session": {}, "cookie": ""}
    lead = site.wait_for_lead(email)
    assert lead["visitor_id"] is None and lead["session_id"] is None
    assert lead["utm_source"] is None and lead["time_on_page_seconds"] is None
    assert lead["referrer_url"] is None and lead["landing_page_url"] is None


def test_no_js_post_redirects_to_the_thank_you_page_and_is_stored(site: Site, new_context: Any) -> None:
    page = new_context(java_script_enabled=False).new_page()
    page.goto(f"{site.landing}/page")
    email = _email("nojs")
    _fill(page, email)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.landing}/thanks", timeout=WAIT_MS)
    lead = site.wait_for_lead(email)
    assert (lead["form_type"], lead["source"], lead["consent_given"]) == ("html", "landing-page", True)
    assert lead["visitor_id"] is None


def test_a_page_from_an_origin_the_campaign_does_not_allow_is_refused(site: Site, new_context: Any) -> None:
    page = new_context().new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(f"{site.foreign}/page?consent=granted")
    email = _email("foreign")
    _fill(page, email)
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some((e) => e.name.endsWith('/v1/api/leads'))",
        timeout=WAIT_MS,
    )
    page.wait_for_timeout(1500)  # the first retry comes and fails too
    assert f"{site.api}/v1/api/leads" in failed
    assert page.get_attribute("form", "data-leadflow-state") != "success"
    assert site.leads(email) == []
    # The API says why, to a client that is not a browser.
    refused = httpx.options(
        f"{site.api}/v1/api/leads",
        headers={"Origin": site.foreign, "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


def test_hosted_form_at_phone_width_is_labelled_keyboard_usable_and_stores(
    site: Site, new_context: Any
) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 900), (375, 740)):
        page = new_context(viewport={"width": width, "height": height}).new_page()
        page.goto(f"{site.api}/f/{CAMPAIGN}?utm_source=qr&utm_medium=print")
        page.wait_for_function("() => window.Leadflow && window.Leadflow.version")
        page.screenshot(path=str(ARTEFACTS / f"hosted-form-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter((el) => el.name !== 'lf_hp' && el.labels.length === 0).map((el) => el.name)"""
    )
    assert unlabelled == []
    assert page.locator("select[name=service_interest] option").all_inner_texts() == [
        "Choose…",
        "Nextcloud Installation",
        "Nextcloud Backup",
    ]
    # Keyboard only: Tab into the form, type, tick the consent box with Space, send with Enter.
    email = _email("hosted")
    page.wait_for_timeout(1100)
    order: list[str] = []
    for value in ("Grace", "Hopper", email):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.name"))
        page.keyboard.type(value)
    assert order == ["firstName", "lastName", "email"]
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "consent_given":
            break
    page.keyboard.press("Space")
    assert page.is_checked("input[name=consent_given]")
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.type") == "submit":
            break
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site.landing}/thanks", timeout=WAIT_MS)
    lead = site.wait_for_lead(email)
    assert (lead["source"], lead["form_type"], lead["consent_given"]) == ("landing-page", "hosted", True)
    assert (lead["utm_source"], lead["utm_medium"]) == ("qr", "print")


def test_hosted_form_in_an_iframe_of_an_allowed_page(site: Site, new_context: Any) -> None:
    page = new_context().new_page()
    page.goto(f"{site.landing}/frame")
    heading = page.frame_locator("iframe").locator("h1")
    assert heading.inner_text(timeout=WAIT_MS) == "Get Nextcloud installed"
