"""Outbound webhook through real HTTP to a receiver that checks signatures and de-duplicates."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from leadflow.integrations.base import DeliveryContext, PermanentError, RetriableError
from leadflow.integrations.webhook import (
    WebhookConnector,
    body_for,
    delivery_id,
    signature_header,
    verify_signature,
)
from tests.crm.conftest import vendor_settings
from tests.crm.factories import make_lead, with_integration
from tests.fakes.server import Reply
from tests.fakes.webhook_receiver import FakeWebhookReceiver

Ctx = Callable[..., DeliveryContext]
SECRET = "whsec-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeWebhookReceiver]:
    running = FakeWebhookReceiver(secret=SECRET)
    with running:
        yield running


@pytest.fixture
def receiver(server: FakeWebhookReceiver) -> FakeWebhookReceiver:
    server.reset()
    server.echo = False
    return server


def connector(
    receiver: FakeWebhookReceiver, secret: str = SECRET, **kwargs: Callable[[], float]
) -> WebhookConnector:
    return WebhookConnector(vendor_settings(webhook_url=receiver.url, webhook_secret=secret), **kwargs)


async def test_posts_the_signed_lead(receiver: FakeWebhookReceiver, make_ctx: Ctx) -> None:
    lead = make_lead(deal_value=Decimal("5000.00"))
    outcome = await connector(receiver).deliver(lead, make_ctx(dedup_key="deliver:webhook:42"))

    assert outcome.status_code == 200
    expected_id = delivery_id(lead.uuid)
    body = receiver.deliveries[expected_id]
    assert body["event"] == "lead.processed"
    assert body["delivery_id"] == expected_id
    document = body["lead"]
    assert document["lead_id"] == "lead_0123456789ab"
    assert document["contact"] == {
        "first_name": "John",
        "last_name": "Doe",
        "email": "john.doe@company.com",
        "phone": "+15551234567",
        "company": "Acme Corp",
    }
    assert document["scoring"] == {
        "lead_score": 85,
        "lead_grade": "A",
        "qualification_status": "marketing_qualified",
    }
    assert document["deal_value"] == "5000.00"
    assert document["privacy"] == {"consent_given": True, "do_not_sell": False, "regime": None}
    assert document["assignee"] == {"name": "Sam Seller", "email": "sam@nexlink.website"}

    request = receiver.accepted[0]
    assert request.headers["x-leadflow-delivery"] == expected_id
    assert request.headers["x-leadflow-event"] == "lead.processed"
    assert verify_signature(SECRET, request.headers["x-leadflow-signature"], request.body)


async def test_a_retried_delivery_is_processed_once(receiver: FakeWebhookReceiver, make_ctx: Ctx) -> None:
    hook = connector(receiver)
    await hook.deliver(make_lead(), make_ctx(dedup_key="deliver:webhook:7"))
    await hook.deliver(make_lead(), make_ctx(dedup_key="deliver:webhook:7", attempt=2))
    assert list(receiver.deliveries) == [delivery_id(make_lead().uuid)]
    assert receiver.duplicates == 1
    assert len(receiver.requests) == 2


async def test_two_databases_feeding_one_receiver_do_not_collide(
    receiver: FakeWebhookReceiver, make_ctx: Ctx
) -> None:
    """The same internal row id (and dedup key) in two Leadflow databases: two different leads arrive."""
    hook = connector(receiver)
    first = make_lead(id=42, uuid="0b1c8f52-5a53-4b7e-8d43-3a3c1b7f2e10", email="a@first.example")
    second = make_lead(id=42, uuid="9e4d7c21-2f6a-4d8b-b1c3-7a5e6f8d9c02", email="b@second.example")
    await hook.deliver(first, make_ctx(dedup_key="deliver:webhook:42"))
    await hook.deliver(second, make_ctx(dedup_key="deliver:webhook:42"))
    assert len(receiver.deliveries) == 2
    assert {d["lead"]["contact"]["email"] for d in receiver.deliveries.values()} == {
        "a@first.example",
        "b@second.example",
    }
    # A UUID, and the same one on every retry.
    assert delivery_id(first.uuid) == delivery_id(first.uuid) != delivery_id(second.uuid)
    assert len(delivery_id(first.uuid)) == 36
    assert receiver.duplicates == 0


async def test_wrong_secret_or_stale_timestamp_is_refused(
    receiver: FakeWebhookReceiver, make_ctx: Ctx
) -> None:
    with pytest.raises(PermanentError) as caught:
        await connector(receiver, secret="whsec-other").deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 401
    an_hour_ago = time.time() - 3600
    with pytest.raises(PermanentError):
        await connector(receiver, clock=lambda: an_hour_ago).deliver(make_lead(), make_ctx())
    assert receiver.deliveries == {}


async def test_echoing_receivers_leave_no_personal_data_in_the_job(
    receiver: FakeWebhookReceiver, make_ctx: Ctx
) -> None:
    receiver.echo = True
    outcome = await connector(receiver).deliver(make_lead(), make_ctx())
    assert outcome.response_excerpt is not None and "lead.processed" in outcome.response_excerpt
    for personal in ("john.doe@company.com", "+15551234567", "John", "Acme Corp"):
        assert personal not in outcome.response_excerpt


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (Reply(429, {"error": "slow down"}, headers={"Retry-After": "30"}), RetriableError, 30.0),
        (Reply(500, {"error": "boom"}), RetriableError, None),
        (Reply(503, "", content_type="text/plain"), RetriableError, None),
        (Reply(404, {"error": "no such hook"}), PermanentError, None),
        (Reply(410, {"error": "gone"}), PermanentError, None),
        (Reply(301, "", headers={"Location": "https://elsewhere.example/"}), PermanentError, None),
    ],
)
async def test_error_mapping(
    receiver: FakeWebhookReceiver,
    make_ctx: Ctx,
    reply: Reply,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    receiver.fail_next(reply)
    with pytest.raises(error) as caught:
        await connector(receiver).deliver(make_lead(), make_ctx())
    assert isinstance(caught.value, PermanentError | RetriableError)
    assert caught.value.status_code == reply.status
    if isinstance(caught.value, RetriableError):
        assert caught.value.retry_after == retry_after


def test_wants_and_configured() -> None:
    hook = WebhookConnector(vendor_settings(webhook_url="https://hooks.example/lf", webhook_secret=SECRET))
    assert hook.configured()
    assert hook.wants(make_lead(consent_given=False))
    assert not hook.wants(make_lead(campaign_settings=with_integration("webhook", enabled=False)))
    assert not WebhookConnector(vendor_settings()).configured()
    assert not WebhookConnector(vendor_settings(webhook_url="https://hooks.example/lf")).configured()
    assert not WebhookConnector(vendor_settings(webhook_secret=SECRET)).configured()


async def test_not_configured_deliver_is_permanent(make_ctx: Ctx) -> None:
    with pytest.raises(PermanentError, match="not configured"):
        await WebhookConnector(vendor_settings()).deliver(make_lead(), make_ctx())


# -- verify_signature -------------------------------------------------------------------------------
BODY = body_for(make_lead(), "deliver:webhook:1")
NOW = 1_760_000_000.0


def header(secret: str = SECRET, body: bytes = BODY, ts: int = int(NOW)) -> str:
    return signature_header(secret, body, ts)


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{int(NOW)}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header() == f"t={int(NOW)},v1={expected}"


def test_verify_accepts_a_valid_signature() -> None:
    assert verify_signature(SECRET, header(), BODY, now=NOW)
    assert verify_signature(SECRET.encode(), header(), BODY.decode(), now=NOW + 299)
    assert verify_signature(SECRET, header(ts=int(NOW) - 600), BODY, tolerance=900, now=NOW)


def test_verify_refuses_tampering_and_wrong_secrets() -> None:
    assert not verify_signature(SECRET, header(), BODY.replace(b'"A"', b'"D"'), now=NOW)
    assert not verify_signature("whsec-other", header(), BODY, now=NOW)
    assert not verify_signature(SECRET, header(secret="whsec-other"), BODY, now=NOW)


def test_verify_refuses_old_and_future_timestamps() -> None:
    assert not verify_signature(SECRET, header(ts=int(NOW) - 301), BODY, now=NOW)
    assert not verify_signature(SECRET, header(ts=int(NOW) + 301), BODY, now=NOW)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "garbage",
        "v1=abc",
        f"t={int(NOW)}",
        f"t=abc,v1={'0' * 64}",
        f"t={int(NOW)},t={int(NOW)},v1={'0' * 64}",
        f"t=-{int(NOW)},v1={'0' * 64}",
    ],
)
def test_verify_refuses_malformed_headers(bad: str | None) -> None:
    assert not verify_signature(SECRET, bad, BODY, now=NOW)


def test_verify_accepts_any_of_several_signatures_while_rotating() -> None:
    old = header(secret="whsec-old").split(",")[1]
    new = header(secret="whsec-new").split(",")[1]
    rotating = f"t={int(NOW)},{old},{new}"
    assert verify_signature("whsec-old", rotating, BODY, now=NOW)
    assert verify_signature("whsec-new", rotating, BODY, now=NOW)
    assert not verify_signature(SECRET, rotating, BODY, now=NOW)
