"""The landing-page kit over HTTP: embed.js delivery, campaign form fields, the no-JS endpoint, hosted forms."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from leadflow.forms.embed import GZIP_BUDGET, embed_script
from leadflow.forms.service import HostedForm, form_post, input_name
from leadflow.kit.clock import utcnow
from tests.conftest import SUBMITTED_PII, Harness

ORIGIN = "https://nexlink.website"
FORM = "application/x-www-form-urlencoded"
CAMPAIGN = "nextcloud-installation-2025"


def _email(name: str) -> str:
    address = f"{name}@forms-test.example.com"
    SUBMITTED_PII.add(address)
    return address


def _fields(email: str, **extra: str) -> dict[str, str]:
    return {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": email,
        "company": "Analytical Engines Ltd",
        "service_interest": "Nextcloud Installation",
        "urgency": "High (Same day)",
        "consent_given": "true",
        **extra,
    }


async def _configure(h: Harness, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await h.client.patch(f"/v1/api/campaigns/{CAMPAIGN}", headers=admin, json=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _leads(h: Harness, admin: dict[str, str], email: str) -> list[dict[str, Any]]:
    listed = await h.client.get("/v1/api/leads", params={"campaign_id": CAMPAIGN}, headers=admin)
    found = []
    for item in listed.json()["items"]:
        if item["email"] == email:
            found.append((await h.client.get(f"/v1/api/leads/{item['lead_id']}", headers=admin)).json())
    return found


# ------------------------------------------------------------------------------------------ the script


def test_embed_script_fits_its_size_budget() -> None:
    asset = embed_script()
    assert len(gzip.compress(asset.body, 9)) <= GZIP_BUDGET == 6 * 1024
    assert gzip.decompress(asset.gzipped) == asset.body


async def test_embed_script_is_served_cacheable_cross_origin_with_integrity(harness: Harness) -> None:
    client = harness.client
    info = (await client.get("/v1/embed.json")).json()
    plain = await client.get("/v1/embed.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert plain.headers["cache-control"] == "public, max-age=3600"
    assert plain.headers["access-control-allow-origin"] == "*"
    assert plain.headers["cross-origin-resource-policy"] == "cross-origin"
    body = plain.content
    assert info["integrity"] == "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
    assert info["version"] == hashlib.sha256(body).hexdigest()[:16]
    assert info["path"] == f"/v1/embed-{info['version']}.js"
    assert (info["bytes"], info["gzip_bytes"]) == (len(body), len(embed_script().gzipped))

    versioned = await client.get(info["path"])  # httpx asks for gzip and decodes it
    assert versioned.headers["content-encoding"] == "gzip"
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.content == body
    again = await client.get(info["path"], headers={"If-None-Match": versioned.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    stale = await client.get("/v1/embed-0000000000000000.js")
    assert stale.status_code == 404 and stale.json()["error"] == "NOT_FOUND"


# ------------------------------------------------------------------------------ campaign form fields


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_campaign_form_fields_round_trip(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    assert campaign["frame_ancestors"] == [] and campaign["thank_you_url"] is None
    fields = {
        "form_title": "Get Nextcloud installed",
        "form_intro": "Tell us about your team.\nWe call back within two hours.",
        "thank_you_url": "https://nexlink.website/thanks",
        "consent_text": "I agree that Nexlink may contact me.",
        "privacy_notice_url": "https://nexlink.website/privacy",
        "privacy_notice_version": "2025-09",
        "frame_ancestors": ["https://Nexlink.website/", "https://partner.example"],
    }
    updated = await _configure(harness, admin, **fields)
    read = (await harness.client.get(f"/v1/api/campaigns/{CAMPAIGN}", headers=admin)).json()
    expected = {**fields, "frame_ancestors": ["https://nexlink.website", "https://partner.example"]}
    for body in (updated, read):
        assert {k: body[k] for k in fields} == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("thank_you_url", "javascript:alert(1)"),
        ("thank_you_url", "/thanks"),
        ("privacy_notice_url", "ftp://example.com/privacy"),
        ("frame_ancestors", ["https://nexlink.website/page"]),
        ("form_title", "x" * 256),
        # These reach the CSP and Location headers: no added CSP directive or source, no header break.
        ("frame_ancestors", ["https://nexlink.website;script-src *"]),
        ("frame_ancestors", ["https://nexlink.website https://evil.example"]),
        ("frame_ancestors", ["https://nexlink.website,https://evil.example"]),
        ("frame_ancestors", ["https://nexlink.website\x0c;report-uri x"]),
        ("thank_you_url", "https://nexlink.website;script-src */thanks"),
        ("thank_you_url", "https://nexlink.website/thanks\r\nSet-Cookie: a=b"),
        ("thank_you_url", "https://nexlink.website\x00/thanks"),
        ("thank_you_url", "https://[::1/thanks"),
        ("thank_you_url", "https://nexlink.website:99999/thanks"),
        ("thank_you_url", "https://nexlink.website@evil.example/thanks"),
    ],
)
async def test_campaign_form_fields_are_validated(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], field: str, value: Any
) -> None:
    response = await harness.client.patch(f"/v1/api/campaigns/{CAMPAIGN}", headers=admin, json={field: value})
    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"
    assert response.json()["field"].startswith(field)


async def test_international_hosts_are_stored_in_their_idna_form(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    """A non-ASCII host cannot go into a header as it is: the hosted form page was a 500."""
    body = await _configure(
        harness,
        admin,
        thank_you_url="https://Bücher.example/danke?x=ü",
        frame_ancestors=["https://例え.jp"],
    )
    assert body["thank_you_url"] == "https://xn--bcher-kva.example/danke?x=ü"
    assert body["frame_ancestors"] == ["https://xn--r8jz45g.jp"]
    page = await harness.client.get(f"/f/{CAMPAIGN}")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "form-action 'self' https://xn--bcher-kva.example;" in csp
    assert "frame-ancestors 'self' https://xn--r8jz45g.jp;" in csp
    post = await harness.client.post(f"/v1/forms/{CAMPAIGN}", data=_fields(_email("idna")))
    assert post.status_code == 303
    assert post.headers["location"] == "https://xn--bcher-kva.example/danke?x=%C3%BC"


def test_stored_values_that_would_break_the_csp_are_left_out() -> None:
    """Rows written before the schema checked these values never reach the header as they are."""
    form = HostedForm(
        campaign_id=CAMPAIGN,
        name="n",
        status="active",
        has_token=False,
        title="t",
        intro=None,
        services=(),
        thank_you_url="https://a.example;script-src */x",
        consent_text="c",
        privacy_notice_url=None,
        privacy_notice_version=None,
        frame_ancestors=("https://ok.example", "https://b.example; script-src *", "https://例え.jp"),
    )
    assert form.form_action_csp() == "'self'"
    assert form.frame_ancestors_csp() == "'self' https://ok.example"
    assert replace(form, thank_you_url="https://[::1/x").form_action_csp() == "'self'"


# ------------------------------------------------------------------------------------ no-JS endpoint


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_form_post_is_stored_and_redirected(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    await _configure(harness, admin, thank_you_url="https://nexlink.website/thanks", allowed_origins=[ORIGIN])
    email = _email("nojs")
    started = (utcnow() - timedelta(seconds=40)).isoformat()
    data = _fields(
        email, utm_source="newsletter", lf_started=started, lf_key="k-1", consent_notice_version="v3"
    )
    response = await harness.client.post(f"/v1/forms/{CAMPAIGN}", data=data, headers={"Origin": ORIGIN})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "https://nexlink.website/thanks"
    [lead] = await _leads(harness, admin, email)
    assert (lead["first_name"], lead["company"], lead["service_interest"]) == (
        "Ada",
        "Analytical Engines Ltd",
        "Nextcloud Installation",
    )
    assert (lead["source"], lead["form_type"], lead["consent_given"], lead["utm_source"]) == (
        "landing-page",
        "html",
        True,
        "newsletter",
    )
    # The same page sent again (same lf_key): the original answer, no second lead.
    again = await harness.client.post(f"/v1/forms/{CAMPAIGN}", data=data, headers={"Origin": ORIGIN})
    assert again.status_code == 303
    # Another key, same person: a duplicate, which the visitor sees as success.
    dup = await harness.client.post(
        f"/v1/forms/{CAMPAIGN}", data={**data, "lf_key": "k-2"}, headers={"Origin": ORIGIN}
    )
    assert dup.status_code == 303
    assert len(await _leads(harness, admin, email)) == 1


async def test_form_post_without_thank_you_url_goes_to_the_plain_page(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    response = await harness.client.post(f"/v1/forms/{CAMPAIGN}", data=_fields(_email("plain")))
    assert response.status_code == 303
    assert response.headers["location"] == f"/f/{CAMPAIGN}/thanks"
    page = await harness.client.get(response.headers["location"])
    assert page.status_code == 200 and "Thank you!" in page.text


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.skip = tag == "style"

    def handle_data(self, data: str) -> None:
        if not self.skip and data.strip():
            self.parts.append(data.strip())


def _text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.parts)


@pytest.mark.parametrize(
    ("fields", "headers", "status", "says"),
    [
        ({"email": "not-an-email"}, {}, 400, "Email: Invalid email format"),
        ({"firstName": ""}, {}, 400, "Required field missing: contact.firstName"),
        ({"lf_hp": "http://spam.example"}, {}, 400, "rejected as automated"),
        ({"lf_started": "NOW"}, {}, 400, "rejected as automated"),
        ({}, {"Origin": "https://evil.example"}, 403, "may not submit"),
    ],
)
async def test_form_post_errors_are_plain_pages_listing_what_to_fix(
    harness: Harness,
    campaign: dict[str, Any],
    admin: dict[str, str],
    fields: dict[str, str],
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    await _configure(harness, admin, allowed_origins=[ORIGIN])
    email = _email(f"err{status}")
    data = _fields(email)
    data.update(fields)
    if data.get("lf_started") == "NOW":
        data["lf_started"] = utcnow().isoformat()
    response = await harness.client.post(f"/v1/forms/{CAMPAIGN}", data=data, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert says in _text(response.text)
    assert await _leads(harness, admin, email) == []


async def test_form_post_refuses_other_bodies_and_counts_them_as_failures(
    harness: Harness, settings_factory: Any
) -> None:
    client = harness.client
    json_body = await client.post(f"/v1/forms/{CAMPAIGN}", json={"email": "x"})
    assert json_body.status_code == 415 and "application/x-www-form-urlencoded" in json_body.text
    big = await client.post(f"/v1/forms/{CAMPAIGN}", data={"message": "x" * (70 * 1024)})
    assert big.status_code == 413
    many = await client.post(
        f"/v1/forms/{CAMPAIGN}",
        content="&".join(f"f{i}=1" for i in range(150)),
        headers={"Content-Type": FORM},
    )
    assert many.status_code == 400
    unknown = await client.post("/v1/forms/nope", data=_fields(_email("unknown")))
    assert unknown.status_code == 404 and "Campaign" in _text(unknown.text)


async def test_form_post_failures_lock_an_address_out_like_the_json_api(
    settings_factory: Any, tmp_path: Any
) -> None:
    from httpx import ASGITransport, AsyncClient

    from leadflow.app import create_app

    app = create_app(settings_factory(lockout_threshold=2, lockout_base_seconds=60))
    transport = ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        codes = [
            (
                await client.post(
                    f"/v1/forms/{CAMPAIGN}", content="x", headers={"Content-Type": "text/plain"}
                )
            ).status_code
            for _ in range(4)
        ]
    assert codes[:3] == [415, 415, 415]
    assert codes[3] == 429


async def test_campaign_token_comes_from_lf_token(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    token = (await harness.client.post(f"/v1/api/campaigns/{CAMPAIGN}/token", headers=admin)).json()["token"]
    missing = await harness.client.post(f"/v1/forms/{CAMPAIGN}", data=_fields(_email("tok1")))
    assert missing.status_code == 401 and "campaign token" in missing.text
    sent = await harness.client.post(f"/v1/forms/{CAMPAIGN}", data=_fields(_email("tok2"), lf_token=token))
    assert sent.status_code == 303
    hosted = await harness.client.get(f"/f/{CAMPAIGN}")
    assert hosted.status_code == 409 and "campaign token" in hosted.text


def test_form_post_mapping_unit() -> None:
    now = utcnow()
    post = form_post(
        "c1",
        [
            ("firstName", " Ada "),
            ("firstName", "ignored"),
            ("phone", ""),
            ("consent_given", "0"),
            ("lf_started", (now - timedelta(seconds=12)).isoformat()),
            ("lf_token", "lfc_x"),
            ("unrelated", "dropped"),
        ],
        now,
    )
    body: dict[str, Any] = post.body
    assert body["contact"] == {"firstName": "Ada"}
    assert body["form_metadata"]["consent_given"] is False
    assert body["form_metadata"]["fill_time_seconds"] == 12.0
    assert post.token == "lfc_x" and post.idempotency_key is None
    naive = form_post("c1", [("lf_started", "2025-01-01T00:00:00")], now)
    assert "fill_time_seconds" not in naive.body["form_metadata"]  # type: ignore[operator]
    assert [input_name(f) for f in ("contact.first_name", "contact.email", "consent_given", None)] == [
        "firstName",
        "email",
        "consent_given",
        None,
    ]


# ---------------------------------------------------------------------------------------- hosted form


class _Controls(HTMLParser):
    """Inputs, selects and textareas (not hidden) and the ids that labels point at."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label" and a.get("for"):
            self.labelled.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a)


async def test_hosted_form_page(harness: Harness, campaign: dict[str, Any], admin: dict[str, str]) -> None:
    await _configure(
        harness,
        admin,
        form_title='Get "Nextcloud" & more',
        thank_you_url="https://nexlink.website/thanks",
        frame_ancestors=["https://nexlink.website"],
        privacy_notice_url="https://nexlink.website/privacy",
        privacy_notice_version="2025-09",
    )
    page = await harness.client.get(f"/f/{CAMPAIGN}?utm_source=qr&utm_medium=%22%3E%3Cb%3E")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://nexlink.website;" in csp
    assert "form-action 'self' https://nexlink.website;" in csp
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert "<h1>Get &#34;Nextcloud&#34; &amp; more</h1>" in html  # escaped
    assert 'name="utm_medium" value="&#34;&gt;&lt;b&gt;"' in html
    asset = embed_script()
    assert f'src="{asset.path}" integrity="{asset.integrity}" crossorigin="anonymous"' in html
    assert 'name="consent_notice_version" value="2025-09"' in html
    assert re.search(r'name="lf_key" value="form_[\w-]{20,}"', html)
    parser = _Controls()
    parser.feed(html)
    names = [c["name"] for c in parser.controls]
    assert names[:5] == ["firstName", "lastName", "email", "phone", "company"]
    assert {"service_interest", "urgency", "message", "consent_given", "lf_hp"} <= set(names)
    assert all(c["id"] in parser.labelled for c in parser.controls)
    # A second load is a new submission (new idempotency key).
    second = await harness.client.get(f"/f/{CAMPAIGN}")
    assert re.search(r'lf_key" value="([^"]+)', second.text) != re.search(r'lf_key" value="([^"]+)', html)


async def test_hosted_form_default_frame_ancestors_and_unavailable_forms(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    page = await harness.client.get(f"/f/{CAMPAIGN}")
    assert "frame-ancestors 'self';" in page.headers["content-security-policy"]
    assert (await harness.client.get("/f/nope")).status_code == 404
    await _configure(harness, admin, status="paused")
    closed = await harness.client.get(f"/f/{CAMPAIGN}")
    assert closed.status_code == 409 and "closed" in closed.text


# -------------------------------------------------------------------- CORS of the JSON capture endpoint


async def test_capture_errors_carry_cors_except_a_refused_origin(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    await _configure(harness, admin, allowed_origins=[ORIGIN])
    bad = await harness.client.post(
        "/v1/api/leads", json={"campaign_id": CAMPAIGN}, headers={"Origin": ORIGIN}
    )
    assert bad.status_code == 400
    assert bad.headers["access-control-allow-origin"] == ORIGIN
    assert "Retry-After" in bad.headers["access-control-expose-headers"]
    body = {
        "campaign_id": CAMPAIGN,
        "source": "embed",
        "contact": {"firstName": "A", "lastName": "B", "email": _email("cors")},
    }
    refused = await harness.client.post(
        "/v1/api/leads", json=body, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    # The hosted form's own origin (same host as Leadflow) is allowed whatever the campaign's list says.
    own = await harness.client.post("/v1/api/leads", json=body, headers={"Origin": "http://testserver"})
    assert own.status_code == 201, own.text
    spoofed = await harness.client.post(
        "/v1/api/leads", json=body, headers={"Origin": "http://testserver.evil.example"}
    )
    assert spoofed.status_code == 403
