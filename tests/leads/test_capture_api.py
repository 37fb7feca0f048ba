"""POST /v1/api/leads through HTTP: the spec's bodies, validation, campaign checks, dedup, idempotency."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from leadflow.kit.clock import utcnow
from leadflow.kit.state import state_of
from tests.conftest import EXAMPLE_LEAD, Harness, example_lead

# Every test here runs on SQLite, and on PostgreSQL and MariaDB when the suite is told they are there.
pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)

URL = "/v1/api/leads"


async def _detail(h: Harness, lead_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await h.client.get(f"/v1/api/leads/{lead_id}", headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_spec_example_is_captured_and_scores_85_grade_a(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    response = await harness.client.post(URL, json=EXAMPLE_LEAD)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"success", "lead_id", "message", "next_steps"}
    assert body["success"] is True
    assert re.fullmatch(r"lead_[0-9a-f]{12}", body["lead_id"])
    assert body["message"] == "Lead captured successfully"
    assert body["next_steps"] == {
        "expected_response_time": "2 hours",
        "contact_method": "email",
        "tracking_enabled": True,
    }
    lead = await _detail(harness, body["lead_id"], admin)
    assert lead["lead_score"] == 85
    assert lead["lead_grade"] == "A"
    assert lead["qualification_status"] == "marketing_qualified"
    assert lead["channel"] == "Paid Search"
    assert lead["medium"] == "paid"
    assert lead["score_breakdown"]["categories"] == {
        "contact": 25,
        "intent": 35,
        "behaviour": 10,
        "source": 15,
    }
    assert lead["phone"] == "+15551234567"
    assert lead["email"] == "john.doe@company.com"
    assert lead["ip_address"] == "192.168.1.1"
    assert lead["campaign_name"] == "Nextcloud Installation 2025"
    assert [a["activity_type"] for a in lead["activities"]] == ["created"]


async def test_capture_is_durable_lead_activity_and_job_in_one_commit(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    response = await harness.client.post(URL, json=EXAMPLE_LEAD)
    assert response.status_code == 201
    lead_id = response.json()["lead_id"]
    pk = await harness.scalar("SELECT id FROM leads WHERE public_id = :p", p=lead_id)
    assert pk is not None
    assert await harness.scalar("SELECT count(*) FROM lead_activities WHERE lead_id = :i", i=pk) == 1
    assert await harness.scalar("SELECT kind FROM jobs WHERE lead_id = :i AND status = 'pending'", i=pk) == (
        "lead.process"
    )


async def test_personal_data_is_not_stored_in_plaintext(
    harness: Harness, campaign: dict[str, Any], settings: Any
) -> None:
    body = example_lead(email="Secret.Person@Plaintext-Check.example", phone="+44 20 7946 0958")
    body["lead_details"]["message"] = "my very private message"
    assert (await harness.client.post(URL, json=body)).status_code == 201
    path = settings.sqlite_path()
    if path is not None:  # SQLite: the raw database file and its write-ahead log
        wal = path.with_name(path.name + "-wal")
        raw = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    else:  # a server: every column of every row, as the database returns it
        async with harness.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM leads"))).all()
            rows += (await conn.execute(text("SELECT * FROM lead_activities"))).all()
        raw = repr([tuple(r) for r in rows]).encode()
        assert b"lead_" in raw
    for needle in (
        b"Secret.Person",
        b"secret.person",
        b"my very private message",
        b"Acme Corp",
        b"7946",
        b"Doe",
    ):
        assert needle not in raw, needle


async def test_sanitises_and_normalises(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    body = example_lead(
        firstName="  <b>Jane</b>\x00 ",
        lastName="O'Brien\u200b  Smith",
        email="Jane.Smith@Example-Corp.COM",
        phone="(212) 555-0100",
        company="Acme   <script>alert(1)</script>Corp",
    )
    body["lead_details"]["message"] = "Hello<br>\r\n\r\n\r\n\r\n<img src=x onerror=alert(1)>world  \t !"
    body["tracking"]["ip_address"] = "2001:0db8:0000:0000:0000:0000:0000:0001"
    response = await harness.client.post(URL, json=body)
    assert response.status_code == 201, response.text
    lead = await _detail(harness, response.json()["lead_id"], admin)
    assert lead["first_name"] == "Jane"
    assert lead["last_name"] == "O'Brien Smith"
    assert lead["email"] == "Jane.Smith@example-corp.com"
    assert lead["phone"] == "+12125550100"  # default region US
    assert lead["company"] == "Acme Corp"
    assert lead["message"] == "Hello\n\nworld !"
    assert lead["ip_address"] == "2001:db8::1"


@pytest.mark.parametrize(
    ("mutate", "field", "message_part"),
    [
        (lambda b: b["contact"].update(email="not-an-email"), "contact.email", "Invalid email format"),
        (lambda b: b["contact"].update(email="a@b"), "contact.email", "Invalid email format"),
        (lambda b: b["contact"].pop("email"), "contact.email", "Required field missing"),
        (lambda b: b["contact"].pop("firstName"), "contact.firstName", "Required field missing"),
        (lambda b: b["contact"].update(lastName="   "), "contact.lastName", ""),
        (lambda b: b["contact"].update(phone="12"), "contact.phone", "Invalid phone number"),
        (lambda b: b["contact"].update(phone="call me maybe"), "contact.phone", "Invalid phone number"),
        (lambda b: b["contact"].update(firstName="x" * 101), "contact.firstName", "too long"),
        (lambda b: b["contact"].update(email=1234), "contact.email", ""),
        (lambda b: b.update(source="billboard"), "source", ""),
        (lambda b: b.pop("campaign_id"), "campaign_id", "Required field missing"),
        (lambda b: b.pop("contact"), "contact", "Required field missing"),
        (lambda b: b["tracking"].update(ip_address="999.1.1.1"), "tracking.ip_address", "Invalid IP address"),
        (lambda b: b["tracking"].update(time_on_page_seconds=-5), "tracking.time_on_page_seconds", ""),
        (lambda b: b["lead_details"].update(urgency="u" * 51), "lead_details.urgency", "too long"),
        (lambda b: b["form_metadata"].update(timestamp="yesterday"), "form_metadata.timestamp", ""),
        (lambda b: b.update(contact="john"), "contact", ""),
    ],
)
async def test_validation_errors_use_the_spec_shape(
    harness: Harness, campaign: dict[str, Any], mutate: Any, field: str, message_part: str
) -> None:
    body = example_lead()
    mutate(body)
    response = await harness.client.post(URL, json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["success"] is False
    assert error["error"] == "VALIDATION_ERROR"
    assert error["field"] == field
    assert error["code"] == 400
    assert message_part in error["message"]
    assert await harness.scalar("SELECT count(*) FROM leads") == 0


async def test_phone_without_country_code_uses_default_region(
    settings_factory: Any, admin: dict[str, str]
) -> None:
    from leadflow.app import create_app

    app = create_app(settings_factory(default_phone_region="GB"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            from leadflow.security.tokens import create_token

            async with state_of(app).engine.begin() as conn:
                token = (await create_token(conn, name="a", role="admin")).token
            auth = {"Authorization": f"Bearer {token}"}
            await client.post(
                "/v1/api/campaigns", headers=auth, json={"id": "uk", "name": "UK", "campaign_type": "service"}
            )
            body = example_lead(phone="020 7946 0958")
            body["campaign_id"] = "uk"
            response = await client.post(URL, json=body)
            assert response.status_code == 201, response.text
            lead = (await client.get(f"/v1/api/leads/{response.json()['lead_id']}", headers=auth)).json()
            assert lead["phone"] == "+442079460958"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "INVALID_JSON"),
        (b"", "application/json", 400, "INVALID_JSON"),
        (b"[1, 2]", "application/json", 400, "VALIDATION_ERROR"),
        (b"null", "application/json", 400, "VALIDATION_ERROR"),
        (b"\xff\xfe\x00garbage", "application/json", 400, "INVALID_JSON"),
        (b"campaign_id=x", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"{}", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"{}", "", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
async def test_malformed_bodies(
    harness: Harness, campaign: dict[str, Any], content: bytes, content_type: str, status: int, error: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await harness.client.post(URL, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["code"] == status


async def test_body_too_large_is_413(harness: Harness, campaign: dict[str, Any]) -> None:
    body = example_lead()
    body["lead_details"]["message"] = "x" * (harness.settings.max_body_bytes + 10)
    response = await harness.client.post(URL, json=body)
    assert response.status_code == 413
    assert response.json()["error"] == "PAYLOAD_TOO_LARGE"
    # A lying Content-Length is refused before reading.
    response = await harness.client.post(
        URL, content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "99999999"}
    )
    assert response.status_code in (400, 413)


async def test_unknown_and_inactive_campaigns(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    body = example_lead()
    body["campaign_id"] = "no-such-campaign"
    response = await harness.client.post(URL, json=body)
    assert response.status_code == 404
    assert response.json()["error"] == "CAMPAIGN_NOT_FOUND"
    assert response.json()["field"] == "campaign_id"

    patched = await harness.client.patch(
        "/v1/api/campaigns/nextcloud-installation-2025", headers=admin, json={"status": "paused"}
    )
    assert patched.status_code == 200
    response = await harness.client.post(URL, json=EXAMPLE_LEAD)
    assert response.status_code == 409
    assert response.json()["error"] == "CAMPAIGN_INACTIVE"


async def test_campaign_token_is_required_when_set(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    rotated = await harness.client.post("/v1/api/campaigns/nextcloud-installation-2025/token", headers=admin)
    token = rotated.json()["token"]
    assert token and rotated.json()["has_token"] is True

    response = await harness.client.post(URL, json=EXAMPLE_LEAD)
    assert response.status_code == 401
    assert response.json()["error"] == "INVALID_CAMPAIGN_TOKEN"
    response = await harness.client.post(URL, json=EXAMPLE_LEAD, headers={"X-Campaign-Token": token + "x"})
    assert response.status_code == 401
    response = await harness.client.post(URL, json=EXAMPLE_LEAD, headers={"X-Campaign-Token": token})
    assert response.status_code == 201
    # A bearer token with the ingest role may submit for the campaign too (server-to-server).
    ingest = await harness.token("ingest")
    response = await harness.client.post(URL, json=example_lead(email="other@company.com"), headers=ingest)
    assert response.status_code == 201


async def test_origin_checks_and_cors_preflight(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    await harness.client.patch(
        "/v1/api/campaigns/nextcloud-installation-2025",
        headers=admin,
        json={"allowed_origins": ["https://nexlink.website"]},
    )
    bad = await harness.client.post(URL, json=EXAMPLE_LEAD, headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403
    assert bad.json()["error"] == "ORIGIN_NOT_ALLOWED"
    good = await harness.client.post(URL, json=EXAMPLE_LEAD, headers={"Origin": "https://nexlink.website"})
    assert good.status_code == 201
    assert good.headers["access-control-allow-origin"] == "https://nexlink.website"

    preflight = await harness.client.options(
        URL,
        headers={"Origin": "https://nexlink.website", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://nexlink.website"
    assert "X-Campaign-Token" in preflight.headers["access-control-allow-headers"]
    refused = await harness.client.options(
        URL, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 403


async def test_duplicate_within_24h_is_409_with_existing_lead_id(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    first = await harness.client.post(URL, json=EXAMPLE_LEAD)
    assert first.status_code == 201
    again = example_lead(email="JOHN.DOE@Company.com")  # same person, different case
    second = await harness.client.post(URL, json=again)
    assert second.status_code == 409
    error = second.json()
    assert error["error"] == "DUPLICATE_SUBMISSION"
    assert error["lead_id"] == first.json()["lead_id"]
    assert await harness.scalar("SELECT count(*) FROM leads") == 1
    lead = await _detail(harness, first.json()["lead_id"], admin)
    assert [a["activity_type"] for a in lead["activities"]] == ["created", "duplicate_submission"]

    # Another campaign is not a duplicate.
    await harness.client.post(
        "/v1/api/campaigns", headers=admin, json={"id": "other", "name": "Other", "campaign_type": "product"}
    )
    other = example_lead()
    other["campaign_id"] = "other"
    assert (await harness.client.post(URL, json=other)).status_code == 201


async def test_resubmission_after_24h_is_kept_and_linked(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    first = await harness.client.post(URL, json=EXAMPLE_LEAD)
    old_id = first.json()["lead_id"]
    await harness.execute(
        "UPDATE leads SET created_at = :t WHERE public_id = :p", t=utcnow() - timedelta(hours=25), p=old_id
    )
    second = await harness.client.post(URL, json=EXAMPLE_LEAD)
    assert second.status_code == 201
    new_id = second.json()["lead_id"]
    assert new_id != old_id
    lead = await _detail(harness, new_id, admin)
    assert lead["previous_lead_id"] == old_id
    assert lead["returning_visitor"] is True  # the visitor id was seen before


async def test_idempotency_key_replays_the_original_response(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    headers = {"Idempotency-Key": "form-retry-1"}
    first = await harness.client.post(URL, json=EXAMPLE_LEAD, headers=headers)
    second = await harness.client.post(URL, json=EXAMPLE_LEAD, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert await harness.scalar("SELECT count(*) FROM leads") == 1
    conflict = await harness.client.post(URL, json=example_lead(email="someone@else.com"), headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "IDEMPOTENCY_KEY_REUSED"


async def test_concurrent_captures_are_all_stored_and_batched(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    n = 120
    responses = await asyncio.gather(
        *(harness.client.post(URL, json=example_lead(email=f"person{i}@company.com")) for i in range(n))
    )
    assert [r.status_code for r in responses] == [201] * n
    ids = {r.json()["lead_id"] for r in responses}
    assert len(ids) == n
    assert await harness.scalar("SELECT count(*) FROM leads") == n
    assert await harness.scalar("SELECT count(*) FROM jobs") == n
    writer = state_of(harness.app).writer
    assert writer.leads_written == n
    assert writer.batches < n  # group commit shared transactions


async def test_concurrent_duplicates_store_exactly_one(harness: Harness, campaign: dict[str, Any]) -> None:
    responses = await asyncio.gather(*(harness.client.post(URL, json=EXAMPLE_LEAD) for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19
    created = next(r for r in responses if r.status_code == 201).json()["lead_id"]
    assert {r.json()["lead_id"] for r in responses if r.status_code == 409} == {created}
    assert await harness.scalar("SELECT count(*) FROM leads") == 1


async def test_bidi_and_invisible_characters_are_not_stored(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    body = example_lead(
        email="bidi@company.com",
        firstName="Ana\u202egnp.exe",
        lastName="\u2066Do\u00ade\u2069\u200b",
        company="\u3164Acme\u200f Corp\ufeff",
    )
    body["lead_details"]["message"] = "See invoice\u202efdp.exe\nthanks\u2060"
    persian = example_lead(email="zwnj@company.com", firstName="\u0645\u06cc\u200c\u0631\u0636\u0627")
    first = await harness.client.post(URL, json=body)
    second = await harness.client.post(URL, json=persian)
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    detail = await _detail(harness, first.json()["lead_id"], admin)
    assert (detail["first_name"], detail["last_name"], detail["company"]) == (
        "Anagnp.exe",
        "Doe",
        "Acme Corp",
    )
    assert detail["message"] == "See invoicefdp.exe\nthanks"
    # What a Persian name needs (ZWNJ between letters) is kept.
    kept = await _detail(harness, second.json()["lead_id"], admin)
    assert kept["first_name"] == "\u0645\u06cc\u200c\u0631\u0636\u0627"
    # A lone surrogate (a JSON escape that is not text) is refused by the JSON parser, not a 500.
    raw = httpx.Response(200, json=example_lead(email="surrogate@company.com")).text
    raw = raw.replace('"firstName":"John"', '"firstName":"Jo\\ud800hn"')
    assert "\\ud800" in raw
    lone = await harness.client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert (lone.status_code, lone.json()["error"]) == (400, "INVALID_JSON")
