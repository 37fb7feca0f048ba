"""Unit tests for the lead score (spec: "Lead Scoring Algorithm")."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.scoring.channels import CHANNEL_MEDIUM
from leadflow.scoring.rules import (
    OPTIONAL_FIELDS,
    RuleResult,
    Score,
    ScoreInput,
    grade_for,
    has_budget,
    normalise_catalog,
    score,
    urgency_level,
)

CATALOG = normalise_catalog(
    ["Nextcloud Installation", "Managed IT Services", "Cloud Migration", "Data Backup & Recovery"]
)
ALL_OPTIONAL = frozenset(OPTIONAL_FIELDS)
CATEGORY_MAX = {"contact": 25, "intent": 35, "behaviour": 25, "source": 15}
RULE_MAX = {
    "business_email": 15,
    "phone": 5,
    "company": 5,
    "service_interest": 15,
    "urgency": 15,
    "budget": 5,
    "time_on_page": 10,
    "form_completion": 10,
    "returning_visitor": 5,
    "channel": 15,
}


def make(**overrides: Any) -> ScoreInput:
    """The weakest possible lead (free e-mail, nothing optional, unknown channel) plus ``overrides``."""
    base = ScoreInput(email_kind="free", channel="Unassigned", service_catalog=CATALOG)
    return replace(base, **overrides)


def rule(result: Score, name: str) -> RuleResult:
    matches = [r for r in result.rules if r.rule == name]
    assert len(matches) == 1, f"rule {name!r} appears {len(matches)} times"
    return matches[0]


def points(s: ScoreInput, name: str) -> int:
    return rule(score(s), name).points


SPEC_EXAMPLE = ScoreInput(
    email_kind="business",
    phone=True,
    company=True,
    service_interest="Nextcloud Installation",
    urgency="High (Same day)",
    budget_range="$5000-$10000",
    filled_optional=ALL_OPTIONAL,
    time_on_page_seconds=None,
    returning_visitor=False,
    channel="Paid Search",
    service_catalog=CATALOG,
)


# --- the spec's example lead ---------------------------------------------------------------------------


def test_spec_example_lead_scores_85_grade_a() -> None:
    result = score(SPEC_EXAMPLE)
    assert result.total == 85
    assert result.grade == "A"


def test_spec_example_lead_breakdown() -> None:
    result = score(SPEC_EXAMPLE)
    assert {r.rule: r.points for r in result.rules} == {
        "business_email": 15,
        "phone": 5,
        "company": 5,
        "service_interest": 15,
        "urgency": 15,
        "budget": 5,
        "time_on_page": 0,
        "form_completion": 10,
        "returning_visitor": 0,
        "channel": 15,
    }
    assert result.breakdown()["categories"] == {"contact": 25, "intent": 35, "behaviour": 10, "source": 15}


def test_minimum_and_maximum_scores() -> None:
    weakest = score(make())
    assert weakest.total == 5  # form completion always earns at least "required only"
    assert weakest.grade == "D"
    best = score(replace(SPEC_EXAMPLE, time_on_page_seconds=181, returning_visitor=True))
    assert best.total == 100
    assert best.grade == "A"
    assert all(r.points == r.max_points for r in best.rules)


# --- contact (25) --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email_kind", "expected"), [("business", 15), ("free", 0), ("disposable", 0), ("", 0), ("Business", 0)]
)
def test_business_email(email_kind: str, expected: int) -> None:
    assert points(make(email_kind=email_kind), "business_email") == expected


@pytest.mark.parametrize(("given", "expected"), [(True, 5), (False, 0)])
def test_phone(given: bool, expected: int) -> None:
    assert points(make(phone=given), "phone") == expected


@pytest.mark.parametrize(("given", "expected"), [(True, 5), (False, 0)])
def test_company(given: bool, expected: int) -> None:
    assert points(make(company=given), "company") == expected


def test_contact_category_maximum_is_25() -> None:
    result = score(make(email_kind="business", phone=True, company=True))
    assert result.breakdown()["categories"]["contact"] == 25


# --- intent (35): service interest --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interest", "expected"),
    [
        ("Nextcloud Installation", 15),
        ("nextcloud installation", 15),
        ("NEXTCLOUD INSTALLATION", 15),
        ("  Nextcloud   Installation  ", 15),
        ("Nextcloud\tInstallation", 15),
        ("Nextcloud\nInstallation", 15),
        ("Data Backup & Recovery", 15),
        ("Nextcloud", 5),  # part of a catalog entry is not the entry
        ("Nextcloud Installation please", 5),
        ("Something else entirely", 5),
        ("x", 5),
        ("", 0),
        ("   ", 0),
        ("\n\t", 0),
        (None, 0),
    ],
)
def test_service_interest(interest: str | None, expected: int) -> None:
    assert points(make(service_interest=interest), "service_interest") == expected


def test_service_interest_with_empty_catalog_is_general_inquiry() -> None:
    s = make(service_interest="Nextcloud Installation", service_catalog=frozenset())
    assert points(s, "service_interest") == 5


def test_normalise_catalog() -> None:
    assert normalise_catalog(
        ["  Nextcloud   Installation ", "", "   ", "IT\tConsulting", "CLOUD Migration"]
    ) == {
        "nextcloud installation",
        "it consulting",
        "cloud migration",
    }
    assert normalise_catalog([]) == frozenset()


def test_catalog_entry_written_oddly_still_matches() -> None:
    catalog = normalise_catalog(["  MANAGED   it services "])
    s = make(service_interest="Managed IT Services", service_catalog=catalog)
    assert points(s, "service_interest") == 15


# --- intent (35): urgency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("urgency", "expected"),
    [
        ("High", 15),
        ("high", 15),
        ("HIGH", 15),
        ("  High  ", 15),
        ("High (Same day)", 15),
        ("Emergency", 15),
        ("Emergency - server down", 15),
        ("Urgent", 15),
        ("urgent!", 15),
        ("ASAP", 15),
        ("asap please", 15),
        ("Same-day", 15),
        ("Same-Day service", 15),
        ("Same day", 15),
        ("Same day if possible", 15),
        ("Medium", 10),
        ("medium", 10),
        ("Medium (This week)", 10),
        ("Low", 5),
        ("low - whenever", 5),
        ("Low (Next month)", 5),
        ("unknown", 0),
        ("Not sure", 0),
        ("Not urgent", 0),
        ("soonish", 0),
        ("42", 0),
        ("", 0),
        ("   ", 0),
        (None, 0),
    ],
)
def test_urgency_points(urgency: str | None, expected: int) -> None:
    assert points(make(urgency=urgency), "urgency") == expected


@pytest.mark.parametrize(
    ("urgency", "expected"),
    [
        ("High (Same day)", "high"),
        ("Same day", "high"),
        ("Medium (This week)", "medium"),
        ("Low", "low"),
        ("whenever", None),
        ("", None),
        (None, None),
    ],
)
def test_urgency_level(urgency: str | None, expected: str | None) -> None:
    assert urgency_level(urgency) == expected


def test_urgency_reason_names_the_level() -> None:
    assert rule(score(make(urgency="High (Same day)")), "urgency").reason == "urgency high"
    assert rule(score(make()), "urgency").reason == "urgency not given"


# --- intent (35): budget ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ("$5000-$10000", True),
        ("5000", True),
        ("5k-10k", True),
        ("€2k - €5k", True),
        ("under $1,000", True),
        ("10000+", True),
        ("unknown", False),
        ("Unknown", False),
        ("not sure", False),
        ("Not  Sure", False),
        ("N/A", False),
        ("TBD", False),
        ("-", False),
        ("$", False),
        ("a lot", False),
        ("", False),
        ("   ", False),
        (None, False),
    ],
)
def test_has_budget(budget: str | None, expected: bool) -> None:
    assert has_budget(budget) is expected
    assert points(make(budget_range=budget), "budget") == (5 if expected else 0)


def test_intent_category_maximum_is_35() -> None:
    s = make(service_interest="Cloud Migration", urgency="ASAP", budget_range="$1000")
    assert score(s).breakdown()["categories"]["intent"] == 35


# --- behaviour (25) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, 0),
        (-1, 0),
        (0, 0),
        (1, 0),
        (59, 0),
        (60, 5),
        (61, 5),
        (120, 5),
        (179, 5),
        (180, 5),
        (181, 10),
        (3600, 10),
        (86400 * 7, 10),
    ],
)
def test_time_on_page(seconds: int | None, expected: int) -> None:
    assert points(make(time_on_page_seconds=seconds), "time_on_page") == expected


def test_optional_fields_are_the_specs() -> None:
    assert OPTIONAL_FIELDS == (
        "phone",
        "company",
        "service_interest",
        "urgency",
        "message",
        "budget_range",
        "timeline",
    )


def test_form_completion_all_fields() -> None:
    assert points(make(filled_optional=ALL_OPTIONAL), "form_completion") == 10
    # Unknown extra names do not matter.
    assert points(make(filled_optional=ALL_OPTIONAL | {"utm_source"}), "form_completion") == 10


@pytest.mark.parametrize("missing", OPTIONAL_FIELDS)
def test_form_completion_one_field_missing(missing: str) -> None:
    assert points(make(filled_optional=ALL_OPTIONAL - {missing}), "form_completion") == 5


def test_form_completion_required_only() -> None:
    assert points(make(filled_optional=frozenset()), "form_completion") == 5
    assert points(make(filled_optional=frozenset({"phone", "company"})), "form_completion") == 5


@pytest.mark.parametrize(("returning", "expected"), [(True, 5), (False, 0)])
def test_returning_visitor(returning: bool, expected: int) -> None:
    assert points(make(returning_visitor=returning), "returning_visitor") == expected


def test_behaviour_category_maximum_is_25() -> None:
    s = make(time_on_page_seconds=181, filled_optional=ALL_OPTIONAL, returning_visitor=True)
    assert score(s).breakdown()["categories"]["behaviour"] == 25


# --- source (15) --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("Paid Search", 15),
        ("Organic Search", 10),
        ("Direct", 8),
        ("Paid Social", 5),
        ("Organic Social", 5),
        ("Email", 3),
        ("Referral", 0),
        ("Display", 0),
        ("Affiliates", 0),
        ("Paid Other", 0),
        ("Paid Shopping", 0),
        ("Organic Video", 0),
        ("Cross-network", 0),
        ("SMS", 0),
        ("Unassigned", 0),
        ("", 0),
        ("Carrier pigeon", 0),
    ],
)
def test_channel_points(channel: str, expected: int) -> None:
    assert points(make(channel=channel), "channel") == expected


# --- grade --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "grade"),
    [
        (100, "A"),
        (85, "A"),
        (80, "A"),
        (79, "B"),
        (60, "B"),
        (59, "C"),
        (40, "C"),
        (39, "D"),
        (5, "D"),
        (0, "D"),
    ],
)
def test_grade_for(total: int, grade: str) -> None:
    assert grade_for(total) == grade


@given(st.integers(min_value=-1000, max_value=1000))
def test_grade_for_any_integer(total: int) -> None:
    expected = "A" if total >= 80 else "B" if total >= 60 else "C" if total >= 40 else "D"
    assert grade_for(total) == expected


# Point values are multiples of 5 except Direct (8) and Email (3), so 39/59/79 cannot be reached; these
# are the reachable totals on either side of every grade floor.
@pytest.mark.parametrize(
    ("s", "total", "grade"),
    [
        # 5 form + 3 email + 15 business + 15 high urgency = 38
        (make(channel="Email", email_kind="business", urgency="High"), 38, "D"),
        # 5 form + 15 business + 15 catalog service + 5 phone = 40
        (make(email_kind="business", service_interest="Cloud Migration", phone=True), 40, "C"),
        # 5 form + 8 direct + 15 business + 15 urgency + 5 phone + 5 company + 5 budget = 58
        (
            make(
                channel="Direct",
                email_kind="business",
                urgency="Emergency",
                phone=True,
                company=True,
                budget_range="$500",
            ),
            58,
            "C",
        ),
        # 5 form + 15 business + 15 catalog service + 15 paid search + 10 medium = 60
        (
            make(
                email_kind="business",
                service_interest="Cloud Migration",
                channel="Paid Search",
                urgency="Medium",
            ),
            60,
            "B",
        ),
        # 10 form + 8 direct + 15 business + 5 phone + 5 company + 15 service + 15 urgency + 5 budget = 78
        (
            make(
                filled_optional=ALL_OPTIONAL,
                channel="Direct",
                email_kind="business",
                phone=True,
                company=True,
                service_interest="Cloud Migration",
                urgency="ASAP",
                budget_range="$500",
            ),
            78,
            "B",
        ),
        # 78 - 8 direct + 10 organic search = 80
        (
            make(
                filled_optional=ALL_OPTIONAL,
                channel="Organic Search",
                email_kind="business",
                phone=True,
                company=True,
                service_interest="Cloud Migration",
                urgency="ASAP",
                budget_range="$500",
            ),
            80,
            "A",
        ),
    ],
)
def test_grade_floors_through_score(s: ScoreInput, total: int, grade: str) -> None:
    result = score(s)
    assert result.total == total
    assert result.grade == grade


# --- breakdown ----------------------------------------------------------------------------------------


def test_rules_and_their_maxima() -> None:
    result = score(make())
    assert [(r.rule, r.category, r.max_points) for r in result.rules] == [
        ("business_email", "contact", 15),
        ("phone", "contact", 5),
        ("company", "contact", 5),
        ("service_interest", "intent", 15),
        ("urgency", "intent", 15),
        ("budget", "intent", 5),
        ("time_on_page", "behaviour", 10),
        ("form_completion", "behaviour", 10),
        ("returning_visitor", "behaviour", 5),
        ("channel", "source", 15),
    ]
    assert sum(r.max_points for r in result.rules) == 100


def test_breakdown_shape() -> None:
    result = score(SPEC_EXAMPLE)
    data = result.breakdown()
    assert data["total"] == 85
    assert data["grade"] == "A"
    assert sum(data["categories"].values()) == 85
    assert len(data["rules"]) == 10
    assert data["rules"][0] == {
        "rule": "business_email",
        "category": "contact",
        "points": 15,
        "max": 15,
        "reason": "business e-mail domain",
    }
    assert data["rules"][-1] == {
        "rule": "channel",
        "category": "source",
        "points": 15,
        "max": 15,
        "reason": "Paid Search",
    }


def test_reasons_for_a_weak_lead() -> None:
    reasons = {r.rule: r.reason for r in score(make(email_kind="disposable")).rules}
    assert reasons == {
        "business_email": "disposable e-mail domain",
        "phone": "no phone",
        "company": "no company",
        "service_interest": "no service interest",
        "urgency": "urgency not given",
        "budget": "no budget",
        "time_on_page": "under a minute or unknown",
        "form_completion": "required fields only",
        "returning_visitor": "first visit",
        "channel": "Unassigned",
    }


def test_empty_score_breakdown() -> None:
    assert Score(total=0, grade="D").breakdown() == {"total": 0, "grade": "D", "categories": {}, "rules": []}


# --- properties ---------------------------------------------------------------------------------------

_text = st.text(max_size=40)
score_inputs = st.builds(
    ScoreInput,
    email_kind=st.one_of(st.sampled_from(["business", "free", "disposable"]), _text),
    phone=st.booleans(),
    company=st.booleans(),
    service_interest=st.one_of(st.none(), st.sampled_from(sorted(CATALOG)), _text),
    urgency=st.one_of(
        st.none(),
        st.sampled_from(["High (Same day)", "Emergency", "Medium", "Low", "ASAP", "Same day", "unknown"]),
        _text,
    ),
    budget_range=st.one_of(st.none(), st.sampled_from(["$5000-$10000", "unknown", "not sure"]), _text),
    filled_optional=st.frozensets(st.one_of(st.sampled_from(OPTIONAL_FIELDS), _text)),
    time_on_page_seconds=st.one_of(st.none(), st.integers(min_value=-(10**6), max_value=10**9)),
    returning_visitor=st.booleans(),
    channel=st.one_of(st.sampled_from(sorted(CHANNEL_MEDIUM)), _text),
    service_catalog=st.one_of(st.just(CATALOG), st.frozensets(_text, max_size=5)),
)


@settings(max_examples=300)
@given(score_inputs)
def test_score_properties(s: ScoreInput) -> None:
    result = score(s)
    assert 0 <= result.total <= 100
    assert result.total == sum(r.points for r in result.rules)
    assert result.grade == grade_for(result.total)
    assert len(result.rules) == 10
    for r in result.rules:
        assert r.max_points == RULE_MAX[r.rule]
        assert 0 <= r.points <= r.max_points, r
    categories = result.breakdown()["categories"]
    assert sum(categories.values()) == result.total
    assert set(categories) == set(CATEGORY_MAX)
    for category, value in categories.items():
        assert 0 <= value <= CATEGORY_MAX[category]


@given(score_inputs)
def test_more_signals_never_lower_the_score(s: ScoreInput) -> None:
    base = score(s).total
    assert score(replace(s, phone=True)).total >= base
    assert score(replace(s, company=True)).total >= base
    assert score(replace(s, returning_visitor=True)).total >= base
    assert score(replace(s, email_kind="business")).total >= base
    assert score(replace(s, filled_optional=s.filled_optional | ALL_OPTIONAL)).total >= base
