"""Teams connector against a real HTTP fake that validates the card with the Adaptive Card schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.integrations import registry
from leadflow.integrations.base import PermanentError, RetriableError
from leadflow.integrations.teams import ADAPTIVE_CARD, TeamsConnector, build_card
from tests.fakes.server import Reply
from tests.fakes.teams import FakeTeams
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
def card_schema(shared: Path) -> Path:
    return shared / "contracts" / "msteams" / "adaptive-card-1.5.0.schema.json"


@pytest.fixture
def teams(card_schema: Path) -> Iterator[FakeTeams]:
    with FakeTeams(card_schema) as fake:
        yield fake


def connector_for(fake: FakeTeams) -> TeamsConnector:
    return TeamsConnector(make_settings(teams_webhook_url=fake.webhook_url))


async def deliver(connector: TeamsConnector, timeout: float = 5.0, **lead: Any) -> Any:
    async with http_client(timeout) as http:
        return await connector.deliver(make_lead(**lead), make_context(connector.settings, http))


def facts_of(card: dict[str, Any]) -> dict[str, str]:
    facts = {}
    for element in card["body"]:
        if element["type"] == "RichTextBlock":
            label, value = (run["text"] for run in element["inlines"])
            facts[label.removesuffix(": ")] = value
    return facts


# --- success ---------------------------------------------------------------------------------------


async def test_posts_the_documented_envelope_with_a_valid_adaptive_card(teams: FakeTeams) -> None:
    outcome = await deliver(connector_for(teams))

    assert outcome.status_code == 200
    assert outcome.response_excerpt == "1"
    assert len(teams.delivered) == 1
    body = teams.delivered[0].json()
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == ADAPTIVE_CARD
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    assert card["body"][0]["text"] == "New A-grade lead (score 87)"
    assert facts_of(card) == {
        "Name": "John Doe",
        "Company": "Acme Corp",
        "Score": "87 (grade A)",
        "Service": "Nextcloud Installation",
        "Urgency": "High (Same day)",
        "Campaign": "Nextcloud Installation 2025",
        "Assigned to": "Alice Seller",
    }
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open lead", "url": LINK}]


async def test_contact_details_never_reach_teams(teams: FakeTeams) -> None:
    await deliver(connector_for(teams))

    raw = teams.delivered[0].body.decode()
    assert LEAD_EMAIL not in raw
    assert LEAD_PHONE not in raw


async def test_lead_values_are_plain_text_runs(teams: FakeTeams) -> None:
    """TextRun has no markdown, so a markdown link in a name stays text (and the card stays valid)."""
    await deliver(connector_for(teams), first_name="[click](https://evil.test)", company='**"Acme"** <b>')

    card = teams.delivered[0].json()["attachments"][0]["content"]
    assert facts_of(card)["Name"] == "[click](https://evil.test) Doe"
    text_blocks = [e["text"] for e in card["body"] if e["type"] == "TextBlock"]
    assert not any("evil.test" in text for text in text_blocks)  # TextBlock renders markdown
    assert "evil.test" not in card["fallbackText"]


def test_the_card_is_valid_for_many_leads(teams: FakeTeams) -> None:
    for lead in (
        make_lead(),
        make_lead(assignee=None, company=None, service_interest=None, urgency=None, urgency_level=None),
        make_lead(first_name="", last_name="", company="ü" * 1000),
    ):
        envelope = {
            "type": "message",
            "attachments": [
                {"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": build_card(lead, LINK)}
            ],
        }
        assert teams.check_envelope(envelope) is None, teams.card_errors


# --- which leads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "campaign", "expected"),
    [
        ("A", {}, True),
        ("B", {}, False),
        ("A", with_campaign_integration("teams", enabled=False), False),
        ("D", with_campaign_integration("teams", enabled=True), True),
        ("A", with_campaign_integration("slack", enabled=False), True),
    ],
)
def test_wants_a_grade_leads_unless_the_campaign_says_otherwise(
    grade: str, campaign: dict[str, Any], expected: bool
) -> None:
    connector = TeamsConnector(make_settings(teams_webhook_url="https://example.webhook.office.com/x"))
    assert connector.wants(make_lead(lead_grade=grade, campaign_settings=campaign)) is expected


@pytest.mark.parametrize(("url", "expected"), [(None, False), ("", False), ("https://h/x", True)])
def test_configured_only_with_a_webhook_url(url: str | None, expected: bool) -> None:
    connector = registry.build("teams", make_settings(teams_webhook_url=url))
    assert isinstance(connector, TeamsConnector)
    assert connector.configured() is expected


async def test_deliver_without_configuration_is_permanent() -> None:
    with pytest.raises(PermanentError):
        await deliver(TeamsConnector(make_settings()))


# --- failures --------------------------------------------------------------------------------------


async def test_throttling_reported_in_a_200_body_is_retriable(card_schema: Path) -> None:
    with FakeTeams(card_schema, per_second=1) as fake:
        connector = connector_for(fake)
        await deliver(connector)
        with pytest.raises(RetriableError) as caught:
            await deliver(connector)

    assert caught.value.status_code == 429
    assert len(fake.delivered) == 1


async def test_429_status_with_retry_after_is_retriable(teams: FakeTeams) -> None:
    teams.fail_next(Reply(429, "Too many requests", headers={"Retry-After": "12"}, content_type="text/plain"))

    with pytest.raises(RetriableError) as caught:
        await deliver(connector_for(teams))

    assert caught.value.status_code == 429
    assert caught.value.retry_after == 12.0


async def test_5xx_is_retriable(teams: FakeTeams) -> None:
    teams.fail_next(Reply(503, "Service Unavailable", content_type="text/plain"))

    with pytest.raises(RetriableError) as caught:
        await deliver(connector_for(teams))

    assert caught.value.status_code == 503


async def test_error_reported_in_a_200_body_with_a_4xx_is_permanent(teams: FakeTeams) -> None:
    teams.fail_next(
        Reply(
            200,
            "Microsoft Teams endpoint returned HTTP error 413 with ContextId x",
            content_type="text/plain",
        )
    )

    with pytest.raises(PermanentError) as caught:
        await deliver(connector_for(teams))

    assert caught.value.status_code == 413


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_4xx_is_permanent(teams: FakeTeams, status: int) -> None:
    teams.fail_next(
        Reply(status, "Bad payload received by generic incoming webhook.", content_type="text/plain")
    )

    with pytest.raises(PermanentError) as caught:
        await deliver(connector_for(teams))

    assert caught.value.status_code == status


async def test_timeout_is_retriable(teams: FakeTeams) -> None:
    teams.stall_seconds = 1.0

    with pytest.raises(RetriableError, match="timeout"):
        await deliver(connector_for(teams), timeout=0.2)


# --- the fake refuses what Teams refuses -------------------------------------------------------------


def _envelope(card: Any, **attachment: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card, **attachment}],
    }


GOOD_CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "hello"}]}


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "note", "attachments": _envelope(GOOD_CARD)["attachments"]},
        {"type": "message", "attachments": []},
        _envelope(GOOD_CARD, contentType="application/vnd.microsoft.card.hero"),
        _envelope(GOOD_CARD, contentUrl="https://example.test/card.json"),
        _envelope({"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "Blink", "text": "x"}]}),
        _envelope({"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "no version"}]}),
        _envelope({**GOOD_CARD, "msteams": {"width": "Full"}}),  # not in the 1.5.0 schema
        _envelope({**GOOD_CARD, "actions": [{"type": "Action.Submit", "title": "Go"}]}),
        _envelope(
            {
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {
                        "type": "RichTextBlock",
                        "inlines": [{"type": "TextRun", "text": "x", "weight": "Heavy"}],
                    }
                ],
            }
        ),
        [],
        {},
    ],
)
async def test_fake_refuses_invalid_envelopes_and_cards(teams: FakeTeams, payload: Any) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            teams.webhook_url, content=json.dumps(payload), headers={"content-type": "application/json"}
        )

    assert response.status_code == 400, response.text
    assert teams.delivered == []


async def test_fake_accepts_the_documented_example_and_plain_text(teams: FakeTeams) -> None:
    async with httpx.AsyncClient() as http:
        card = await http.post(teams.webhook_url, json=_envelope(GOOD_CARD))
        text = await http.post(teams.webhook_url, json={"text": "Hello World"})
        form = await http.post(teams.webhook_url, data={"text": "Hello"})

    assert (card.status_code, card.text) == (200, "1")
    assert (text.status_code, text.text) == (200, "1")
    assert form.status_code == 400
