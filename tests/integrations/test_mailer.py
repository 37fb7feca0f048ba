"""The mail transport: SendGrid v3 mail send against a contract-validating fake; shared helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.config import Settings
from leadflow.integrations.base import PermanentError, RetriableError
from leadflow.integrations.mailer import (
    DEDUP_HEADER,
    Mailer,
    OutgoingEmail,
    dedup_token,
    message_id,
    redact_emails,
    render,
)
from leadflow.integrations.notify import lead_facts
from leadflow.integrations.smtp import EmailNotificationConnector
from tests.fakes.sendgrid_mail import FakeSendGridMail, sendgrid_error
from tests.integrations.factories import (
    LEAD_EMAIL,
    http_client,
    make_context,
    make_lead,
    make_settings,
)


@pytest.fixture
def contract(shared: Path) -> Path:
    return shared / "contracts" / "sendgrid" / "mail-send-v3.subset.json"


@pytest.fixture
def sendgrid(contract: Path) -> Iterator[FakeSendGridMail]:
    with FakeSendGridMail(contract) as fake:
        yield fake


def sendgrid_settings(fake: FakeSendGridMail, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "email_transport": "sendgrid",
        "sendgrid_api_key": fake.api_key,
        "sendgrid_base_url": fake.base_url,
    }
    values.update(overrides)
    return make_settings(**values)


def outgoing(**overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "to": "jane@example.test",
        "to_name": "Jane Roe",
        "subject": "Hello",
        "text": "plain body",
        "html": "<p>html body</p>",
        "dedup_key": "deliver:email:7",
        "reply_to": "alice@nexlink.website",
        "category": "lead-notification",
        "headers": {"Auto-Submitted": "auto-generated"},
    }
    values.update(overrides)
    return OutgoingEmail(**values)


async def send(settings: Settings, message: OutgoingEmail, timeout: float = 5.0) -> Any:
    async with http_client(timeout) as http:
        return await Mailer(settings, http).send(message)


# --- SendGrid success --------------------------------------------------------------------------------


async def test_sendgrid_mail_send_body_and_auth(sendgrid: FakeSendGridMail) -> None:
    outcome = await send(sendgrid_settings(sendgrid), outgoing())

    [request] = sendgrid.accepted
    assert request.method == "POST"
    assert request.path == "/v3/mail/send"
    assert request.headers["authorization"] == f"Bearer {sendgrid.api_key}"
    body = request.json()
    token = dedup_token("deliver:email:7")
    assert body["personalizations"] == [
        {"to": [{"email": "jane@example.test", "name": "Jane Roe"}], "custom_args": {"leadflow_dedup": token}}
    ]
    assert body["from"] == {"email": "noreply@nexlink.website", "name": "Leadflow"}
    assert body["reply_to"] == {"email": "alice@nexlink.website"}
    assert body["subject"] == "Hello"
    assert body["content"] == [
        {"type": "text/plain", "value": "plain body"},
        {"type": "text/html", "value": "<p>html body</p>"},
    ]
    assert body["headers"] == {
        "Message-ID": message_id("deliver:email:7", "noreply@nexlink.website"),
        DEDUP_HEADER: token,
        "Auto-Submitted": "auto-generated",
    }
    assert body["categories"] == ["lead-notification"]
    assert outcome.status_code == 202
    assert outcome.external_id  # X-Message-Id
    assert outcome.detail == "e-mail sent via sendgrid"


async def test_notification_connector_over_sendgrid(sendgrid: FakeSendGridMail) -> None:
    settings = sendgrid_settings(sendgrid)
    connector = EmailNotificationConnector(settings)
    async with http_client() as http:
        outcome = await connector.deliver(make_lead(), make_context(settings, http))

    body = sendgrid.accepted[0].json()
    assert body["personalizations"][0]["to"] == [{"email": "alice@nexlink.website", "name": "Alice Seller"}]
    assert body["subject"].startswith("New A-grade lead: John Doe")
    assert "&lt;" not in body["content"][0]["value"]
    assert LEAD_EMAIL not in sendgrid.accepted[0].body.decode()
    assert outcome.detail == "notification e-mail sent to the assignee via sendgrid"


async def test_without_a_shared_client_the_mailer_uses_its_own(sendgrid: FakeSendGridMail) -> None:
    outcome = await Mailer(sendgrid_settings(sendgrid)).send(outgoing())

    assert outcome.status_code == 202
    assert len(sendgrid.accepted) == 1


async def test_a_retry_sends_the_same_ids(sendgrid: FakeSendGridMail) -> None:
    settings = sendgrid_settings(sendgrid)
    await send(settings, outgoing())
    await send(settings, outgoing())
    await send(settings, outgoing(dedup_key="deliver:email:8"))

    headers = [r.json()["headers"]["Message-ID"] for r in sendgrid.accepted]
    assert headers[0] == headers[1] != headers[2]


# --- SendGrid failures -------------------------------------------------------------------------------


async def test_wrong_key_is_permanent(sendgrid: FakeSendGridMail) -> None:
    with pytest.raises(PermanentError) as caught:
        await send(sendgrid_settings(sendgrid, sendgrid_api_key="SG.wrong"), outgoing())

    assert caught.value.status_code == 401


async def test_400_is_permanent_and_addresses_are_redacted(sendgrid: FakeSendGridMail) -> None:
    sendgrid.fail_next(
        sendgrid_error(400, "Does not contain a valid address: jane@example.test", "personalizations.0.to")
    )

    with pytest.raises(PermanentError) as caught:
        await send(sendgrid_settings(sendgrid), outgoing())

    assert caught.value.status_code == 400
    assert "jane@example.test" not in (caught.value.response_excerpt or "")


async def test_invalid_recipient_is_refused_by_the_contract(sendgrid: FakeSendGridMail) -> None:
    with pytest.raises(PermanentError) as caught:
        await send(sendgrid_settings(sendgrid), outgoing(to="not-an-address"))

    assert caught.value.status_code == 400
    assert sendgrid.accepted == []


async def test_429_is_retriable_with_retry_after(sendgrid: FakeSendGridMail) -> None:
    sendgrid.fail_next(sendgrid_error(429, "too many requests", headers={"Retry-After": "60"}))

    with pytest.raises(RetriableError) as caught:
        await send(sendgrid_settings(sendgrid), outgoing())

    assert caught.value.status_code == 429
    assert caught.value.retry_after == 60.0


async def test_5xx_is_retriable(sendgrid: FakeSendGridMail) -> None:
    sendgrid.fail_next(sendgrid_error(500, "internal server error"))

    with pytest.raises(RetriableError) as caught:
        await send(sendgrid_settings(sendgrid), outgoing())

    assert caught.value.status_code == 500


async def test_timeout_is_retriable(sendgrid: FakeSendGridMail) -> None:
    sendgrid.stall_seconds = 1.0

    with pytest.raises(RetriableError, match="timeout"):
        await send(sendgrid_settings(sendgrid), outgoing(), timeout=0.2)


async def test_not_configured_is_permanent() -> None:
    with pytest.raises(PermanentError):
        await send(make_settings(email_transport="sendgrid"), outgoing())


# --- the fake refuses what SendGrid refuses ----------------------------------------------------------


GOOD: dict[str, Any] = {
    "personalizations": [{"to": [{"email": "jane@example.test"}]}],
    "from": {"email": "noreply@nexlink.website"},
    "subject": "Hi",
    "content": [{"type": "text/plain", "value": "x"}, {"type": "text/html", "value": "<p>x</p>"}],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"from": None}, None),
        ({"personalizations": None}, None),
        ({"personalizations": [{"to": [{"email": "nope"}]}]}, "personalizations.0.to.0.email"),
        ({"personalizations": [{"to": []}]}, "personalizations.0.to"),
        ({"subject": None}, "subject"),
        ({"content": None}, "content"),
        (
            {"content": [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}]},
            "content",
        ),
        ({"headers": {"Subject": "override"}}, "headers.Subject"),
        ({"headers": {"X-Count": 1}}, "headers"),
        ({"custom_args": {"a": "b"}}, "custom_args"),  # message-level custom_args is a string in v3
        ({"categories": ["x"] * 11}, "categories"),
    ],
)
async def test_fake_refuses_invalid_bodies(
    sendgrid: FakeSendGridMail, change: dict[str, Any], field: str | None
) -> None:
    body = {**GOOD, **change}
    body = {k: v for k, v in body.items() if v is not None}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{sendgrid.base_url}/v3/mail/send",
            json=body,
            headers={"Authorization": f"Bearer {sendgrid.api_key}"},
        )

    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert set(error) == {"field", "message", "help"}
    if field is not None:
        assert error["field"] == field


async def test_fake_checks_method_path_auth_and_content_type(sendgrid: FakeSendGridMail) -> None:
    url = f"{sendgrid.base_url}/v3/mail/send"
    auth = {"Authorization": f"Bearer {sendgrid.api_key}"}
    async with httpx.AsyncClient() as http:
        no_auth = await http.post(url, json=GOOD)
        basic = await http.post(url, json=GOOD, auth=("apikey", sendgrid.api_key))
        form = await http.post(url, data={"x": "y"}, headers=auth)
        get = await http.get(url, headers=auth)
        other = await http.post(f"{sendgrid.base_url}/v3/mail/batch", json=GOOD, headers=auth)
        ok = await http.post(url, json=GOOD, headers=auth)

    assert [r.status_code for r in (no_auth, basic, form, get, other, ok)] == [401, 401, 400, 405, 404, 202]
    assert ok.content == b""
    assert ok.headers["x-message-id"]


# --- helpers -------------------------------------------------------------------------------------------


def test_message_id_is_stable_opaque_and_uses_the_sender_domain() -> None:
    first = message_id("deliver:email:1", "noreply@nexlink.website")
    assert first == message_id("deliver:email:1", "noreply@nexlink.website")
    assert first != message_id("deliver:email:2", "noreply@nexlink.website")
    assert first.startswith("<") and first.endswith("@nexlink.website>")
    assert "deliver" not in first


def test_redact_emails() -> None:
    assert redact_emails("550 5.1.1 <john.doe+x@mail.company.com>: unknown") == "550 5.1.1 <<email>>: unknown"
    assert redact_emails("no address here") == "no address here"


def test_templates_autoescape_html_only() -> None:
    lead = make_lead(company="<b>Bold</b>")
    rendered = render(
        "notification",
        lead=lead,
        assignee=lead.assignee,
        facts=lead_facts(lead),
        url="https://x.test/?a=1&b=2",
    )
    assert "&lt;b&gt;Bold&lt;/b&gt;" in rendered.html
    assert 'href="https://x.test/?a=1&amp;b=2"' in rendered.html
    assert "<b>Bold</b>" in rendered.text
    assert "https://x.test/?a=1&b=2" in rendered.text
    assert "\n" not in rendered.subject
