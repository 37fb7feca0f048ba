"""Capture over HTTP → in-process worker → enrichment → assignment → Slack, e-mail and HubSpot fakes.

Everything real: the app with its worker, the database, GeoIP's official test database, a Slack webhook
fake and a HubSpot fake over HTTP, an aiosmtpd server over SMTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.state import state_of
from leadflow.security.tokens import create_token
from tests.conftest import example_lead
from tests.fakes.hubspot import TOKEN as HUBSPOT_TOKEN
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import FakeSmtp

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


async def _until(condition: Callable[[], bool], seconds: float) -> float:
    """Wait until ``condition`` holds; returns how long it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not reached within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_capture_to_notifications_and_crm(
    settings_factory: Callable[..., Settings], shared: Path
) -> None:
    with FakeSlack() as slack, FakeHubSpot() as hubspot, FakeSmtp() as smtp:
        settings = settings_factory(
            run_worker=True,
            worker_poll_seconds=0.05,
            geoip_city_db=shared / "data" / "geoip" / "GeoIP2-City-Test.mmdb",
            slack_webhook_url=slack.webhook_url,
            hubspot_api_key=HUBSPOT_TOKEN,
            hubspot_base_url=hubspot.base_url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_starttls=False,
            sequence_enabled=False,
            public_base_url="https://leads.example.test",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            async with state_of(app).engine.begin() as conn:
                token = (await create_token(conn, name="e2e", role="admin")).token
            auth = {"Authorization": f"Bearer {token}"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                created = await client.post(
                    "/v1/api/campaigns",
                    headers=auth,
                    json={
                        "id": "nextcloud-installation-2025",
                        "name": "Nextcloud Installation 2025",
                        "campaign_type": "service",
                        "services": ["Nextcloud Installation"],
                    },
                )
                assert created.status_code == 201
                member = await client.post(
                    "/v1/api/team-members",
                    headers=auth,
                    json={
                        "name": "Alice Seller",
                        "email": "alice@nexlink.website",
                        "phone": "+15557654321",
                        "services": ["Nextcloud Installation"],
                        "capacity": 10,
                    },
                )
                assert member.status_code == 201, member.text

                body = example_lead(email="jane.buyer@acme-corp.com", firstName="Jane", lastName="Buyer")
                body["tracking"]["ip_address"] = "2.125.160.216"  # in MaxMind's test database (GB)
                start = time.monotonic()
                response = await client.post("/v1/api/leads", json=body)
                assert response.status_code == 201
                lead_id = response.json()["lead_id"]

                slack_s = await _until(lambda: len(slack.accepted) == 1, 10)
                mail_s = await _until(lambda: len(smtp.messages) == 1, 10)
                crm_s = await _until(lambda: "jane.buyer@acme-corp.com" in hubspot.contacts, 10)
                total = time.monotonic() - start
                # The spec's budgets: routing and notifications < 10 s, integrations < 30 s.
                assert max(slack_s, mail_s) < 10 and crm_s < 30 and total < 10

                message = slack.accepted[0].json()
                assert "Jane Buyer" in message["text"] and "85" in message["text"]
                mail = smtp.messages[0]
                assert mail.rcpt_tos == ["alice@nexlink.website"]
                assert "Jane Buyer" in str(mail.message()["Subject"]) or "Jane Buyer" in mail.data.decode()
                contact = hubspot.contacts["jane.buyer@acme-corp.com"]["properties"]
                assert contact["firstname"] == "Jane" and contact["lastname"] == "Buyer"

                async def activities() -> list[str]:
                    lead = (await client.get(f"/v1/api/leads/{lead_id}", headers=auth)).json()
                    return [a["activity_type"] for a in lead["activities"]]

                deadline = time.monotonic() + 10
                kinds = await activities()
                while kinds.count("notification_sent") < 2 or "synced" not in kinds:
                    assert time.monotonic() < deadline, kinds
                    await asyncio.sleep(0.05)
                    kinds = await activities()
                assert kinds[:3] == ["created", "enriched", "assigned"]
                lead = (await client.get(f"/v1/api/leads/{lead_id}", headers=auth)).json()
                assert lead["assigned_to"] == "alice@nexlink.website"
                detail = await client.get(f"/v1/api/leads/{lead_id}/status", headers=auth)
                assert detail.json()["assigned_to"] == "alice@nexlink.website"
                export = (
                    await client.get(
                        "/v1/api/privacy/export", headers=auth, params={"email": "jane.buyer@acme-corp.com"}
                    )
                ).json()
                assert export["leads"][0]["enrichment"]["geo"]["country_code"] == "GB"
                assert export["leads"][0]["privacy"]["regime"] == "gdpr"
                jobs = (await client.get("/v1/api/jobs", headers=auth, params={"kind": "deliver"})).json()[
                    "items"
                ]
                assert sorted(j["connector"] for j in jobs) == ["email", "hubspot", "slack"]
                assert all(j["status"] == "done" for j in jobs)


async def test_failing_vendor_is_retried_then_dead_lettered_and_replayed(
    settings_factory: Callable[..., Settings], shared: Path
) -> None:
    from tests.fakes.server import Reply

    with FakeHubSpot() as hubspot:
        hubspot.fail_next(Reply(429, {"status": "error", "category": "RATE_LIMITS"}, {"Retry-After": "0"}))
        hubspot.fail_next(*[Reply(503, {"status": "error", "message": "down"}) for _ in range(20)])
        settings = settings_factory(
            run_worker=True,
            worker_poll_seconds=0.05,
            hubspot_api_key=HUBSPOT_TOKEN,
            hubspot_base_url=hubspot.base_url,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            async with state_of(app).engine.begin() as conn:
                token = (await create_token(conn, name="e2e", role="admin")).token
            auth = {"Authorization": f"Bearer {token}"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                await client.post(
                    "/v1/api/campaigns",
                    headers=auth,
                    json={"id": "nextcloud-installation-2025", "name": "N", "campaign_type": "service"},
                )
                assert (await client.post("/v1/api/leads", json=example_lead())).status_code == 201

                async def hubspot_job() -> dict[str, Any] | None:
                    items = (
                        await client.get("/v1/api/jobs", headers=auth, params={"kind": "deliver"})
                    ).json()["items"]
                    return items[0] if items else None

                # Make retries immediate: the backoff itself is unit-tested; here we want the attempts.
                deadline = time.monotonic() + 20
                while True:
                    async with state_of(app).engine.begin() as conn:
                        from sqlalchemy import text

                        await conn.execute(
                            text("UPDATE jobs SET run_at = created_at WHERE status = 'pending'")
                        )
                    state_of(app).wake_worker()
                    job = await hubspot_job()
                    if job is not None and job["status"] == "dead":
                        break
                    assert time.monotonic() < deadline, job
                    await asyncio.sleep(0.1)
                detail = (await client.get(f"/v1/api/jobs/{job['id']}", headers=auth)).json()
                outcomes = [(a["outcome"], a["status_code"]) for a in detail["history"]]
                assert outcomes[0] == ("retry", 429)
                assert outcomes[-1] == ("dead", 503)
                assert len(outcomes) == detail["max_attempts"]
                assert hubspot.contacts == {}
                lead_id = detail["lead_id"]
                lead = (await client.get(f"/v1/api/leads/{lead_id}", headers=auth)).json()
                failed = [a for a in lead["activities"] if a["activity_type"] == "delivery_failed"]
                assert failed and failed[0]["metadata"]["connector"] == "hubspot"

                hubspot.scripted.clear()  # the vendor is back
                replay = await client.post(f"/v1/api/jobs/{job['id']}/retry", headers=auth)
                assert replay.status_code == 200
                await _until(lambda: "john.doe@company.com" in hubspot.contacts, 10)


async def test_two_databases_one_webhook_receiver_and_enrichment_on_the_detail(
    backend: str,
    settings_factory: Callable[..., Settings],
    shared: Path,
    tmp_path: Path,
    sqlite_template: Path,
) -> None:
    """Two Leadflow installations (separate databases, so both leads have row id 1) feed one webhook
    receiver that drops repeated delivery ids: both leads arrive. The lead detail shows what
    enrichment found, as the webhook does."""
    if backend != "sqlite":
        pytest.skip(
            "two installations, each on its own SQLite file; the id scheme does not depend on the database"
        )
    import shutil
    import uuid

    from leadflow.integrations.webhook import delivery_id
    from tests.fakes.webhook_receiver import FakeWebhookReceiver

    secret = "whsec-0123456789"
    with FakeWebhookReceiver(secret=secret) as receiver:
        captured: list[tuple[str, dict[str, Any]]] = []
        for n, ip in enumerate(("2.125.160.216", "81.2.69.160")):  # both in MaxMind's test database
            target = tmp_path / f"install-{n}.db"
            shutil.copy(sqlite_template, target)
            settings = settings_factory(
                database_url=f"sqlite+aiosqlite:///{target}",
                run_worker=True,
                worker_poll_seconds=0.05,
                geoip_city_db=shared / "data" / "geoip" / "GeoIP2-City-Test.mmdb",
                webhook_url=receiver.url,
                webhook_secret=secret,
                sequence_enabled=False,
            )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                async with state_of(app).engine.begin() as conn:
                    auth = {
                        "Authorization": f"Bearer {(await create_token(conn, name='e', role='admin')).token}"
                    }
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                    await client.post(
                        "/v1/api/campaigns",
                        headers=auth,
                        json={"id": "nextcloud-installation-2025", "name": "N", "campaign_type": "service"},
                    )
                    body = example_lead(email=f"buyer{n}@acme-corp.com")
                    body["tracking"]["ip_address"] = ip
                    response = await client.post("/v1/api/leads", json=body)
                    assert response.status_code == 201
                    lead_id = response.json()["lead_id"]
                    await _until(lambda n=n: len(receiver.deliveries) == n + 1, 10)  # type: ignore[misc]
                    detail = (await client.get(f"/v1/api/leads/{lead_id}", headers=auth)).json()
                    captured.append((lead_id, detail))
        # Two distinct ids, and the receiver dropped nothing as a repeat.
        assert set(receiver.deliveries) == {delivery_id(detail["uuid"]) for _, detail in captured}
        assert receiver.duplicates == 0
        for (lead_id, detail), n in zip(captured, range(2), strict=True):
            expected = delivery_id(detail["uuid"])
            assert uuid.UUID(expected).version == 5
            delivered = receiver.deliveries[expected]
            assert delivered["lead"]["lead_id"] == lead_id
            assert delivered["lead"]["contact"]["email"] == f"buyer{n}@acme-corp.com"
        # Enrichment on the lead detail: geo, e-mail domain type, company, MX, privacy regime.
        first = captured[0][1]
        assert first["enrichment"]["enriched_at"] is not None
        assert first["enrichment"]["geo"] == {"country": "GB", "region": "England", "city": "Boxford"}
        assert first["enrichment"]["email_domain_type"] == "business"
        assert first["enrichment"]["company_domain"] == "acme-corp.com"
        assert first["enrichment"]["company_name"] == "Acme Corp"
        assert first["enrichment"]["mx"] == "skipped"
        assert first["privacy_regime"] == "gdpr" and first["do_not_sell"] is False
        webhook_geo = receiver.deliveries[delivery_id(first["uuid"])]["lead"]["geo"]
        assert webhook_geo == first["enrichment"]["geo"]


async def test_first_touch_utm_is_kept_through_capture_and_enrichment(
    settings_factory: Callable[..., Settings],
) -> None:
    """embed.js sends ``tracking.first_touch`` (the visitor's first UTM-tagged visit) next to the last
    touch in ``utm_*``; the lead keeps both, and the worker's enrichment does not drop the first."""
    settings = settings_factory(run_worker=True, worker_poll_seconds=0.05, sequence_enabled=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with state_of(app).engine.begin() as conn:
            auth = {"Authorization": f"Bearer {(await create_token(conn, name='e', role='admin')).token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await client.post(
                "/v1/api/campaigns",
                headers=auth,
                json={"id": "nextcloud-installation-2025", "name": "N", "campaign_type": "service"},
            )
            with_touch = example_lead(email="first-touch@acme-corp.com")
            with_touch["tracking"]["first_touch"] = {
                "utm_source": "newsletter",
                "utm_medium": "email",
                "utm_campaign": " autumn\u200b ",
                "t": 1759480200000,
            }
            without = example_lead(email="no-touch@acme-corp.com")
            empty = example_lead(email="empty-touch@acme-corp.com")
            empty["tracking"]["first_touch"] = {"t": 1759480200000}
            # In one capture batch: rows with and without a first touch are written together.
            answers = await asyncio.gather(
                *(client.post("/v1/api/leads", json=b) for b in (with_touch, without, empty))
            )
            assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]
            ids = [a.json()["lead_id"] for a in answers]
            bad = example_lead(email="bad-touch@acme-corp.com")
            bad["tracking"]["first_touch"] = {"utm_source": "x" * 256}
            refused = await client.post("/v1/api/leads", json=bad)
            assert refused.status_code == 400
            assert refused.json()["field"] == "tracking.first_touch.utm_source"

            async def details() -> list[dict[str, Any]]:
                return [(await client.get(f"/v1/api/leads/{i}", headers=auth)).json() for i in ids]

            expected = {
                "utm_source": "newsletter",
                "utm_medium": "email",
                "utm_campaign": "autumn",
                "utm_term": None,
                "utm_content": None,
                "at": "2025-10-03T08:30:00Z",
            }
            deadline = time.monotonic() + 20
            found = await details()
            while not all(d["enrichment"]["enriched_at"] for d in found):
                assert time.monotonic() < deadline, "not enriched"
                await asyncio.sleep(0.05)
                found = await details()
            first, second, third = found
            assert first["first_touch"] == expected
            assert first["utm_source"] == with_touch["tracking"]["utm_source"]  # the last touch
            assert second["first_touch"] is None and third["first_touch"] is None
            assert first["enrichment"]["email_domain_type"] == "business"
