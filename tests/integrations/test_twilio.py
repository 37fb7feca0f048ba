"""Twilio SMS connector against a real HTTP fake validating with the Twilio OpenAPI contract."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.integrations import registry
from leadflow.integrations.base import PermanentError, RetriableError
from leadflow.integrations.twilio import MAX_BODY, TwilioSmsConnector, sms_body
from tests.fakes.twilio import FakeTwilio, twilio_error
from tests.integrations.factories import (
    LEAD_EMAIL,
    LEAD_PHONE,
    http_client,
    make_assignee,
    make_context,
    make_lead,
    make_settings,
    with_campaign_integration,
)

FROM = "+15005550006"
LINK = "https://leads.example.test/leads/lead_0123456789ab"


@pytest.fixture
def contract(shared: Path) -> Path:
    return shared / "contracts" / "twilio" / "api-v2010-messages.subset.json"


@pytest.fixture
def twilio(contract: Path) -> Iterator[FakeTwilio]:
    with FakeTwilio(contract, numbers=(FROM,)) as fake:
        yield fake


def settings_for(fake: FakeTwilio, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "twilio_account_sid": fake.account_sid,
        "twilio_auth_token": fake.auth_token,
        "twilio_from_number": FROM,
        "twilio_base_url": fake.base_url,
    }
    values.update(overrides)
    return make_settings(**values)


async def deliver(connector: TwilioSmsConnector, timeout: float = 5.0, **lead: Any) -> Any:
    async with http_client(timeout) as http:
        return await connector.deliver(make_lead(**lead), make_context(connector.settings, http))


# --- success ---------------------------------------------------------------------------------------


async def test_texts_the_assignee_through_the_messages_api(twilio: FakeTwilio) -> None:
    outcome = await deliver(TwilioSmsConnector(settings_for(twilio)))

    assert outcome.status_code == 201
    [request] = twilio.accepted
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected_auth}"
    form = {key: values[0] for key, values in request.form().items()}
    assert set(form) == {"To", "From", "Body"}
    assert form["To"] == "+15557654321"
    assert form["From"] == FROM
    body = form["Body"]
    assert body.startswith(
        "Urgent A-lead (87): John Doe, Acme Corp - Nextcloud Installation. High (Same day)"
    )
    assert body.endswith(LINK)
    assert len(body) <= MAX_BODY
    assert outcome.external_id is not None
    assert outcome.external_id.startswith("SM")
    assert outcome.external_id in (outcome.response_excerpt or "")


async def test_falls_back_to_the_alert_number(twilio: FakeTwilio) -> None:
    connector = TwilioSmsConnector(settings_for(twilio, sms_alert_to="(415) 555-0100"))

    await deliver(connector, assignee=make_assignee(phone=None))

    assert twilio.accepted[0].form()["To"] == ["+14155550100"]


async def test_no_lead_contact_details_in_the_sms_or_what_we_keep(twilio: FakeTwilio) -> None:
    outcome = await deliver(
        TwilioSmsConnector(settings_for(twilio)),
        company=f"Acme ({LEAD_EMAIL}, call {LEAD_PHONE})",
        last_name="Doe other@mail.example",
        service_interest="Call me at +1 (555) 222-3344",
    )

    body = twilio.accepted[0].form()["Body"][0]
    assert LEAD_EMAIL not in body
    assert LEAD_PHONE not in body
    assert "@" not in body
    assert "222-3344" not in body
    assert "Acme" in body
    # Twilio echoes the body and numbers; the outcome keeps only ids and status.
    assert "Acme" not in (outcome.response_excerpt or "")
    assert "+1555" not in (outcome.response_excerpt or "")


def test_a_lead_texted_by_campaign_choice_is_not_called_urgent() -> None:
    lead = make_lead(urgency_level="low", urgency="Next month")
    assert sms_body(lead, LINK).startswith(
        "New A-lead (87): John Doe, Acme Corp - Nextcloud Installation. Next month."
    )


def test_body_fits_two_segments_and_keeps_the_link() -> None:
    lead = make_lead(first_name="N" * 200, company="C" * 200, service_interest="S" * 200)
    body = sms_body(lead, LINK)
    assert len(body) == MAX_BODY
    assert body.endswith(" " + LINK)
    assert "…" in body


# --- which leads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lead", "alert_to", "expected"),
    [
        ({}, None, True),
        ({"urgency_level": "medium"}, None, False),
        ({"urgency_level": None}, None, False),
        ({"assignee": None}, None, False),
        ({"assignee": None}, "+14155550100", True),
        ({"assignee": make_assignee(phone=None)}, None, False),
        ({"assignee": make_assignee(phone="not a phone")}, "+14155550100", True),
        ({"assignee": make_assignee(phone="not a phone")}, None, False),
        ({"campaign_settings": with_campaign_integration("sms", enabled=False)}, None, False),
        (
            {"urgency_level": "low", "campaign_settings": with_campaign_integration("sms", enabled=True)},
            None,
            True,
        ),
    ],
)
def test_wants_high_urgency_leads_with_a_number_to_text(
    lead: dict[str, Any], alert_to: str | None, expected: bool
) -> None:
    connector = TwilioSmsConnector(make_settings(sms_alert_to=alert_to))
    assert connector.wants(make_lead(**lead)) is expected


@pytest.mark.parametrize(
    ("sid", "token", "sender", "expected"),
    [
        (None, None, None, False),
        ("AC" + "a" * 32, "tok", None, False),
        ("AC" + "a" * 32, None, FROM, False),
        ("AC" + "a" * 32, "", FROM, False),
        ("AC" + "a" * 32, "tok", FROM, True),
    ],
)
def test_configured_needs_sid_token_and_sender(
    sid: str | None, token: str | None, sender: str | None, expected: bool
) -> None:
    settings = make_settings(twilio_account_sid=sid, twilio_auth_token=token, twilio_from_number=sender)
    connector = registry.build("sms", settings)
    assert isinstance(connector, TwilioSmsConnector)
    assert connector.configured() is expected


async def test_deliver_without_configuration_is_permanent() -> None:
    with pytest.raises(PermanentError):
        await deliver(TwilioSmsConnector(make_settings(sms_alert_to="+14155550100")))


# --- failures --------------------------------------------------------------------------------------


async def test_invalid_to_number_is_permanent_and_its_excerpt_has_no_number(twilio: FakeTwilio) -> None:
    twilio.fail_next(twilio_error(400, 21211, "The 'To' number +15557654321 is not a valid phone number."))

    with pytest.raises(PermanentError) as caught:
        await deliver(TwilioSmsConnector(settings_for(twilio)))

    assert caught.value.status_code == 400
    assert '"code": 21211' in (caught.value.response_excerpt or "")
    assert "5557654321" not in (caught.value.response_excerpt or "")


async def test_wrong_credentials_are_permanent(twilio: FakeTwilio) -> None:
    connector = TwilioSmsConnector(settings_for(twilio, twilio_auth_token="wrong"))

    with pytest.raises(PermanentError) as caught:
        await deliver(connector)

    assert caught.value.status_code == 401
    assert '"code": 20003' in (caught.value.response_excerpt or "")


async def test_a_sender_the_account_does_not_own_is_permanent(twilio: FakeTwilio) -> None:
    connector = TwilioSmsConnector(settings_for(twilio, twilio_from_number="+15005550001"))

    with pytest.raises(PermanentError) as caught:
        await deliver(connector)

    assert '"code": 21606' in (caught.value.response_excerpt or "")


async def test_429_is_retriable_with_retry_after(twilio: FakeTwilio) -> None:
    twilio.fail_next(twilio_error(429, 20429, "Too Many Requests", headers={"Retry-After": "5"}))

    with pytest.raises(RetriableError) as caught:
        await deliver(TwilioSmsConnector(settings_for(twilio)))

    assert caught.value.status_code == 429
    assert caught.value.retry_after == 5.0


async def test_5xx_is_retriable(twilio: FakeTwilio) -> None:
    twilio.fail_next(twilio_error(500, 20500, "Internal Server Error"))

    with pytest.raises(RetriableError) as caught:
        await deliver(TwilioSmsConnector(settings_for(twilio)))

    assert caught.value.status_code == 500


async def test_timeout_is_retriable(twilio: FakeTwilio) -> None:
    twilio.stall_seconds = 1.0

    with pytest.raises(RetriableError, match="timeout"):
        await deliver(TwilioSmsConnector(settings_for(twilio)), timeout=0.2)


# --- the fake follows the contract -------------------------------------------------------------------


async def test_fake_refuses_what_twilio_refuses(twilio: FakeTwilio) -> None:
    url = f"{twilio.base_url}/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    auth = (twilio.account_sid, twilio.auth_token)
    async with httpx.AsyncClient() as http:
        answers = {
            "no auth": await http.post(url, data={"To": "+14155550100", "From": FROM, "Body": "x"}),
            "json body": await http.post(
                url, json={"To": "+14155550100", "From": FROM, "Body": "x"}, auth=auth
            ),
            "bad to": await http.post(url, data={"To": "0155 123", "From": FROM, "Body": "x"}, auth=auth),
            "no from": await http.post(url, data={"To": "+14155550100", "Body": "x"}, auth=auth),
            "no body": await http.post(url, data={"To": "+14155550100", "From": FROM}, auth=auth),
            "long body": await http.post(
                url, data={"To": "+14155550100", "From": FROM, "Body": "x" * 1601}, auth=auth
            ),
            "bad enum": await http.post(
                url,
                data={"To": "+14155550100", "From": FROM, "Body": "x", "ContentRetention": "forever"},
                auth=auth,
            ),
            "bad sid": await http.post(
                f"{twilio.base_url}/2010-04-01/Accounts/XY123/Messages.json", data={"To": "+1"}, auth=auth
            ),
            "get": await http.get(url, auth=auth),
        }

    codes = {name: (r.status_code, r.json()["code"]) for name, r in answers.items()}
    assert codes == {
        "no auth": (401, 20003),
        "json body": (400, 21604),
        "bad to": (400, 21211),
        "no from": (400, 21603),
        "no body": (400, 21602),
        "long body": (400, 21617),
        "bad enum": (400, 20001),
        "bad sid": (404, 20404),
        "get": (405, 20004),
    }
    assert set(answers["no auth"].json()) == {"code", "message", "more_info", "status"}
    assert twilio.accepted == []


async def test_fake_success_matches_the_contract_response_schema(twilio: FakeTwilio) -> None:
    await deliver(TwilioSmsConnector(settings_for(twilio)))

    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{twilio.base_url}/2010-04-01/Accounts/{twilio.account_sid}/Messages.json",
            data={"To": "+14155550100", "From": FROM, "Body": "hello"},
            auth=(twilio.account_sid, twilio.auth_token),
        )
    assert response.status_code == 201
    errors = list(twilio.response_validator.iter_errors(response.json()))
    assert errors == []
