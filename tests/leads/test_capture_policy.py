"""The capture rules (leads/capture/policy.py), pure: no database, no server."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow.campaigns.service import CaptureCampaign
from leadflow.leads.capture import policy
from leadflow.leads.capture.policy import EarlierLead, KeyedLead, PreparedLead, Rules, Stored, plan_batch
from leadflow.leads.schemas import CaptureRequest
from leadflow.scoring import rules
from leadflow.scoring.channels import classify
from leadflow.security.crypto import FieldCipher
from tests.conftest import TEST_KEY, example_lead

CAMPAIGN = CaptureCampaign("spring", "Spring", "active", None, frozenset(), ())
CIPHER = FieldCipher([base64.b64decode(TEST_KEY)])
NOW = datetime(2025, 10, 3, 12, 0, tzinfo=UTC)
RULES = Rules(timedelta(hours=24), frozenset({"A", "B"}))
NOTHING = Stored([], set(), [])


def _request(**changes: Any) -> CaptureRequest:
    body = example_lead(email=changes.pop("email", "jane@company.com"))
    for path, value in changes.items():
        part, name = path.split("__")
        body[part][name] = value
    return CaptureRequest.model_validate(body, context={"phone_region": "US"})


def _item(email: str = "jane@company.com", key: str | None = None, **changes: Any) -> PreparedLead:
    return policy.prepare(
        _request(email=email, **changes),
        CAMPAIGN,
        CIPHER,
        frozenset({"nextcloud installation"}),
        None,
        key,
        NOW,
    )


def test_every_score_input_is_supplied_at_capture() -> None:
    """A new ScoreInput field must be filled by score_fields (or be decided when the batch is planned):
    otherwise capture would silently score with its default."""
    body = _request()
    channel = classify(None, None, None, None, None)
    supplied = set(policy.score_fields(body, CAMPAIGN, frozenset(), channel))
    every = {f.name for f in dataclasses.fields(rules.ScoreInput)}
    assert supplied | policy.DECIDED_AT_PLAN == every
    assert not supplied & policy.DECIDED_AT_PLAN


def test_the_planned_score_keeps_every_input() -> None:
    item = _item()
    lead_row = plan_batch([item], NOTHING, RULES, NOW).lead_rows[0]
    expected = rules.score(dataclasses.replace(item.score_input, returning_visitor=item.returning_hint))
    assert (lead_row["lead_score"], lead_row["lead_grade"]) == (expected.total, expected.grade)


def test_new_duplicate_replay_and_conflict_in_one_batch() -> None:
    items = [
        _item("a@company.com", key="k1"),
        _item("a@company.com"),
        _item("b@company.com", key="k1"),
        _item("a@company.com", key="k1"),
    ]
    plan = plan_batch(items, NOTHING, RULES, NOW)
    kinds = [o.kind for o in plan.answers()]
    assert kinds == ["created", "duplicate", "key_conflict", "replay"]
    assert len(plan.lead_rows) == 1
    assert plan.duplicate_activities == [
        (
            None,
            0,
            {
                "source": "landing-page",
                "channel": items[1].values["channel"],
                "utm_campaign": items[1].values["utm_campaign"],
                "utm_content": items[1].values["utm_content"],
            },
        )
    ]


def test_stored_leads_decide_duplicates_within_the_window_only() -> None:
    item = _item("a@company.com")
    recent = EarlierLead(7, "lead_recent00001", CAMPAIGN.id, item.email_hash, NOW - timedelta(hours=23))
    old = EarlierLead(3, "lead_old00000001", CAMPAIGN.id, item.email_hash, NOW - timedelta(hours=25))
    other = EarlierLead(9, "lead_other000001", "other-campaign", item.email_hash, NOW)
    assert [o.kind for o in plan_batch([item], Stored([recent], set(), []), RULES, NOW).answers()] == [
        "duplicate"
    ]
    plan = plan_batch([item], Stored([other, old], set(), []), RULES, NOW)
    assert [o.kind for o in plan.answers()] == ["created"]
    assert plan.lead_rows[0]["previous_lead_id"] == 3


def test_a_stored_key_replays_or_conflicts() -> None:
    mine, theirs = _item("a@company.com", key="k"), _item("b@company.com", key="k")
    keyed = KeyedLead(5, "lead_keyed000001", CAMPAIGN.id, "k", mine.email_hash, "B", "v1", None)
    plan = plan_batch([mine, theirs], Stored([], set(), [keyed]), RULES, NOW)
    assert [(o.kind, o.public_id, o.grade, o.tracking_enabled) for o in plan.answers()] == [
        ("replay", "lead_keyed000001", "B", True),
        ("key_conflict", "lead_keyed000001", "B", True),
    ]
    assert plan.lead_rows == []


def test_spooled_leads_are_always_stored_and_linked() -> None:
    item = _item("a@company.com", key="k")
    item.lead_ids = ("uuid-1", "lead_spooled0001")
    recent = EarlierLead(7, "lead_recent00001", CAMPAIGN.id, item.email_hash, NOW - timedelta(hours=1))
    keyed = KeyedLead(7, "lead_recent00001", CAMPAIGN.id, "k", "someone-else", "C", None, None)
    plan = plan_batch([item], Stored([recent], set(), [keyed]), RULES, NOW, spooled=True)
    assert [o.kind for o in plan.answers()] == ["created"]
    row = plan.lead_rows[0]
    assert (row["public_id"], row["idempotency_key"], row["previous_lead_id"]) == (
        "lead_spooled0001",
        None,
        7,
    )
    assert plan.duplicate_activities == [
        (7, None, {"source": "landing-page", "spooled_lead_id": "lead_spooled0001"})
    ]


def test_returning_visitor_from_the_store_or_the_batch() -> None:
    first = _item("a@company.com", tracking__visitor_id="vis_1", tracking__visit_count=1)
    second = _item("b@company.com", tracking__visitor_id="vis_1", tracking__visit_count=1)
    third = _item("c@company.com", tracking__visitor_id="vis_2", tracking__visit_count=1)
    plan = plan_batch([first, second, third], Stored([], {"vis_2"}, []), RULES, NOW)
    assert [r["returning_visitor"] for r in plan.lead_rows] == [False, True, True]


def test_follow_up_rows() -> None:
    items = [_item("a@company.com"), _item("a@company.com"), _item("erased@company.com")]
    plan = plan_batch(items, NOTHING, RULES, NOW)
    activities, jobs = policy.follow_up_rows(plan, [10, 11], {items[2].email_hash}, NOW)
    assert [(a["lead_id"], a["activity_type"]) for a in activities] == [
        (10, "created"),
        (11, "previously_erased"),
        (11, "created"),
        (10, "duplicate_submission"),
    ]
    assert jobs == [
        policy.process_job_row(10, plan.lead_rows[0]["public_id"], NOW),
        policy.process_job_row(11, plan.lead_rows[1]["public_id"], NOW),
    ]
    assert jobs[0]["kind"] == "lead.process" and jobs[0]["payload"] == {
        "lead_id": 10,
        "public_id": plan.lead_rows[0]["public_id"],
    }


def test_qualification_follows_the_grade() -> None:
    plan = plan_batch([_item()], NOTHING, Rules(timedelta(hours=24), frozenset()), NOW)
    assert plan.lead_rows[0]["qualification_status"] == "unqualified"
    grade = plan.lead_rows[0]["lead_grade"]
    plan = plan_batch([_item()], NOTHING, Rules(timedelta(hours=24), frozenset({grade})), NOW)
    assert plan.lead_rows[0]["qualification_status"] == "marketing_qualified"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"form_metadata__honeypot": "x"}, "honeypot"),
        ({"form_metadata__fill_time_seconds": 0.5}, "too_fast"),
        ({"email": "someone@mailinator.com"}, "disposable"),
        ({}, None),
    ],
)
def test_bot_reason(changes: dict[str, Any], reason: str | None) -> None:
    assert policy.bot_reason(_request(**changes), 2.0, True) == reason
    assert policy.bot_reason(_request(email="someone@mailinator.com"), 2.0, False) is None


def test_campaign_refusal() -> None:
    locked = CaptureCampaign("c", "C", "active", "hash", frozenset({"https://ok.example"}), ())
    assert policy.campaign_refusal(None, {}).error == "CAMPAIGN_NOT_FOUND"  # type: ignore[union-attr]
    paused = dataclasses.replace(CAMPAIGN, status="paused")
    assert policy.campaign_refusal(paused, {}).error == "CAMPAIGN_INACTIVE"  # type: ignore[union-attr]
    bad_origin = {"origin": "https://evil.example", "host": "leads.example"}
    assert policy.campaign_refusal(locked, bad_origin).error == "ORIGIN_NOT_ALLOWED"  # type: ignore[union-attr]
    hosted = {"origin": "https://leads.example", "host": "leads.example:443"}
    assert policy.campaign_refusal(locked, hosted).error == policy.TOKEN_REFUSED  # type: ignore[union-attr]
    assert policy.campaign_refusal(CAMPAIGN, {"origin": "https://any.example"}) is None


def test_claim_keys_are_per_person_and_key_and_hold_no_personal_data() -> None:
    keys = policy.claim_keys(
        [_item("a@company.com", key="k"), _item("a@company.com"), _item("b@company.com")]
    )
    assert len(keys) == 3 and keys == sorted(keys)
    assert all(len(k) == 64 and "company" not in k for k in keys)
