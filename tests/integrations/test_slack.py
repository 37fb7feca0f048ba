"""Slack connector against a real HTTP fake of the incoming webhook."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from leadflow.integrations import registry
from leadflow.integrations.base import Connector, PermanentError, RetriableError
from leadflow.integrations.slack import SlackConnector
from tests.fakes.server import Reply
from tests.fakes.slack import FakeSlack, check_payload
from tests.integrations.factories import (
    LEAD_EMAIL,
    LEAD_PHONE,
    http_client,
    make_context,
    make_lead,
    make_settings,
    with_campaign_integration,
)

LINK = "https://leads.example.test/leads/lead_0123456789ab"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def connector_for(fake: FakeSlack) -> SlackConnector:
    return SlackConnector(make_settings(slack_webhook_url=fake.webhook_url))


async def deliver(connector: SlackConnector, timeout: float = 5.0, **lead: Any) -> Any:
    async with http_client(timeout) as http:
        return await connector.deliver(make_lead(**lead), make_context(connector.settings, http))


def fields_of(body: dict[str, Any]) -> dict[str, str]:
    section = next(b for b in body["blocks"] if b["type"] == "section")
    pairs = (f["text"].split("\n", 1) for f in section["fields"])
    return {label.strip("*"): value for label, value in pairs}


# --- success ---------------------------------------------------------------------------------------


async def test_posts_text_fallback_and_blocks_with_the_lead_summary(slack: FakeSlack) -> None:
    outcome = await deliver(connector_for(slack))

    assert outcome.status_code == 200
    assert outcome.response_excerpt == "ok"
    assert len(slack.accepted) == 1
    request = slack.accepted[0]
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert "John Doe (Acme Corp)" in body["text"]
    assert "score 87" in body["text"]
    assert f"<{LINK}|Open lead>" in body["text"]
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New A-grade lead", "emoji": True},
    }
    assert fields_of(body) == {
        "Name": "John Doe",
        "Company": "Acme Corp",
        "Score": "87 (grade A)",
        "Service": "Nextcloud Installation",
        "Urgency": "High (Same day)",
        "Campaign": "Nextcloud Installation 2025",
        "Assigned to": "Alice Seller",
    }
    actions = next(b for b in body["blocks"] if b["type"] == "actions")
    assert actions["elements"][0]["url"] == LINK
    context = next(b for b in body["blocks"] if b["type"] == "context")
    assert "lead_0123456789ab" in context["elements"][0]["text"]


async def test_unassigned_lead_without_company_or_service(slack: FakeSlack) -> None:
    await deliver(connector_for(slack), assignee=None, company=None, service_interest=None)

    body = slack.accepted[0].json()
    assert fields_of(body)["Assigned to"] == "unassigned"
    assert fields_of(body)["Company"] == "—"
    assert "()" not in body["text"]


async def test_contact_details_never_reach_slack(slack: FakeSlack) -> None:
    await deliver(connector_for(slack))

    raw = slack.accepted[0].body.decode()
    assert LEAD_EMAIL not in raw
    assert LEAD_PHONE not in raw
    assert "Need Nextcloud setup" not in raw  # the message stays behind the authenticated link


async def test_lead_values_cannot_mention_or_link(slack: FakeSlack) -> None:
    await deliver(connector_for(slack), first_name="<!channel>", company="<https://evil.test|Acme & Co>")

    body = slack.accepted[0].json()
    raw = json.dumps(body)
    assert "<!channel>" not in raw
    assert "<https://evil.test" not in raw
    assert fields_of(body)["Name"] == "&lt;!channel&gt; Doe"
    assert fields_of(body)["Company"] == "&lt;https://evil.test|Acme &amp; Co&gt;"


async def test_long_values_are_clipped_within_slack_limits(slack: FakeSlack) -> None:
    await deliver(connector_for(slack), company="X" * 5000)

    assert len(slack.accepted) == 1
    assert len(fields_of(slack.accepted[0].json())["Company"]) <= 300


# --- which leads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "campaign", "expected"),
    [
        ("A", {}, True),
        ("B", {}, False),
        ("C", {}, False),
        ("D", {}, False),
        ("A", with_campaign_integration("slack", enabled=False), False),
        ("C", with_campaign_integration("slack", enabled=True), True),
        ("B", with_campaign_integration("slack", grades=["A", "B"]), True),
        ("C", with_campaign_integration("slack", grades=["A", "B"]), False),
        ("A", with_campaign_integration("teams", enabled=False), True),  # another connector's switch
    ],
)
def test_wants_a_grade_leads_unless_the_campaign_says_otherwise(
    grade: str, campaign: dict[str, Any], expected: bool
) -> None:
    connector = SlackConnector(make_settings(slack_webhook_url="https://hooks.example.test/x"))
    assert connector.wants(make_lead(lead_grade=grade, campaign_settings=campaign)) is expected


@pytest.mark.parametrize(
    ("url", "expected"), [(None, False), ("", False), ("  ", False), ("https://h/x", True)]
)
def test_configured_only_with_a_webhook_url(url: str | None, expected: bool) -> None:
    connector = registry.build("slack", make_settings(slack_webhook_url=url))
    assert isinstance(connector, SlackConnector)
    assert isinstance(connector, Connector)
    assert connector.configured() is expected


async def test_deliver_without_configuration_is_permanent() -> None:
    with pytest.raises(PermanentError):
        await deliver(SlackConnector(make_settings()))


def test_the_webhook_url_is_a_secret() -> None:
    connector = SlackConnector(make_settings(slack_webhook_url="https://hooks.slack.com/services/T/B/sekrit"))
    assert connector.config is not None
    assert "sekrit" not in repr(connector.config)


# --- failures --------------------------------------------------------------------------------------


async def test_429_is_retriable_with_retry_after(slack: FakeSlack) -> None:
    slack.fail_next(Reply(429, "rate_limited", headers={"Retry-After": "30"}, content_type="text/plain"))

    with pytest.raises(RetriableError) as caught:
        await deliver(connector_for(slack))

    assert caught.value.status_code == 429
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retriable(slack: FakeSlack, status: int) -> None:
    slack.fail_next(Reply(status, "rollup_error", content_type="text/plain"))

    with pytest.raises(RetriableError) as caught:
        await deliver(connector_for(slack))

    assert caught.value.status_code == status
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "invalid_payload"),
        (400, "user_not_found"),
        (403, "action_prohibited"),
        (404, "channel_not_found"),
    ],
)
async def test_documented_4xx_errors_are_permanent(slack: FakeSlack, status: int, reason: str) -> None:
    slack.fail_next(Reply(status, reason, content_type="text/plain"))

    with pytest.raises(PermanentError) as caught:
        await deliver(connector_for(slack))

    assert caught.value.status_code == status
    assert caught.value.response_excerpt == reason


async def test_archived_channel_is_permanent(slack: FakeSlack) -> None:
    slack.archive()

    with pytest.raises(PermanentError) as caught:
        await deliver(connector_for(slack))

    assert caught.value.status_code == 410
    assert caught.value.response_excerpt == "channel_is_archived"


async def test_unknown_webhook_is_permanent(slack: FakeSlack) -> None:
    connector = SlackConnector(make_settings(slack_webhook_url=slack.base_url + "/services/T0/B0/revoked"))

    with pytest.raises(PermanentError) as caught:
        await deliver(connector)

    assert caught.value.status_code == 404


async def test_timeout_is_retriable(slack: FakeSlack) -> None:
    slack.stall_seconds = 1.0

    with pytest.raises(RetriableError, match="timeout"):
        await deliver(connector_for(slack), timeout=0.2)


async def test_connection_refused_is_retriable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens there
    connector = SlackConnector(make_settings(slack_webhook_url=f"http://127.0.0.1:{port}/services/T/B/x"))

    with pytest.raises(RetriableError):
        await deliver(connector)


# --- the fake refuses what Slack refuses -------------------------------------------------------------


async def test_fake_refuses_bad_requests(slack: FakeSlack) -> None:
    async with httpx.AsyncClient() as http:
        not_json = await http.post(
            slack.webhook_url, content=b"text=hi", headers={"content-type": "text/plain"}
        )
        broken = await http.post(
            slack.webhook_url, content=b"{nope", headers={"content-type": "application/json"}
        )
        empty = await http.post(slack.webhook_url, json={})
        wrong_path = await http.post(slack.base_url + "/services/x", json={"text": "hi"})
        ok = await http.post(slack.webhook_url, json={"text": "hi"})

    assert (not_json.status_code, not_json.text) == (400, "invalid_payload")
    assert (broken.status_code, broken.text) == (400, "invalid_payload")
    assert (empty.status_code, empty.text) == (400, "no_text")
    assert (wrong_path.status_code, wrong_path.text) == (404, "no_service")
    assert (ok.status_code, ok.text) == (200, "ok")


@pytest.mark.parametrize(
    "blocks",
    [
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": str(i)} for i in range(11)]}],
        [{"type": "header", "text": {"type": "mrkdwn", "text": "no"}}],
        [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}],
        [{"type": "section"}],
        [{"type": "carousel"}],
        [
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "x" * 76}}],
            }
        ],
    ],
)
def test_fake_refuses_invalid_blocks(blocks: list[dict[str, Any]]) -> None:
    assert check_payload({"text": "fallback", "blocks": blocks}) == "invalid_blocks"
