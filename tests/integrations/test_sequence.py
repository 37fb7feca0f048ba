"""Automated e-mail sequence to the lead, over real SMTP (and SendGrid for one walk-through)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow.config import Settings
from leadflow.integrations import registry
from leadflow.integrations.base import FollowUp, Outcome, PermanentError, RetriableError
from leadflow.integrations.mailer import DEDUP_HEADER
from leadflow.integrations.sequence import DAY, EmailSequenceConnector
from leadflow.kit.clock import utcnow
from leadflow.privacy.unsubscribe import read_token
from tests.fakes.sendgrid_mail import FakeSendGridMail
from tests.fakes.smtp import FakeSmtp
from tests.integrations.factories import (
    LEAD_EMAIL,
    http_client,
    make_context,
    make_lead,
    make_settings,
    with_campaign_integration,
)


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    with FakeSmtp() as fake:
        yield fake


def smtp_settings(fake: FakeSmtp, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"smtp_host": fake.host, "smtp_port": fake.port, "smtp_starttls": False}
    values.update(overrides)
    return make_settings(**values)


async def run_step(
    settings: Settings,
    payload: dict[str, Any] | None = None,
    dedup_key: str = "deliver:sequence:1",
    **lead: Any,
) -> Outcome:
    connector = EmailSequenceConnector(settings)
    async with http_client() as http:
        ctx = make_context(settings, http, payload=payload or {}, dedup_key=dedup_key)
        return await connector.deliver(make_lead(**lead), ctx)


def one_click_url(header: str) -> str:
    """The signed HTTPS link of a ``List-Unsubscribe`` header (then the mailto fallback); checks it."""
    header = " ".join(str(header).split())  # long headers are folded
    match = re.fullmatch(
        r"<(https://leads\.example\.test/v1/unsubscribe/([^>]+))>, "
        r"<mailto:noreply@nexlink\.website\?subject=unsubscribe>",
        header,
    )
    assert match is not None, header
    link = read_token(make_settings().encryption_keys, match.group(2), utcnow())
    assert link.expires > utcnow() + timedelta(days=59)
    return match.group(1)


def text_of(fake: FakeSmtp, index: int = -1) -> str:
    body = fake.messages[index].message().get_body(("plain",))
    assert body is not None
    return str(body.get_content())


# --- the steps ---------------------------------------------------------------------------------------


async def test_step_0_acknowledges_now_and_schedules_step_1_in_two_days(smtp: FakeSmtp) -> None:
    outcome = await run_step(smtp_settings(smtp))

    [mail] = smtp.messages
    assert mail.rcpt_tos == [LEAD_EMAIL]
    message = mail.message()
    assert message["To"] == f"John Doe <{LEAD_EMAIL}>"
    assert message["Reply-To"] == "alice@nexlink.website"
    assert message["Subject"] == "We received your request about Nextcloud Installation"
    url = one_click_url(message["List-Unsubscribe"])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = text_of(smtp)
    assert text.startswith("Hello John,")
    assert "Alice Seller will get in touch with you today" in text
    assert f"unsubscribe here: {url}" in " ".join(text.split())
    assert outcome.follow_up == FollowUp(delay_seconds=2 * DAY, payload={"step": 1}, key="step1")
    assert outcome.detail == "sequence step 0 sent"


async def test_step_1_follows_up_and_schedules_step_2_on_day_five(smtp: FakeSmtp) -> None:
    outcome = await run_step(smtp_settings(smtp), {"step": 1}, status="contacted")

    assert (
        smtp.messages[0].message()["Subject"] == "Following up on your request about Nextcloud Installation"
    )
    assert outcome.follow_up == FollowUp(delay_seconds=3 * DAY, payload={"step": 2}, key="step2")


async def test_step_2_is_the_last(smtp: FakeSmtp) -> None:
    outcome = await run_step(smtp_settings(smtp), {"step": 2})

    assert smtp.messages[0].message()["Subject"] == "Can we still help with Nextcloud Installation?"
    assert "last automatic e-mail" in text_of(smtp)
    assert outcome.follow_up is None


async def test_past_the_last_step_nothing_is_sent(smtp: FakeSmtp) -> None:
    outcome = await run_step(smtp_settings(smtp), {"step": 3})

    assert outcome.detail == "sequence finished"
    assert outcome.follow_up is None
    assert smtp.messages == []


async def test_the_whole_sequence_as_the_worker_runs_it(smtp: FakeSmtp) -> None:
    """Follow each FollowUp as the worker does (payload merged, key appended to the dedup key)."""
    settings = smtp_settings(smtp)
    payload: dict[str, Any] = {"connector": "sequence", "lead_id": 1}
    dedup_key = "deliver:sequence:1"
    delays = []
    while True:
        outcome = await run_step(settings, payload, dedup_key)
        if outcome.follow_up is None:
            break
        delays.append(outcome.follow_up.delay_seconds)
        payload = {**payload, **outcome.follow_up.payload}
        dedup_key = f"{dedup_key}:{outcome.follow_up.key}"

    assert delays == [2 * DAY, 3 * DAY]
    assert len(smtp.messages) == 3
    ids = {m.message()["Message-ID"] for m in smtp.messages}
    assert len(ids) == 3


async def test_the_sequence_stops_when_the_lead_moves_on(smtp: FakeSmtp) -> None:
    outcome = await run_step(smtp_settings(smtp), {"step": 1}, status="qualified")

    assert outcome.detail == "sequence stopped before step 1: lead status is qualified"
    assert outcome.follow_up is None
    assert smtp.messages == []


async def test_the_sequence_stops_when_consent_is_withdrawn(smtp: FakeSmtp) -> None:
    outcome = await run_step(smtp_settings(smtp), {"step": 2}, consent_given=False)

    assert outcome.follow_up is None
    assert "no consent" in (outcome.detail or "")
    assert smtp.messages == []


async def test_the_sequence_stops_when_switched_off(smtp: FakeSmtp) -> None:
    outcome = await run_step(smtp_settings(smtp, sequence_enabled=False), {"step": 1})

    assert outcome.follow_up is None
    assert smtp.messages == []


async def test_a_retry_of_a_step_has_the_same_ids(smtp: FakeSmtp) -> None:
    settings = smtp_settings(smtp)
    await run_step(settings, {"step": 1})
    await run_step(settings, {"step": 1})
    await run_step(settings, {"step": 2})

    ids = [m.message()["Message-ID"] for m in smtp.messages]
    dedup = [m.message()[DEDUP_HEADER] for m in smtp.messages]
    assert ids[0] == ids[1] != ids[2]
    assert dedup[0] == dedup[1] != dedup[2]


async def test_two_installations_give_the_same_step_different_ids(smtp: FakeSmtp) -> None:
    """The same dedup key (row id 1 exists in every database) for two leads: the ids still differ."""
    settings = smtp_settings(smtp)
    await run_step(settings, {"step": 1}, uuid="5f0c3f4e-8a5b-4c1e-9d2a-0b6f7e1c2d3a")
    await run_step(settings, {"step": 1}, uuid="0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70")

    ids = [m.message()["Message-ID"] for m in smtp.messages]
    dedup = [m.message()[DEDUP_HEADER] for m in smtp.messages]
    assert ids[0] != ids[1]
    assert dedup[0] != dedup[1]


async def test_without_assignee_or_service(smtp: FakeSmtp) -> None:
    await run_step(smtp_settings(smtp), assignee=None, service_interest=None, urgency_level="low")

    message = smtp.messages[0].message()
    assert message["Reply-To"] is None
    assert message["Subject"] == "We received your request"
    text = text_of(smtp)
    assert "Someone from our team will get in touch with you shortly" in text
    assert "The team" in text
    assert "asked us about our services" in text


async def test_lead_values_are_escaped_in_html(smtp: FakeSmtp) -> None:
    await run_step(smtp_settings(smtp), first_name='<img src="x" onerror="alert(1)">')

    html = smtp.messages[0].message().get_body(("html",))
    assert html is not None
    content = str(html.get_content())
    assert "<img" not in content
    assert "&lt;img src=&#34;x&#34;" in content


# --- which leads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lead", "enabled", "expected"),
    [
        ({}, True, True),
        ({"status": "contacted"}, True, True),
        ({"lead_grade": "D"}, True, True),
        ({"do_not_sell": True}, True, True),  # consent decides, not the sale opt-out
        ({}, False, False),
        ({"consent_given": False}, True, False),
        ({"status": "qualified"}, True, False),
        ({"status": "closed_won"}, True, False),
        ({"email": ""}, True, False),
        ({"campaign_settings": with_campaign_integration("sequence", enabled=False)}, True, False),
        (
            {
                "consent_given": False,
                "campaign_settings": with_campaign_integration("sequence", enabled=True),
            },
            True,
            False,
        ),
    ],
)
def test_wants_consenting_open_leads(lead: dict[str, Any], enabled: bool, expected: bool) -> None:
    connector = EmailSequenceConnector(make_settings(smtp_host="mail.example.test", sequence_enabled=enabled))
    assert connector.wants(make_lead(**lead)) is expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, False),
        ({"smtp_host": "mail.example.test"}, True),
        # a switch, not a credential: wants() says no, and queued steps end quietly
        ({"smtp_host": "mail.example.test", "sequence_enabled": False}, True),
        ({"email_transport": "sendgrid", "sendgrid_api_key": "SG.x"}, True),
    ],
)
def test_configured(overrides: dict[str, Any], expected: bool) -> None:
    connector = registry.build("sequence", make_settings(**overrides))
    assert isinstance(connector, EmailSequenceConnector)
    assert connector.configured() is expected


@pytest.mark.parametrize("step", [-1, "1", True, 1.5, None])
async def test_an_invalid_step_is_permanent(smtp: FakeSmtp, step: Any) -> None:
    with pytest.raises(PermanentError):
        await run_step(smtp_settings(smtp), {"step": step})

    assert smtp.messages == []


# --- failures --------------------------------------------------------------------------------------


async def test_refused_lead_address_is_permanent_and_not_kept(smtp: FakeSmtp) -> None:
    smtp.fail_next("RCPT", f"550 5.1.1 <{LEAD_EMAIL}>: Recipient address rejected")

    with pytest.raises(PermanentError) as caught:
        await run_step(smtp_settings(smtp))

    assert LEAD_EMAIL not in str(caught.value)
    assert LEAD_EMAIL not in (caught.value.response_excerpt or "")


async def test_temporary_failure_is_retriable(smtp: FakeSmtp) -> None:
    smtp.fail_next("DATA", "452 4.3.1 Insufficient system storage")

    with pytest.raises(RetriableError):
        await run_step(smtp_settings(smtp))


async def test_sequence_over_sendgrid(shared: Path) -> None:
    contract = shared / "contracts" / "sendgrid" / "mail-send-v3.subset.json"
    with FakeSendGridMail(contract) as fake:
        settings = make_settings(
            email_transport="sendgrid", sendgrid_api_key=fake.api_key, sendgrid_base_url=fake.base_url
        )
        outcome = await run_step(settings)

    body = fake.accepted[0].json()
    assert body["personalizations"][0]["to"] == [{"email": LEAD_EMAIL, "name": "John Doe"}]
    assert body["reply_to"] == {"email": "alice@nexlink.website"}
    assert body["categories"] == ["lead-sequence-0"]
    one_click_url(body["headers"]["List-Unsubscribe"])
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert outcome.follow_up is not None
