"""GA4 Measurement Protocol connector through real HTTP to the local GA4 fake."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from leadflow.integrations.base import DeliveryContext, PermanentError, RetriableError
from leadflow.integrations.ga4 import Ga4Connector, client_id, event_params, payload
from tests.crm.conftest import vendor_settings
from tests.crm.factories import make_lead, with_integration
from tests.fakes.ga4 import FakeGa4
from tests.fakes.server import Reply

Ctx = Callable[..., DeliveryContext]
MID, SECRET = "G-TEST123456", "ga4-test-secret"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGa4]:
    running = FakeGa4(measurement_id=MID, api_secret=SECRET)
    with running:
        yield running


@pytest.fixture
def fake(server: FakeGa4) -> Iterator[FakeGa4]:
    server.reset()
    yield server
    assert server.violations == []  # every event any test sent was a valid one


def connector(fake: FakeGa4, secret: str = SECRET) -> Ga4Connector:
    return Ga4Connector(
        vendor_settings(ga4_measurement_id=MID, ga4_api_secret=secret, ga4_base_url=fake.base_url)
    )


def sent_event(fake: FakeGa4) -> dict[str, Any]:
    (body,) = fake.events
    (event,) = body["events"]
    assert isinstance(event, dict)
    return event


async def test_sends_a_generate_lead_event(fake: FakeGa4, make_ctx: Ctx) -> None:
    lead = make_lead()
    outcome = await connector(fake).deliver(lead, make_ctx())

    assert outcome.status_code == 204
    body = fake.events[0]
    assert body["client_id"] == "vis_123456789"
    assert body["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
    assert body["timestamp_micros"] == int(lead.created_at.timestamp() * 1_000_000)
    event = sent_event(fake)
    assert event["name"] == "generate_lead"
    assert event["params"] == {
        "session_id": "sess_987654321",
        "engagement_time_msec": 100,
        "lead_source": "landing-page",
        "campaign": "nextcloud-installation-2025",
        "lead_grade": "A",
        "lead_score": 85,
        "service": "Nextcloud Installation",
        "channel": "paid_search",
        "source": "google",
        "medium": "cpc",
    }
    request = fake.accepted[0]
    assert request.query == {"measurement_id": [MID], "api_secret": [SECRET]}
    raw = request.body.decode()
    for personal in ("john", "doe", "company.com", "5551234567", "Acme", "Nextcloud setup"):
        assert personal.lower() not in raw.lower()


async def test_deal_value_and_currency(fake: FakeGa4, make_ctx: Ctx) -> None:
    lead = make_lead(deal_value=Decimal("7500.50"), campaign_settings=with_integration("ga4", currency="eur"))
    await connector(fake).deliver(lead, make_ctx())
    params = sent_event(fake)["params"]
    assert (params["currency"], params["value"]) == ("EUR", 7500.5)
    assert event_params(make_lead(deal_value=Decimal(10)))["currency"] == "USD"
    assert "value" not in event_params(make_lead())


def test_client_id_without_a_visitor_id_is_stable_and_not_personal() -> None:
    lead = make_lead(visitor_id=None)
    assert client_id(lead) == client_id(make_lead(visitor_id=None, email="other@x.com"))
    assert client_id(lead) != client_id(make_lead(visitor_id=None, lead_id="lead_ffffffffffff"))
    assert re.fullmatch(r"\d+\.\d+", client_id(lead))


async def test_limits_and_personal_data_in_utm_tags(fake: FakeGa4, make_ctx: Ctx) -> None:
    lead = make_lead(
        utm_source="s" * 300,
        utm_medium="newsletter-to-john.doe@company.com",
        channel="call +1 (555) 123-4567",
        session_id=None,
    )
    await connector(fake).deliver(lead, make_ctx())
    params = sent_event(fake)["params"]
    assert params["source"] == "s" * 100
    assert "medium" not in params and "channel" not in params and "session_id" not in params
    assert all(len(name) <= 40 for name in params) and len(params) <= 25


async def test_consent_and_old_leads(fake: FakeGa4, make_ctx: Ctx) -> None:
    old = make_lead(do_not_sell=True, created_at=datetime.now(UTC) - timedelta(days=5))
    await connector(fake).deliver(old, make_ctx())
    body = fake.events[0]
    assert body["consent"] == {"ad_user_data": "DENIED", "ad_personalization": "DENIED"}
    assert "timestamp_micros" not in body  # GA4 drops events backdated beyond 72 hours
    assert payload(make_lead(consent_given=False))["consent"]["ad_user_data"] == "DENIED"


def test_wants() -> None:
    ga = Ga4Connector(vendor_settings(ga4_measurement_id=MID, ga4_api_secret=SECRET))
    assert ga.wants(make_lead())
    assert ga.wants(make_lead(consent_given=False, privacy_regime="ccpa"))
    assert ga.wants(make_lead(do_not_sell=True))  # sent, with ad consent denied
    assert not ga.wants(make_lead(consent_given=False, privacy_regime="gdpr"))
    assert not ga.wants(make_lead(campaign_settings=with_integration("ga4", enabled=False)))


async def test_configured_needs_both_ids(make_ctx: Ctx) -> None:
    assert Ga4Connector(vendor_settings(ga4_measurement_id=MID, ga4_api_secret=SECRET)).configured()
    assert not Ga4Connector(vendor_settings(ga4_measurement_id=MID)).configured()
    assert not Ga4Connector(vendor_settings(ga4_api_secret=SECRET)).configured()
    assert not Ga4Connector(vendor_settings(ga4_measurement_id=" ", ga4_api_secret=SECRET)).configured()
    with pytest.raises(PermanentError, match="not configured"):
        await Ga4Connector(vendor_settings()).deliver(make_lead(), make_ctx())


async def test_errors(fake: FakeGa4, make_ctx: Ctx) -> None:
    fake.fail_next(Reply(429, "", headers={"Retry-After": "2"}, content_type="text/plain"))
    with pytest.raises(RetriableError) as caught:
        await connector(fake).deliver(make_lead(), make_ctx())
    assert caught.value.retry_after == 2.0
    fake.fail_next(Reply(503, "Service Unavailable", content_type="text/plain"))
    with pytest.raises(RetriableError):
        await connector(fake).deliver(make_lead(), make_ctx())
    fake.fail_next(Reply(403, "Forbidden", content_type="text/plain"))
    with pytest.raises(PermanentError) as refused:
        await connector(fake).deliver(make_lead(), make_ctx())
    assert refused.value.response_excerpt is None
    assert SECRET not in str(refused.value)
    assert fake.events == []


async def test_the_fake_reports_bad_events_without_an_http_error(
    fake: FakeGa4, http: httpx.AsyncClient
) -> None:
    bad = {
        "client_id": "1.2",
        "events": [
            {
                "name": "_bad",
                "params": {f"p{i}": "x" for i in range(26)} | {"email": "a@b.co", "long": "y" * 101},
            }
        ],
    }
    query = {"measurement_id": MID, "api_secret": "wrong"}
    debug = await http.post(f"{fake.base_url}/debug/mp/collect", params=query, json=bad)
    codes = {m["validationCode"] for m in debug.json()["validationMessages"]}
    assert codes == {"VALUE_INVALID", "NAME_INVALID", "NAME_RESERVED", "VALUE_OUT_OF_BOUNDS"}

    collect = await http.post(f"{fake.base_url}/mp/collect", params=query, json=bad)
    assert collect.status_code == 204
    assert len(fake.violations) == len(debug.json()["validationMessages"])
    fake.violations.clear()  # expected here: keep the fixture's check for the other tests
