"""E-mail notification to the assignee, sent over real SMTP to an aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from leadflow.config import Settings
from leadflow.integrations import registry
from leadflow.integrations.base import Outcome, PermanentError, RetriableError
from leadflow.integrations.mailer import DEDUP_HEADER, message_id
from leadflow.integrations.smtp import EmailNotificationConnector
from tests.fakes.smtp import FakeSmtp, self_signed, server_context
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

LINK = "https://leads.example.test/leads/lead_0123456789ab"


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    with FakeSmtp() as fake:
        yield fake


def smtp_settings(fake: FakeSmtp, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"smtp_host": fake.host, "smtp_port": fake.port, "smtp_starttls": False}
    values.update(overrides)
    return make_settings(**values)


async def deliver(settings: Settings, *, payload: dict[str, Any] | None = None, **lead: Any) -> Outcome:
    connector = EmailNotificationConnector(settings)
    async with http_client() as http:
        ctx = make_context(settings, http, payload=payload or {})
        return await connector.deliver(make_lead(**lead), ctx)


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


# --- success ---------------------------------------------------------------------------------------


async def test_sends_the_notification_to_the_assignee(smtp: FakeSmtp) -> None:
    outcome = await deliver(smtp_settings(smtp))

    [mail] = smtp.messages
    assert mail.mail_from == "noreply@nexlink.website"
    assert mail.rcpt_tos == ["alice@nexlink.website"]
    message = mail.message()
    assert message["To"] == "Alice Seller <alice@nexlink.website>"
    assert message["From"] == "Leadflow <noreply@nexlink.website>"
    assert message["Subject"] == "New A-grade lead: John Doe (Acme Corp) – Nextcloud Installation"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == message_id(
        f"{make_lead().uuid}:deliver:test:1", "noreply@nexlink.website"
    )
    assert message[DEDUP_HEADER]
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    for expected in (
        "Hello Alice Seller",
        "Name: John Doe",
        "Company: Acme Corp",
        "Score: 87 (grade A)",
        "Service: Nextcloud Installation",
        "Urgency: High (Same day)",
        "Budget: $5000-$10000",
        LINK,
    ):
        assert expected in text
    assert f'href="{LINK}"' in html
    assert '<td style="padding:4px 0;">Acme Corp</td>' in html
    assert outcome.external_id == message["Message-ID"]
    assert "queued" in (outcome.response_excerpt or "")
    assert outcome.detail == "notification e-mail sent to the assignee via smtp"


async def test_lead_contact_details_and_message_stay_out_of_the_mail(smtp: FakeSmtp) -> None:
    await deliver(smtp_settings(smtp))

    raw = smtp.messages[0].data.decode()
    assert LEAD_EMAIL not in raw
    assert LEAD_PHONE not in raw
    assert "Need Nextcloud setup" not in raw


async def test_html_is_autoescaped_and_text_is_verbatim(smtp: FakeSmtp) -> None:
    await deliver(smtp_settings(smtp), company="<script>alert(1)</script> & Sons")

    text, html = parts(smtp.messages[0].message())
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Sons" in html
    assert "Company: <script>alert(1)</script> & Sons" in text


async def test_no_header_injection_through_lead_values(smtp: FakeSmtp) -> None:
    await deliver(smtp_settings(smtp), first_name="John\r\nBcc: victim@evil.test", company="Acme\nX-Evil: 1")

    [mail] = smtp.messages
    message = mail.message()
    assert mail.rcpt_tos == ["alice@nexlink.website"]
    assert message["Bcc"] is None
    assert message["X-Evil"] is None
    assert "\n" not in str(message["Subject"])


async def test_a_retry_carries_the_same_message_id(smtp: FakeSmtp) -> None:
    settings = smtp_settings(smtp)
    await deliver(settings)
    await deliver(settings)
    connector = EmailNotificationConnector(settings)
    async with http_client() as http:
        await connector.deliver(make_lead(), make_context(settings, http, dedup_key="deliver:email:2"))

    ids = [m.message()["Message-ID"] for m in smtp.messages]
    dedup = [m.message()[DEDUP_HEADER] for m in smtp.messages]
    assert ids[0] == ids[1] != ids[2]
    assert dedup[0] == dedup[1] != dedup[2]
    assert "deliver" not in ids[0]  # opaque: the key's content does not leak into mail headers


async def test_message_ids_differ_between_installations_for_the_same_row_id(smtp: FakeSmtp) -> None:
    """Two databases both have lead row 1 and job ``deliver:email:1``; their mails must not share ids."""
    settings = smtp_settings(smtp)
    connector = EmailNotificationConnector(settings)
    async with http_client() as http:
        for lead_uuid in ("5f0c3f4e-8a5b-4c1e-9d2a-0b6f7e1c2d3a", "0d7a51b2-3c4e-4f60-8a9b-1c2d3e4f5a6b"):
            ctx = make_context(settings, http, dedup_key="deliver:email:1")
            await connector.deliver(make_lead(id=1, uuid=lead_uuid), ctx)
            await connector.deliver(make_lead(id=1, uuid=lead_uuid), ctx)  # a retry

    ids = [m.message()["Message-ID"] for m in smtp.messages]
    dedup = [m.message()[DEDUP_HEADER] for m in smtp.messages]
    assert ids[0] == ids[1] != ids[2] == ids[3]
    assert dedup[0] == dedup[1] != dedup[2] == dedup[3]
    assert all(make_lead().uuid not in i for i in ids)  # still opaque


async def test_follow_up_reminder(smtp: FakeSmtp) -> None:
    outcome = await deliver(smtp_settings(smtp), payload={"reason": "follow_up_due"}, status="contacted")

    message = smtp.messages[0].message()
    assert message["Subject"] == "Follow-up due: John Doe (Acme Corp)"
    text, _ = parts(message)
    assert "Status: contacted" in text
    assert LINK in text
    assert outcome.detail == "reminder e-mail sent to the assignee via smtp"


async def test_a_lead_unassigned_since_queueing_sends_nothing(smtp: FakeSmtp) -> None:
    outcome = await deliver(smtp_settings(smtp), assignee=None)

    assert outcome.detail == "no assignee; nothing sent"
    assert smtp.messages == []


# --- which leads, configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        ({}, True),
        ({"lead_grade": "D", "urgency_level": None}, True),
        ({"assignee": None}, False),
        ({"assignee": make_assignee(email="")}, False),
        ({"campaign_settings": with_campaign_integration("email", enabled=False)}, False),
    ],
)
def test_wants_leads_with_an_assignee(lead: dict[str, Any], expected: bool) -> None:
    connector = EmailNotificationConnector(make_settings(smtp_host="mail.example.test"))
    assert connector.wants(make_lead(**lead)) is expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, False),
        ({"smtp_host": "mail.example.test"}, True),
        ({"smtp_host": " "}, False),
        ({"smtp_host": "mail.example.test", "smtp_user": "u", "smtp_password": "p"}, True),
        ({"smtp_host": "mail.example.test", "smtp_user": "u"}, False),
        ({"smtp_host": "mail.example.test", "smtp_from": "not-an-address"}, False),
        ({"email_transport": "sendgrid", "smtp_host": "mail.example.test"}, False),
        ({"email_transport": "sendgrid", "sendgrid_api_key": "SG.x"}, True),
        ({"email_transport": "smtp", "sendgrid_api_key": "SG.x"}, False),
    ],
)
def test_configured_when_the_chosen_transport_has_its_settings(
    overrides: dict[str, Any], expected: bool
) -> None:
    connector = registry.build("email", make_settings(**overrides))
    assert isinstance(connector, EmailNotificationConnector)
    assert connector.configured() is expected


async def test_deliver_without_configuration_is_permanent() -> None:
    with pytest.raises(PermanentError):
        await deliver(make_settings())


# --- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("MAIL", "421 4.7.0 Too many connections, try later"),
        ("RCPT", "450 4.2.1 Mailbox busy"),
        ("DATA", "451 4.3.0 Temporary local problem"),
    ],
)
async def test_4xx_replies_are_retriable(smtp: FakeSmtp, stage: str, reply: str) -> None:
    smtp.fail_next(stage, reply)

    with pytest.raises(RetriableError) as caught:
        await deliver(smtp_settings(smtp))

    assert caught.value.status_code == int(reply[:3])
    assert smtp.messages == []


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("MAIL", "553 5.7.1 Sender address rejected"),
        ("RCPT", "550 5.1.1 <alice@nexlink.website>: Recipient address rejected: User unknown"),
        ("DATA", "554 5.7.1 Message rejected as spam"),
    ],
)
async def test_5xx_replies_are_permanent_and_addresses_are_redacted(
    smtp: FakeSmtp, stage: str, reply: str
) -> None:
    smtp.fail_next(stage, reply)

    with pytest.raises(PermanentError) as caught:
        await deliver(smtp_settings(smtp))

    assert caught.value.status_code == int(reply[:3])
    assert "alice@nexlink.website" not in str(caught.value)
    assert "alice@nexlink.website" not in (caught.value.response_excerpt or "")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("address", ["not-an-address", "josé@exämple.com", "a@b.com>\r\nBcc: x@y.com"])
async def test_an_invalid_assignee_address_is_permanent(smtp: FakeSmtp, address: str) -> None:
    with pytest.raises(PermanentError, match="invalid e-mail address"):
        await deliver(smtp_settings(smtp), assignee=make_assignee(email=address))

    assert smtp.messages == []


async def test_timeout_is_retriable(smtp: FakeSmtp) -> None:
    smtp.stall_seconds = 1.5

    with pytest.raises(RetriableError, match="timeout"):
        await deliver(smtp_settings(smtp, http_timeout_seconds=0.3))


async def test_connection_refused_is_retriable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(RetriableError):
        await deliver(make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False))


async def test_required_starttls_missing_is_permanent_and_nothing_is_sent_in_clear(smtp: FakeSmtp) -> None:
    with pytest.raises(PermanentError, match="STARTTLS"):
        await deliver(smtp_settings(smtp, smtp_starttls=True))

    assert smtp.messages == []


# --- TLS and login -------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 that the client trusts (verification stays on)."""
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


async def test_starttls_and_login(certificate: tuple[Path, Path]) -> None:
    context = server_context(*certificate)
    with FakeSmtp(tls=context, require_starttls=True, login=("mailer", "s3cret")) as fake:
        settings = smtp_settings(fake, smtp_starttls=True, smtp_user="mailer", smtp_password="s3cret")
        await deliver(settings)

    assert fake.logins == ["mailer"]
    assert len(fake.messages) == 1


async def test_wrong_password_is_permanent(certificate: tuple[Path, Path]) -> None:
    context = server_context(*certificate)
    with FakeSmtp(tls=context, require_starttls=True, login=("mailer", "s3cret")) as fake:
        settings = smtp_settings(fake, smtp_starttls=True, smtp_user="mailer", smtp_password="wrong")
        with pytest.raises(PermanentError) as caught:
            await deliver(settings)

    assert caught.value.status_code == 535
    assert fake.messages == []


async def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    with FakeSmtp(implicit_tls=server_context(*certificate)) as fake:
        await deliver(smtp_settings(fake, smtp_use_tls=True, smtp_starttls=True))

    assert len(fake.messages) == 1


async def test_untrusted_certificate_is_not_accepted(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)  # not in SSL_CERT_FILE: verification must fail
    with FakeSmtp(implicit_tls=server_context(cert, key)) as fake, pytest.raises(RetriableError):
        await deliver(smtp_settings(fake, smtp_use_tls=True))

    assert fake.messages == []


# --- connection reuse ------------------------------------------------------------------------------


async def test_notifications_reuse_one_connection(smtp: FakeSmtp) -> None:
    settings = smtp_settings(smtp)
    for n in range(3):
        await deliver(settings, payload={"n": n})
    assert len(smtp.messages) == 3
    assert len({m.peer for m in smtp.messages}) == 1


async def test_a_connection_the_server_closed_is_replaced() -> None:
    with FakeSmtp(idle_timeout=0.2) as fake:
        settings = smtp_settings(fake)
        await deliver(settings)
        await asyncio.sleep(0.6)  # the server hangs up on the idle connection
        await deliver(settings)
        assert len(fake.messages) == 2
        assert fake.messages[0].peer != fake.messages[1].peer


async def test_a_failed_send_does_not_leave_its_connection_in_the_pool(smtp: FakeSmtp) -> None:
    settings = smtp_settings(smtp)
    smtp.fail_next("RCPT", "451 4.3.0 Try again later")
    with pytest.raises(RetriableError):
        await deliver(settings)
    await deliver(settings)
    await deliver(settings)
    assert len(smtp.messages) == 2
    assert smtp.messages[0].peer == smtp.messages[1].peer
