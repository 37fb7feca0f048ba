"""Privacy rights after capture, through HTTP against the contract-checking vendor fakes.

Withdrawal and do-not-sell (consent API, lead PATCH), the one-click unsubscribe link of the e-mail
sequence (RFC 8058), rectification of contact fields, erasure at Salesforce and the webhook, and the
consent history in the export. The worker runs in-process and talks to the fakes over real HTTP/SMTP.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.kit.state import state_of
from leadflow.privacy.unsubscribe import make_token
from leadflow.security.tokens import create_token
from tests.conftest import SUBMITTED_PII, TEST_KEY, Harness, example_lead
from tests.fakes.mailchimp import FakeMailchimp
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.sendgrid_contacts import FakeSendGridContacts
from tests.fakes.smtp import FakeSmtp
from tests.fakes.webhook_receiver import SECRET as WEBHOOK_SECRET
from tests.fakes.webhook_receiver import FakeWebhookReceiver

SENDGRID_LIST = "ca7a3796-e8a8-4029-9ccb-df8937940562"
CAMPAIGN = {
    "id": "nextcloud-installation-2025",
    "name": "Nextcloud Installation 2025",
    "campaign_type": "service",
    "services": ["Nextcloud Installation"],
}


async def until(condition: Callable[[], bool | Awaitable[bool]], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {seconds} s")
        await asyncio.sleep(0.05)


def smtp_values(smtp: FakeSmtp) -> dict[str, Any]:
    return {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_starttls": False}


def salesforce_values(salesforce: FakeSalesforce) -> dict[str, Any]:
    return {
        "salesforce_client_id": salesforce.client_id,
        "salesforce_client_secret": salesforce.client_secret,
        "salesforce_token_url": salesforce.base_url + "/services/oauth2/token",
    }


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Harness, dict[str, str]]]:
    """The app with its in-process worker, the campaign, and an admin's headers."""
    settings = settings.model_copy(update={"run_worker": True, "worker_poll_seconds": 0.05})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            async with state_of(app).engine.begin() as conn:
                token = (await create_token(conn, name="privacy", role="admin")).token
            admin = {"Authorization": f"Bearer {token}"}
            created = await client.post("/v1/api/campaigns", headers=admin, json=CAMPAIGN)
            assert created.status_code == 201, created.text
            yield Harness(app, client, state_of(app).engine, settings), admin


async def capture(h: Harness, **contact: Any) -> str:
    response = await h.client.post("/v1/api/leads", json=example_lead(**contact))
    assert response.status_code == 201, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def export(h: Harness, admin: dict[str, str], email: str) -> dict[str, Any]:
    response = await h.client.get("/v1/api/privacy/export", headers=admin, params={"email": email})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def job_states(h: Harness, lead_row_id: int) -> list[tuple[str, str]]:
    async with h.engine.connect() as conn:
        from sqlalchemy import text

        rows = await conn.execute(
            text("SELECT dedup_key, status FROM jobs WHERE lead_id = :l ORDER BY id"), {"l": lead_row_id}
        )
        return [(str(r[0]), str(r[1])) for r in rows]


# --- withdrawal: the sequence stops, the lists unsubscribe -------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_withdrawn_person_gets_no_further_step_and_leaves_the_lists(
    settings_factory: Callable[..., Settings], shared: Path
) -> None:
    contracts = shared / "contracts"
    with (
        FakeSmtp() as smtp,
        FakeMailchimp(contracts / "mailchimp" / "marketing-v3-list-members.subset.json") as mailchimp,
        FakeSendGridContacts(contracts / "sendgrid" / "marketing-contacts-v3.subset.json") as sendgrid,
    ):
        settings = settings_factory(
            **smtp_values(smtp),
            mailchimp_api_key=mailchimp.api_key,
            mailchimp_base_url=mailchimp.base_url,
            mailchimp_list_id="list-main",
            sendgrid_api_key=sendgrid.api_key,
            sendgrid_base_url=sendgrid.base_url,
            sendgrid_list_ids=SENDGRID_LIST,
            public_base_url="https://leads.example.test",
        )
        async with running(settings) as (h, admin):
            lead_id = await capture(h, email="john.doe@company.com")
            row_id = await h.scalar("SELECT id FROM leads WHERE public_id = :p", p=lead_id)
            await until(lambda: len(smtp.messages) == 1)  # sequence step 0
            await until(lambda: mailchimp.member("list-main", "john.doe@company.com") is not None)
            await until(lambda: "john.doe@company.com" in sendgrid.contacts)

            response = await h.client.post(
                "/v1/api/privacy/consent",
                headers=admin,
                json={"email": "John.Doe@company.com", "action": "withdraw", "note": "Asked by phone"},
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["lead_ids"] == [lead_id]
            assert sorted(answer["remote_unsubscribes_queued"]) == ["mailchimp", "sendgrid"]

            def unsubscribed() -> bool:
                member = mailchimp.member("list-main", "john.doe@company.com")
                return member is not None and member["status"] == "unsubscribed"

            await until(unsubscribed)
            await until(lambda: "john.doe@company.com" not in sendgrid.contacts)
            assert "john.doe@company.com" in sendgrid.suppressed

            # The next step comes due: it ends without sending anything.
            states = await job_states(h, row_id)
            step1 = [k for k, _ in states if k.endswith(":step1")]
            assert step1, states
            await h.execute("UPDATE jobs SET run_at = :t WHERE dedup_key = :k", t=utcnow(), k=step1[0])
            state_of(h.app).wake_worker()

            async def step1_done() -> bool:
                return (step1[0], "done") in await job_states(h, row_id)

            await until(step1_done)
            assert len(smtp.messages) == 1

            data = await export(h, admin, "john.doe@company.com")
            assert data["leads"][0]["consent"]["given"] is False
            history = data["consent_history"]
            assert [(e["action"], e["channel"]) for e in history] == [("grant", "form"), ("withdraw", "api")]
            assert history[1]["actor"] == "token:privacy"
            kinds = [a["activity_type"] for a in data["leads"][0]["activities"]]
            assert "consent_changed" in kinds
            audit = (
                await h.client.get(
                    "/v1/api/audit", headers=admin, params={"action": "privacy.consent.withdraw"}
                )
            ).json()
            assert audit["items"][0]["details"]["lead_ids"] == [lead_id]


# --- one-click unsubscribe ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_unsubscribe_link_works_once_is_signed_and_expires(
    settings_factory: Callable[..., Settings],
) -> None:
    with FakeSmtp() as smtp:
        settings = settings_factory(
            **smtp_values(smtp),
            public_base_url="https://leads.example.test",
        )
        async with running(settings) as (h, admin):
            lead_id = await capture(h, email="john.doe@company.com")
            await until(lambda: len(smtp.messages) == 1)
            message = smtp.messages[0].message()
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            header = " ".join(str(message["List-Unsubscribe"]).split())
            url = header.split(">")[0].lstrip("<")
            assert url.startswith("https://leads.example.test/v1/unsubscribe/lead_")
            path = url.removeprefix("https://leads.example.test")
            token = path.rsplit("/", 1)[1]

            # GET only shows the confirmation (mail scanners open links): nothing changes.
            page = await h.client.get(path, headers={"Accept": "text/html"})
            assert page.status_code == 200
            assert 'method="post"' in page.text and "no-store" in page.headers["cache-control"]
            assert (await export(h, admin, "john.doe@company.com"))["leads"][0]["consent"]["given"] is True

            # A forged signature and a token signed with another key are refused.
            forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
            other_key = make_token(b"\x01" * 32, lead_id, utcnow() + timedelta(days=1))
            for bad in (forged, other_key, "not-a-token"):
                answer = await h.client.post(f"/v1/unsubscribe/{bad}", content=b"List-Unsubscribe=One-Click")
                assert answer.status_code == 404
                assert answer.json()["error"] == "INVALID_LINK"
            html = await h.client.get(f"/v1/unsubscribe/{forged}", headers={"Accept": "text/html"})
            assert html.status_code == 404 and "not valid" in html.text

            # An expired link (signed with the right key) is refused.
            key = base64.b64decode(TEST_KEY)
            expired = make_token(key, lead_id, utcnow() - timedelta(seconds=1))
            gone = await h.client.post(f"/v1/unsubscribe/{expired}", content=b"List-Unsubscribe=One-Click")
            assert gone.status_code == 410 and gone.json()["error"] == "LINK_EXPIRED"

            # The one-click POST (what Gmail/Yahoo send) withdraws consent.
            done = await h.client.post(
                path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert done.status_code == 200, done.text
            assert done.json() == {"success": True, "unsubscribed": True}
            data = await export(h, admin, "john.doe@company.com")
            assert data["leads"][0]["consent"]["given"] is False
            assert data["consent_history"][-1]["channel"] == "one_click"
            assert data["consent_history"][-1]["actor"] == "data subject"

            # It works once.
            again = await h.client.post(path, content=b"List-Unsubscribe=One-Click")
            assert again.status_code == 410 and again.json()["error"] == "LINK_ALREADY_USED"
            page = await h.client.get(path, headers={"Accept": "text/html"})
            assert page.status_code == 410 and "already used" in page.text
            assert len(data["consent_history"]) == 2
            audit = (
                await h.client.get("/v1/api/audit", headers=admin, params={"action": "privacy.unsubscribe"})
            ).json()
            assert [e["details"]["via"] for e in audit["items"]] == ["one_click"]


async def test_a_used_link_cannot_be_replayed_with_a_trailing_newline(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    """``$`` matches before a final newline: ``<token>%0A`` verified, and hashed as another link."""
    lead_id = await capture(harness, email="john.doe@company.com")
    token = make_token(base64.b64decode(TEST_KEY), lead_id, utcnow() + timedelta(days=20))
    first = await harness.client.post(f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert first.status_code == 200, first.text
    grant = {"email": "john.doe@company.com", "action": "grant"}
    assert (await harness.client.post("/v1/api/privacy/consent", headers=admin, json=grant)).is_success
    for variant in (f"{token}%0A", f"{token}%0D%0A"):
        again = await harness.client.post(f"/v1/unsubscribe/{variant}", content=b"List-Unsubscribe=One-Click")
        assert again.status_code == 404 and again.json()["error"] == "INVALID_LINK"
        page = await harness.client.get(f"/v1/unsubscribe/{variant}", headers={"Accept": "text/html"})
        assert page.status_code == 404
    assert (await export(harness, admin, "john.doe@company.com"))["leads"][0]["consent"]["given"] is True


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_a_used_link_stays_used_until_it_expires_even_past_retention(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    """RETENTION_DAYS shorter than UNSUBSCRIBE_LINK_DAYS: the retention purge must not forget a used
    link that still verifies, or the link works again (a replay withdraws a consent given since)."""
    from leadflow.privacy.service import enforce_retention

    lead_id = await capture(harness, email="john.doe@company.com")
    token = make_token(base64.b64decode(TEST_KEY), lead_id, utcnow() + timedelta(days=20))
    first = await harness.client.post(f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert first.status_code == 200, first.text
    await harness.execute("UPDATE unsubscribe_uses SET used_at = :t", t=utcnow() - timedelta(days=40))
    settings = harness.settings.model_copy(update={"retention_days": 30, "unsubscribe_link_days": 60})
    async with harness.engine.begin() as conn:
        await enforce_retention(conn, state_of(harness.app).cipher, settings, dry_run=False)
    again = await harness.client.post(f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 410 and again.json()["error"] == "LINK_ALREADY_USED"
    # Once no link used then can still verify, the record goes.
    await harness.execute("UPDATE unsubscribe_uses SET used_at = :t", t=utcnow() - timedelta(days=61))
    async with harness.engine.begin() as conn:
        report = await enforce_retention(conn, state_of(harness.app).cipher, settings, dry_run=False)
    assert (report.records_purged or {})["unsubscribe_uses"] == 1


# --- erasure everywhere ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_erase_deletes_the_salesforce_lead_and_signals_the_webhook(
    settings_factory: Callable[..., Settings], shared: Path
) -> None:
    contract = shared / "contracts" / "salesforce" / "postman-rest-sobject-composite.items.json"
    with FakeSalesforce(contract) as salesforce, FakeWebhookReceiver() as receiver, FakeSmtp() as smtp:
        settings = settings_factory(
            **salesforce_values(salesforce),
            webhook_url=receiver.url,
            webhook_secret=WEBHOOK_SECRET,
            ga4_measurement_id="G-TEST123456",
            ga4_api_secret="unused",
            ga4_base_url=receiver.base_url,  # GA4 is not under test; its hits are dropped
            **smtp_values(smtp),
        )
        async with running(settings) as (h, admin):
            lead_id = await capture(h, email="john.doe@company.com")
            await until(lambda: salesforce.by_external_id(lead_id) is not None)
            await until(lambda: any(d["event"] == "lead.processed" for d in receiver.deliveries.values()))
            await until(lambda: len(smtp.messages) == 1)  # the sequence started

            response = await h.client.post(
                "/v1/api/privacy/erase", headers=admin, json={"email": "john.doe@company.com"}
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["leads_deleted"] == 1
            assert sorted(answer["remote_deletions_queued"]) == ["salesforce", "webhook"]
            assert "no personal data" in answer["not_erased"]["ga4"]
            assert "sequence" in answer["not_erased"]

            await until(lambda: salesforce.by_external_id(lead_id) is None)
            assert len(salesforce.deleted) == 1
            await until(lambda: any(d["event"] == "lead.erased" for d in receiver.deliveries.values()))
            erased = next(d for d in receiver.deliveries.values() if d["event"] == "lead.erased")
            assert erased["lead_ids"] == [lead_id]
            assert "john.doe" not in str(erased)  # ids only, no personal data
            # The sequence is stopped: no job of the lead is left.
            assert await h.scalar("SELECT COUNT(*) FROM jobs WHERE lead_id IS NOT NULL") == 0

            # Both erasure jobs finish, and the address is scrubbed from them.
            async def erase_jobs_done() -> bool:
                sql = "SELECT COUNT(*) FROM jobs WHERE kind = 'privacy.erase' AND status = 'done'"
                return bool(await h.scalar(sql) == 2)

            await until(erase_jobs_done)
            async with h.engine.connect() as conn:
                from sqlalchemy import text

                sql = text("SELECT payload FROM jobs WHERE kind = 'privacy.erase'")
                payloads = [
                    json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in await conn.execute(sql)
                ]
            assert len(payloads) == 2 and all(p["email"] is None for p in payloads), payloads
            assert len(smtp.messages) == 1


async def test_erasure_drops_the_persons_queued_unsubscribe_jobs(
    settings_factory: Callable[..., Settings],
) -> None:
    """A withdrawal queued privacy.unsubscribe jobs (with the encrypted address; no lead id, so the
    erasure's delete by lead id missed them): after the erasure they must not run, nor keep the address."""
    settings = settings_factory(
        mailchimp_api_key="0123456789abcdef-us1",
        mailchimp_list_id="abc123",
        mailchimp_base_url="http://127.0.0.1:9",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            h = Harness(app, client, state_of(app).engine, settings)
            async with state_of(app).engine.begin() as conn:
                admin = {
                    "Authorization": f"Bearer {(await create_token(conn, name='a', role='admin')).token}"
                }
            assert (await client.post("/v1/api/campaigns", headers=admin, json=CAMPAIGN)).status_code == 201
            await capture(h, email="john.doe@company.com")
            await capture(h, email="other.person@company.com")
            for email in ("john.doe@company.com", "other.person@company.com"):
                withdraw = {"email": email, "action": "withdraw"}
                answer = await client.post("/v1/api/privacy/consent", headers=admin, json=withdraw)
                assert answer.json()["remote_unsubscribes_queued"] == ["mailchimp"]
            sql = "SELECT COUNT(*) FROM jobs WHERE kind = 'privacy.unsubscribe'"
            assert await h.scalar(sql) == 2
            erase = {"email": "john.doe@company.com"}
            assert (await client.post("/v1/api/privacy/erase", headers=admin, json=erase)).status_code == 200
            assert await h.scalar(sql) == 1  # the other person's stays
            assert await h.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'privacy.erase'") == 1


# --- rectification -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_corrected_email_is_found_and_deduplicated_under_the_new_address_only(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    SUBMITTED_PII.update({"jon.doe@company.org", "Doe-Smith"})
    lead_id = await capture(harness, email="john.doe@company.com")
    response = await harness.client.patch(
        f"/v1/api/leads/{lead_id}",
        headers=admin,
        json={"email": "Jon.Doe@Company.org", "last_name": "Doe-Smith", "phone": "+1 (555) 987-6543"},
    )
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["email"] == "Jon.Doe@company.org"
    assert detail["last_name"] == "Doe-Smith" and detail["phone"] == "+15559876543"
    assert detail["activities"][-1]["metadata"] == {
        "fields": ["last_name", "email", "phone"],
        "reason": "rectification",
    }
    stored = await harness.scalar("SELECT email FROM leads WHERE public_id = :p", p=lead_id)
    assert b"jon.doe" not in bytes(stored).lower()  # encrypted at rest

    async def search(email: str) -> list[str]:
        found = await harness.client.get("/v1/api/leads", headers=admin, params={"email": email})
        assert found.status_code == 200, found.text
        return [item["lead_id"] for item in found.json()["items"]]

    assert await search("jon.doe@company.org") == [lead_id]
    assert await search("john.doe@company.com") == []
    assert [x["lead_id"] for x in (await export(harness, admin, "jon.doe@company.org"))["leads"]] == [lead_id]
    assert (await export(harness, admin, "john.doe@company.com"))["leads"] == []

    again = await harness.client.post("/v1/api/leads", json=example_lead(email="jon.doe@company.org"))
    assert again.status_code == 409 and again.json()["lead_id"] == lead_id
    old = await harness.client.post("/v1/api/leads", json=example_lead(email="john.doe@company.com"))
    assert old.status_code == 201

    audit = (
        await harness.client.get("/v1/api/audit", headers=admin, params={"action": "lead.update"})
    ).json()
    assert audit["items"][0]["details"] == {"fields": ["email", "last_name", "phone"]}
    assert "jon" not in str(audit["items"][0]).lower()

    for body, field in (
        ({"email": "not an address"}, "email"),
        ({"first_name": None}, "first_name"),
        ({"phone": "12"}, "phone"),
        ({"first_name": ""}, "first_name"),
        ({"do_not_sell": None}, "do_not_sell"),
    ):
        bad = await harness.client.patch(f"/v1/api/leads/{lead_id}", headers=admin, json=body)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json()["field"] == field
    bad = await harness.client.get("/v1/api/leads", headers=admin, params={"email": "nope"})
    assert bad.status_code == 400


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_consent_history_follows_a_corrected_email(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    """The consent history is keyed by the e-mail's blind index: after a correction the person's
    export shows it under the new address, and erasure by the new address removes it."""
    SUBMITTED_PII.update({"jane.roe@company.org"})
    lead_id = await capture(harness, email="jane.roe@company.com")
    withdraw = {"email": "jane.roe@company.com", "action": "withdraw", "note": "Asked by phone"}
    assert (await harness.client.post("/v1/api/privacy/consent", headers=admin, json=withdraw)).is_success
    fixed = await harness.client.patch(
        f"/v1/api/leads/{lead_id}", headers=admin, json={"email": "jane.roe@company.org"}
    )
    assert fixed.status_code == 200, fixed.text
    history = (await export(harness, admin, "jane.roe@company.org"))["consent_history"]
    assert [e["action"] for e in history] == ["grant", "withdraw"]
    assert (await export(harness, admin, "jane.roe@company.com"))["consent_history"] == []

    # A person who still has a lead under the old address keeps the history there too.
    other = await capture(harness, email="max.mustermann@company.com")
    dns = {"email": "max.mustermann@company.com", "action": "do_not_sell"}
    assert (await harness.client.post("/v1/api/privacy/consent", headers=admin, json=dns)).is_success
    await harness.execute(
        "UPDATE leads SET created_at = :t WHERE public_id = :p", t=utcnow() - timedelta(days=400), p=other
    )
    kept = await capture(harness, email="max.mustermann@company.com")  # past the dedup window: a new lead
    SUBMITTED_PII.update({"max.m@company.org"})
    moved = await harness.client.patch(
        f"/v1/api/leads/{other}", headers=admin, json={"email": "max.m@company.org"}
    )
    assert moved.status_code == 200, moved.text
    for address in ("max.m@company.org", "max.mustermann@company.com"):
        actions = [e["action"] for e in (await export(harness, admin, address))["consent_history"]]
        assert "do_not_sell" in actions, (address, actions)
    assert kept != other

    erased = await harness.client.post(
        "/v1/api/privacy/erase", headers=admin, json={"email": "jane.roe@company.org"}
    )
    assert erased.status_code == 200 and erased.json()["leads_deleted"] == 1
    remaining = await harness.scalar("SELECT COUNT(*) FROM consent_events")
    assert remaining == 2  # max's do_not_sell, under both of his addresses


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_correction_is_synced_to_salesforce_as_an_update(
    settings_factory: Callable[..., Settings], shared: Path
) -> None:
    contract = shared / "contracts" / "salesforce" / "postman-rest-sobject-composite.items.json"
    with FakeSalesforce(contract) as salesforce:
        settings = settings_factory(
            **salesforce_values(salesforce),
            sequence_enabled=False,
        )
        async with running(settings) as (h, admin):
            lead_id = await capture(h, email="john.doe@company.com")
            await until(lambda: salesforce.by_external_id(lead_id) is not None)
            row_id = await h.scalar("SELECT id FROM leads WHERE public_id = :p", p=lead_id)

            async def synced() -> bool:
                return (f"deliver:salesforce:{row_id}", "done") in await job_states(h, row_id)

            await until(synced)
            [record_id] = list(salesforce.leads)
            SUBMITTED_PII.add("Doe-Smith")
            response = await h.client.patch(
                f"/v1/api/leads/{lead_id}", headers=admin, json={"last_name": "Doe-Smith"}
            )
            assert response.status_code == 200, response.text
            await until(lambda: salesforce.leads[record_id].get("LastName") == "Doe-Smith")
            assert list(salesforce.leads) == [record_id]  # updated in place, not a new Lead
            audit = (
                await h.client.get("/v1/api/audit", headers=admin, params={"action": "lead.update"})
            ).json()
            assert audit["items"][0]["details"]["crm_updates"] == ["salesforce"]


# --- do-not-sell and the consent API's rules ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_do_not_sell_and_consent_changes_are_kept_in_the_history(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    first = await capture(harness, email="john.doe@company.com")
    await harness.execute(
        "UPDATE leads SET created_at = :t WHERE public_id = :p", t=utcnow() - timedelta(days=2), p=first
    )
    second = await capture(harness, email="john.doe@company.com")
    response = await harness.client.patch(
        f"/v1/api/leads/{second}", headers=admin, json={"do_not_sell": True}
    )
    assert response.status_code == 200, response.text
    assert response.json()["activities"][-1]["activity_type"] == "consent_changed"
    data = await export(harness, admin, "john.doe@company.com")
    assert [lead["privacy"]["do_not_sell"] for lead in data["leads"]] == [True, True]  # the person
    granted = await harness.client.post(
        "/v1/api/privacy/consent",
        headers=admin,
        json={"email": "john.doe@company.com", "action": "allow_sale"},
    )
    assert granted.status_code == 200 and granted.json()["remote_unsubscribes_queued"] == []
    data = await export(harness, admin, "john.doe@company.com")
    assert [lead["privacy"]["do_not_sell"] for lead in data["leads"]] == [False, False]
    assert [(e["action"], e["channel"]) for e in data["consent_history"]] == [
        ("grant", "form"),
        ("grant", "form"),
        ("do_not_sell", "lead_update"),
        ("allow_sale", "api"),
    ]

    sales = await harness.token("sales", subject="alice@nexlink.website")
    analyst = await harness.token("analyst")
    body = {"email": "john.doe@company.com", "action": "withdraw"}
    for headers in (sales, analyst):
        refused = await harness.client.post("/v1/api/privacy/consent", headers=headers, json=body)
        assert refused.status_code == 403 and refused.json()["error"] == "FORBIDDEN"
    assert (await harness.client.post("/v1/api/privacy/consent", json=body)).status_code == 401
    for bad in ({"email": "nope", "action": "withdraw"}, {"email": "a@b.co", "action": "sell_more"}):
        answer = await harness.client.post("/v1/api/privacy/consent", headers=admin, json=bad)
        assert answer.status_code == 400 and answer.json()["error"] == "VALIDATION_ERROR"


# --- the CLI equivalents -----------------------------------------------------------------------------


async def test_cli_withdraw_consent_and_correct_a_lead(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], database_url: str
) -> None:
    from tests.privacy.test_privacy_api import _cli

    SUBMITTED_PII.update({"jon.doe@company.org", "Doe-Smith"})
    lead_id = await capture(harness, email="john.doe@company.com")
    await harness.engine.dispose()
    withdrawn = _cli(["privacy", "withdraw", "--email", "John.Doe@company.com"], database_url, {})
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert withdrawn.stdout.strip() == "withdraw: 1 leads changed; unsubscribe queued at: none"
    dns = _cli(
        ["privacy", "consent", "--email", "john.doe@company.com", "--action", "do-not-sell"], database_url, {}
    )
    assert dns.returncode == 0, dns.stderr
    unknown = _cli(
        ["privacy", "consent", "--email", "john.doe@company.com", "--action", "sell"], database_url, {}
    )
    assert unknown.returncode == 2
    data = await export(harness, admin, "john.doe@company.com")
    assert [(e["action"], e["channel"], e["actor"]) for e in data["consent_history"][1:]] == [
        ("withdraw", "cli", "cli"),
        ("do_not_sell", "cli", "cli"),
    ]
    assert data["leads"][0]["privacy"]["do_not_sell"] is True

    fixed = _cli(
        ["leads", "update", lead_id, "--email", "jon.doe@company.org", "--last-name", "Doe-Smith"],
        database_url,
        {},
    )
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == f"{lead_id} updated (email, last_name); CRM update queued at: none"
    assert "jon.doe" not in fixed.stdout + fixed.stderr
    lead = (await harness.client.get(f"/v1/api/leads/{lead_id}", headers=admin)).json()
    assert lead["email"] == "jon.doe@company.org" and lead["last_name"] == "Doe-Smith"
    bad = _cli(["leads", "update", lead_id, "--email", "not an address"], database_url, {})
    assert bad.returncode == 2 and "email" in bad.stderr
    audit = (
        await harness.client.get("/v1/api/audit", headers=admin, params={"action": "lead.update"})
    ).json()
    assert audit["items"][0]["channel"] == "cli"
