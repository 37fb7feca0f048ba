"""A campaign past its end date, or not active, takes no leads: the rule (pure) and every way in (HTTP)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from leadflow.campaigns.service import CaptureCampaign
from leadflow.kit.clock import utcnow
from leadflow.leads.capture import policy
from tests.conftest import EXAMPLE_LEAD, SUBMITTED_PII, Harness, example_lead

CAMPAIGN_ID = "nextcloud-installation-2025"
OPEN = CaptureCampaign("c", "C", "active", None, frozenset(), ())
DAY = date(2025, 12, 31)


# --------------------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("status", "end", "today", "closed"),
    [
        ("active", None, DAY, None),
        ("active", DAY, DAY, None),  # the end date itself still takes leads
        ("active", DAY, DAY - timedelta(days=30), None),
        ("active", DAY, DAY + timedelta(days=1), "ended on 2025-12-31"),
        ("paused", None, DAY, "is paused"),
        ("completed", DAY, DAY + timedelta(days=5), "is completed"),  # the status says it first
        ("draft", None, DAY, "is draft"),
    ],
)
def test_campaign_closed(status: str, end: date | None, today: date, closed: str | None) -> None:
    reason = policy.campaign_closed(status, end, today)
    if closed is None:
        assert reason is None
    else:
        assert reason is not None and closed in reason and reason.endswith("requests.")


def test_refusal_of_an_ended_campaign_is_409_campaign_inactive() -> None:
    ended = replace(OPEN, end_date=DAY)
    refusal = policy.campaign_refusal(ended, {}, today=DAY + timedelta(days=1))
    assert refusal is not None
    assert (refusal.status, refusal.error, refusal.field) == (409, "CAMPAIGN_INACTIVE", "campaign_id")
    assert "2025-12-31" in refusal.message
    assert policy.campaign_refusal(ended, {}, today=DAY) is None
    # Without ``today`` the clock's date is used: an end date in the past refuses, one ahead does not.
    past = replace(OPEN, end_date=utcnow().date() - timedelta(days=1))
    assert policy.campaign_refusal(past, {}) is not None
    assert policy.campaign_refusal(replace(OPEN, end_date=utcnow().date()), {}) is None


# ------------------------------------------------------------------------------------------------ HTTP

pytestmark_http = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


async def _set(h: Harness, admin: dict[str, str], **fields: Any) -> None:
    response = await h.client.patch(f"/v1/api/campaigns/{CAMPAIGN_ID}", headers=admin, json=fields)
    assert response.status_code == 200, response.text


@pytestmark_http
async def test_capture_of_an_ended_campaign_answers_409(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    today = utcnow().date()
    await _set(harness, admin, end_date=today.isoformat())
    accepted = await harness.client.post("/v1/api/leads", json=EXAMPLE_LEAD)
    assert accepted.status_code == 201, accepted.text  # the last day still takes leads

    await _set(harness, admin, start_date=(today - timedelta(days=30)).isoformat())
    await _set(harness, admin, end_date=(today - timedelta(days=1)).isoformat())
    refused = await harness.client.post("/v1/api/leads", json=example_lead())
    assert refused.status_code == 409
    body = refused.json()
    assert (body["error"], body["field"], body["code"], body["success"]) == (
        "CAMPAIGN_INACTIVE",
        "campaign_id",
        409,
        False,
    )
    assert "ended on" in body["message"]

    # Extending the end date opens it again at once (the campaign cache is dropped by the change).
    await _set(harness, admin, end_date=None)
    again = await harness.client.post("/v1/api/leads", json=example_lead(email="reopened@example.com"))
    assert again.status_code == 201, again.text


@pytestmark_http
async def test_hosted_and_no_js_forms_say_the_campaign_ended(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    today = utcnow().date()
    await _set(
        harness,
        admin,
        start_date=(today - timedelta(days=30)).isoformat(),
        end_date=(today - timedelta(days=2)).isoformat(),
    )
    page = await harness.client.get(f"/f/{CAMPAIGN_ID}")
    assert page.status_code == 409
    assert "This form is closed" in page.text and "no longer takes requests" in page.text

    email = "ended@forms-test.example.com"
    SUBMITTED_PII.add(email)
    fields = {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": email,
        "consent_given": "true",
        "lf_started": (utcnow() - timedelta(seconds=30)).isoformat(),
    }
    posted = await harness.client.post(f"/v1/forms/{CAMPAIGN_ID}", data=fields)
    assert posted.status_code == 409
    assert "This form is closed" in posted.text and "no longer takes requests" in posted.text


async def test_openapi_documents_campaign_inactive(harness: Harness) -> None:
    schema = (await harness.client.get("/openapi.json")).json()
    capture = schema["paths"]["/v1/api/leads"]["post"]
    conflict = capture["responses"]["409"]
    assert "CAMPAIGN_INACTIVE" in conflict["description"]
    assert conflict["content"]["application/json"]["example"]["error"] == "CAMPAIGN_INACTIVE"
    assert "end_date" in capture["description"]
