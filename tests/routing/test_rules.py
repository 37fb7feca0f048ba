"""The routing choice as a pure function: every branch, working hours, matching and tie-breaks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow.routing.rules import (
    CampaignRouting,
    Decision,
    availability,
    decide,
    is_working,
    parse_hhmm,
    pick_round_robin,
    region_matches,
    rule_matches,
    service_matches,
)
from tests.routing.conftest import AUTO, NOW, lead, member, rule

BERLIN_9_TO_5 = {"timezone": "Europe/Berlin", "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}


def at(text: str) -> datetime:
    """A UTC instant from ``YYYY-MM-DD HH:MM``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


# --- campaign fixed assignee ------------------------------------------------------------------------


def test_campaign_fixed_assignee_links_the_member_with_that_email() -> None:
    anna = member(7, name="Anna Schmidt", email="anna@nexlink.website")
    campaign = CampaignRouting(auto_assign=False, assigned_to="  ANNA@nexlink.website ")
    decision = decide(lead(), campaign, [member(1), anna], [rule(1, 1)], "owner@nexlink.website", NOW)
    assert decision == Decision(
        7,
        "anna@nexlink.website",
        "The campaign assigns every lead to Anna Schmidt <anna@nexlink.website> (automatic assignment is off).",
        "campaign_fixed",
    )


def test_campaign_fixed_assignee_ignores_load_and_hours() -> None:
    busy = member(2, email="busy@nexlink.website", open_leads=10, capacity=10, working_hours=BERLIN_9_TO_5)
    campaign = CampaignRouting(auto_assign=False, assigned_to="busy@nexlink.website")
    decision = decide(lead(), campaign, [busy], [], None, at("2025-10-05 12:00"))  # a Sunday
    assert (decision.member_id, decision.assignee, decision.rule) == (
        2,
        "busy@nexlink.website",
        "campaign_fixed",
    )


def test_campaign_fixed_assignee_who_is_not_a_member() -> None:
    campaign = CampaignRouting(auto_assign=False, assigned_to="sales@partner.example")
    decision = decide(lead(), campaign, [member(1)], [], None, NOW)
    assert decision == Decision(
        None,
        "sales@partner.example",
        "The campaign assigns every lead to sales@partner.example (automatic assignment is off).",
        "campaign_fixed",
    )


def test_auto_assign_off_without_assignee_skips_rules_and_round_robin() -> None:
    members = [member(1)]
    campaign = CampaignRouting(auto_assign=False, assigned_to=None)
    assert decide(lead(), campaign, members, [rule(1, 1)], "owner@nexlink.website", NOW) == Decision(
        None,
        "owner@nexlink.website",
        "Assigned to the fallback owner owner@nexlink.website: the campaign has automatic assignment off "
        "and no fixed assignee.",
        "fallback",
    )
    blank = CampaignRouting(auto_assign=False, assigned_to="  ")
    assert decide(lead(), blank, members, [rule(1, 1)], None, NOW) == Decision(
        None,
        None,
        "The lead stays unassigned: the campaign has automatic assignment off and no fixed assignee and no "
        "fallback owner is set.",
        "unassigned",
    )


def test_assigned_to_is_ignored_while_auto_assign_is_on() -> None:
    campaign = CampaignRouting(auto_assign=True, assigned_to="m2@nexlink.website")
    decision = decide(lead(), campaign, [member(1), member(2)], [], None, NOW)
    assert (decision.member_id, decision.rule) == (1, "round_robin")


# --- rules ------------------------------------------------------------------------------------------


def test_first_matching_rule_by_position_wins() -> None:
    members = [member(1), member(2, name="Bea", email="bea@nexlink.website", open_leads=3), member(3)]
    rules = [
        rule(1, 1, position=50, grades=["A"]),  # does not match (lead is C)
        rule(2, 3, position=20),  # matches, but a later position than rule 3
        rule(3, 2, position=10, services=["nextcloud installation"]),
    ]
    decision = decide(lead(), AUTO, members, rules, None, NOW)
    assert decision == Decision(
        2,
        "bea@nexlink.website",
        "Routing rule 'rule 3' matched; assigned to Bea <bea@nexlink.website> (3 of 10 open leads).",
        "rule:rule 3",
    )


def test_equal_positions_go_by_rule_id_and_inactive_rules_are_skipped() -> None:
    members = [member(1), member(2), member(3)]
    rules = [rule(9, 3, position=5), rule(4, 2, position=5), rule(1, 1, position=1, active=False)]
    assert decide(lead(), AUTO, members, rules, None, NOW).rule == "rule:rule 4"


@pytest.mark.parametrize(
    ("blocked", "why"),
    [
        ({"active": False}, "inactive"),
        ({"open_leads": 10}, "at capacity"),
        ({"capacity": 0}, "at capacity"),
        ({"working_hours": BERLIN_9_TO_5, "open_leads": 1}, "outside working hours"),
        (
            {"working_hours": {"timezone": "Nowhere/Land", "start": "09:00", "end": "17:00"}},
            "invalid working hours",
        ),
    ],
)
def test_matching_rule_with_an_unavailable_member_falls_through(blocked: dict[str, Any], why: str) -> None:
    sunday = at("2025-10-05 12:00")
    members = [member(1, **blocked), member(2)]
    decision = decide(
        lead(), AUTO, members, [rule(1, 1, grades=["C"]), rule(2, 2, min_score=90)], None, sunday
    )
    assert decision.rule == "round_robin"
    assert decision.member_id == 2
    assert decision.reason.startswith(
        f"Rule 'rule 1' matched but Member 1 is unavailable ({why}). Weighted round-robin"
    )


def test_rule_falls_through_to_the_next_matching_rule() -> None:
    members = [member(1, open_leads=10), member(2), member(3)]
    decision = decide(lead(), AUTO, members, [rule(1, 1), rule(2, 3)], None, NOW)
    assert (decision.member_id, decision.rule) == (3, "rule:rule 2")


def test_rule_for_a_member_not_loaded_as_active_is_skipped() -> None:
    decision = decide(lead(), AUTO, [member(1)], [rule(1, 99)], None, NOW)
    assert decision.reason == (
        "Rule 'rule 1' matched but its member is not an active team member. Weighted round-robin among 1 "
        "eligible member chose "
        "Member 1 <m1@nexlink.website> (0 of 10 open leads, weight 1)."
    )


def test_rule_overrides_member_services_and_regions() -> None:
    specialist = member(1, services=["Cloud Migration"], regions=["US"])
    decision = decide(lead(), AUTO, [specialist], [rule(1, 1)], None, NOW)
    assert (decision.member_id, decision.rule) == (1, "rule:rule 1")


def test_all_matching_rules_blocked_and_nobody_eligible_reports_both() -> None:
    members = [member(1, active=False), member(2, open_leads=10)]
    decision = decide(lead(), AUTO, members, [rule(1, 1), rule(2, 2)], None, NOW)
    assert decision == Decision(
        None,
        None,
        "Rule 'rule 1' matched but Member 1 is unavailable (inactive); rule 'rule 2' matched but Member 2 is "
        "unavailable (at capacity). "
        "The lead stays unassigned: none of 2 team members is eligible (1 inactive, 1 at capacity) and no "
        "fallback owner is set.",
        "unassigned",
    )


@pytest.mark.parametrize(
    ("conditions", "overrides", "expected"),
    [
        ({}, {}, True),
        ({"campaign_ids": [], "services": [], "grades": [], "countries": [], "regions": []}, {}, True),
        ({"min_score": None}, {}, True),
        ({"campaign_ids": ["nextcloud-installation-2025", "other"]}, {}, True),
        ({"campaign_ids": ["Nextcloud-Installation-2025"]}, {}, False),  # ids are exact
        ({"services": ["  NEXTCLOUD   installation "]}, {}, True),
        ({"services": ["Cloud Migration"]}, {}, False),
        ({"services": ["Nextcloud Installation"]}, {"service_interest": None}, False),
        ({"grades": ["a", "c"]}, {}, True),
        ({"grades": ["A", "B"]}, {}, False),
        ({"grades": ["B"]}, {"lead_grade": "b"}, True),
        ({"min_score": 55}, {}, True),
        ({"min_score": 56}, {}, False),
        ({"min_score": 0}, {"lead_score": 0}, True),
        ({"countries": ["at", "de"]}, {}, True),
        ({"countries": ["US"]}, {}, False),
        ({"countries": ["DE"]}, {"geo_country": None}, False),
        ({"countries": ["DE"]}, {"geo_country": "de"}, True),
        ({"regions": ["DE"]}, {}, True),
        ({"regions": ["DE-BE"]}, {}, True),
        ({"regions": ["de-by"]}, {}, False),
        ({"regions": ["US-CA"]}, {"geo_country": "US", "geo_region_code": "CA"}, True),
        ({"regions": ["US-CA"]}, {"geo_country": "US", "geo_region_code": None}, False),
        ({"regions": ["US-CA"]}, {"geo_country": "CA", "geo_region_code": "US"}, False),
        (
            {"grades": ["C"], "min_score": 50, "countries": ["DE"], "services": ["Nextcloud Installation"]},
            {},
            True,
        ),
        ({"grades": ["C"], "min_score": 50, "countries": ["FR"]}, {}, False),  # conditions are ANDed
    ],
)
def test_rule_conditions(conditions: dict[str, Any], overrides: dict[str, Any], expected: bool) -> None:
    assert rule_matches(conditions, lead(**overrides)) is expected


# --- weighted round-robin ---------------------------------------------------------------------------


def test_round_robin_picks_the_lowest_load_per_weight() -> None:
    members = [
        member(1, open_leads=3, weight=1),  # 4/1
        member(2, name="Bea", email="bea@nexlink.website", open_leads=5, weight=3),  # 6/3 = 2
        member(3, open_leads=2, weight=1),  # 3/1
    ]
    decision = decide(lead(), AUTO, members, [], "owner@nexlink.website", NOW)
    assert decision == Decision(
        2,
        "bea@nexlink.website",
        "Weighted round-robin among 3 eligible members chose Bea <bea@nexlink.website> "
        "(5 of 10 open leads, weight 3).",
        "round_robin",
    )


def test_ties_go_to_never_assigned_then_oldest_assignment_then_lowest_id() -> None:
    old, older = NOW - timedelta(hours=1), NOW - timedelta(days=1)
    members = [
        member(1, last_assigned_at=old),
        member(2, last_assigned_at=older),
        member(3, last_assigned_at=old),
    ]
    assert pick_round_robin(members) == members[1]
    assert pick_round_robin([*members, member(4)]) == member(4)
    assert pick_round_robin([member(5), member(4)]) == member(4)
    assert pick_round_robin([member(1, last_assigned_at=old), member(3, last_assigned_at=old)]) == member(
        1, last_assigned_at=old
    )
    # The load ratio comes first: an exact tie of 2/2 and 1/1 falls to the tie-breaks.
    heavy = member(8, open_leads=1, weight=2, last_assigned_at=older)
    assert pick_round_robin([member(9, last_assigned_at=old), heavy]) == heavy
    assert pick_round_robin([]) is None


def test_capacity_edge() -> None:
    assert availability(member(1, open_leads=9, capacity=10), NOW) is None
    assert availability(member(1, open_leads=10, capacity=10), NOW) == "at capacity"
    assert availability(member(1, open_leads=11, capacity=10), NOW) == "at capacity"
    assert availability(member(1, open_leads=0, capacity=0), NOW) == "at capacity"
    last_slot = member(1, open_leads=9, capacity=10)
    assert decide(lead(), AUTO, [last_slot], [], None, NOW).member_id == 1
    assert decide(lead(), AUTO, [replace(last_slot, open_leads=10)], [], None, NOW).rule == "unassigned"


def test_inactive_members_never_get_leads() -> None:
    members = [member(1, active=False), member(2, active=False, open_leads=0, weight=100)]
    decision = decide(lead(), AUTO, members, [], "owner@nexlink.website", NOW)
    assert decision == Decision(
        None,
        "owner@nexlink.website",
        "Assigned to the fallback owner owner@nexlink.website: none of 2 team members is eligible (2 inactive).",
        "fallback",
    )


def test_service_matching_is_case_insensitive_and_only_when_listed() -> None:
    members = [
        member(1, services=["Cloud Migration"], open_leads=0),
        member(2, services=["nextcloud INSTALLATION"], open_leads=4),
        member(3, services=[], open_leads=5),
    ]
    assert decide(lead(), AUTO, members, [], None, NOW).member_id == 2
    # A lead without a service interest only goes to members who take any service.
    assert decide(lead(service_interest=None), AUTO, members, [], None, NOW).member_id == 3
    assert decide(lead(service_interest="Cloud migration"), AUTO, members, [], None, NOW).member_id == 1


def test_region_matching() -> None:
    members = [
        member(1, regions=["US-CA"]),
        member(2, regions=["DE", "AT"], open_leads=1),
        member(3, regions=[], open_leads=2),
    ]
    assert decide(lead(geo_country="US", geo_region_code="CA"), AUTO, members, [], None, NOW).member_id == 1
    assert decide(lead(geo_country="US", geo_region_code="NY"), AUTO, members, [], None, NOW).member_id == 3
    assert decide(lead(geo_country="AT", geo_region_code=None), AUTO, members, [], None, NOW).member_id == 2
    assert decide(lead(geo_country=None, geo_region_code=None), AUTO, members, [], None, NOW).member_id == 3
    assert region_matches(["us-ca"], "us", "ca")
    assert region_matches([], None, None)
    assert not region_matches(["US"], None, None)


def test_service_matches_helper() -> None:
    assert service_matches([], None)
    assert service_matches(["Help  Desk Support"], " help desk SUPPORT ")
    assert not service_matches(["Help Desk Support"], None)
    assert not service_matches(["Help Desk Support"], "")


def test_fallback_reason_counts_every_blocker_in_a_fixed_order() -> None:
    sunday = at("2025-10-05 12:00")
    members = [
        member(1, regions=["US"]),
        member(2, services=["Cloud Migration"]),
        member(3, working_hours=BERLIN_9_TO_5),
        member(4, open_leads=10),
        member(5, active=False),
        member(6, working_hours={"timezone": "UTC", "days": [9], "start": "09:00", "end": "17:00"}),
        member(7, open_leads=3, capacity=3),
    ]
    decision = decide(lead(), AUTO, members, [], "owner@nexlink.website", sunday)
    assert decision.reason == (
        "Assigned to the fallback owner owner@nexlink.website: none of 7 team members is eligible "
        "(1 inactive, 2 at capacity, 1 outside working hours, 1 with invalid working hours, "
        "1 not covering the service, 1 not covering the region)."
    )
    assert decision.rule == "fallback"
    assert decision.member_id is None


def test_no_members_at_all() -> None:
    assert decide(lead(), AUTO, [], [], None, NOW) == Decision(
        None,
        None,
        "The lead stays unassigned: there are no team members and no fallback owner is set.",
        "unassigned",
    )
    assert decide(lead(), AUTO, [], [], "  ", NOW).rule == "unassigned"  # a blank fallback is none
    assert decide(lead(), AUTO, [], [], " boss@nexlink.website ", NOW).assignee == "boss@nexlink.website"


def test_reason_never_contains_lead_data() -> None:
    routed = lead(
        service_interest="Secret Project Zeta", geo_country="NZ", geo_region_code="AUK", lead_id=424242
    )
    members = [member(1), member(2, services=["Other"])]
    for decision in (
        decide(routed, AUTO, members, [], None, NOW),
        decide(routed, AUTO, members, [rule(1, 1)], None, NOW),
        decide(routed, AUTO, [member(3, active=False)], [], "owner@nexlink.website", NOW),
    ):
        for fragment in ("Secret Project", "NZ", "AUK", "424242"):
            assert fragment not in decision.reason


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(lead(), AUTO, [member(1)], [], None, datetime(2025, 10, 6, 10, 0))


# --- working hours ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2025-10-06 07:00", True),  # Monday 09:00 in Berlin (CEST, UTC+2)
        ("2025-10-06 06:59", False),  # 08:59
        ("2025-10-06 14:59", True),  # 16:59
        ("2025-10-06 15:00", False),  # 17:00: the end is exclusive
        ("2025-10-10 14:30", True),  # Friday 16:30
        ("2025-10-11 10:00", False),  # Saturday
        ("2025-10-27 07:30", False),  # after the DST change (CET, UTC+1): 08:30
        ("2025-10-27 08:00", True),  # 09:00
        ("2025-10-05 22:30", False),  # Sunday 22:30 UTC is Monday 00:30 in Berlin: before 09:00
    ],
)
def test_berlin_office_hours(when: str, expected: bool) -> None:
    assert is_working(BERLIN_9_TO_5, at(when)) is expected


@pytest.mark.parametrize(
    ("zone", "when", "expected"),
    [
        # Los Angeles (PDT, UTC-7): Monday 01:00 UTC is still Sunday 18:00 there.
        ("America/Los_Angeles", "2025-10-06 01:00", False),
        # Saturday 00:30 UTC is Friday 17:30 there: after hours.
        ("America/Los_Angeles", "2025-10-11 00:30", False),
        # Friday 23:30 UTC is Friday 16:30 there.
        ("America/Los_Angeles", "2025-10-10 23:30", True),
        # Auckland (NZDT, UTC+13): Sunday 20:00 UTC is Monday 09:00 there.
        ("Pacific/Auckland", "2025-10-05 20:00", True),
        ("Pacific/Auckland", "2025-10-05 19:59", False),
        # Friday 04:00 UTC is Friday 17:00 there: closed; Thursday 03:59 UTC is Thursday 16:59.
        ("Pacific/Auckland", "2025-10-10 04:00", False),
        ("Pacific/Auckland", "2025-10-09 03:59", True),
        # Kolkata (UTC+5:30): Monday 03:30 UTC is 09:00.
        ("Asia/Kolkata", "2025-10-06 03:30", True),
        ("Asia/Kolkata", "2025-10-06 03:29", False),
    ],
)
def test_working_hours_across_time_zones(zone: str, when: str, expected: bool) -> None:
    hours = {"timezone": zone, "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}
    assert is_working(hours, at(when)) is expected


@pytest.mark.parametrize(
    ("days", "when", "expected"),
    [
        ([0], "2025-10-06 23:00", True),  # Monday night
        ([0], "2025-10-07 05:59", True),  # Tuesday morning: still Monday's shift
        ([0], "2025-10-07 06:00", False),  # the shift ended
        ([0], "2025-10-06 05:00", False),  # Monday morning belongs to Sunday's shift
        ([0], "2025-10-07 22:30", False),  # Tuesday night: Tuesday is not a working day
        ([0], "2025-10-06 21:59", False),
        ([6], "2025-10-06 03:00", True),  # Sunday's shift runs into Monday (wraps the week)
        ([6], "2025-10-05 03:00", False),  # Sunday morning belongs to Saturday's shift
    ],
)
def test_overnight_shift_runs_past_midnight(days: list[int], when: str, expected: bool) -> None:
    hours = {"timezone": "UTC", "days": days, "start": "22:00", "end": "06:00"}
    assert is_working(hours, at(when)) is expected


def test_overnight_shift_in_a_local_zone() -> None:
    # New York (EDT, UTC-4), Monday 22:00 - Tuesday 06:00 local = Tuesday 02:00 - 10:00 UTC.
    hours = {"timezone": "America/New_York", "days": [0], "start": "22:00", "end": "06:00"}
    assert is_working(hours, at("2025-10-07 02:00"))
    assert is_working(hours, at("2025-10-07 09:59"))
    assert not is_working(hours, at("2025-10-07 10:00"))
    assert not is_working(hours, at("2025-10-06 23:00"))  # Monday 19:00 local


def test_whole_day_and_until_midnight() -> None:
    whole = {"timezone": "UTC", "days": [0], "start": "00:00", "end": "00:00"}
    assert is_working(whole, at("2025-10-06 00:00"))
    assert is_working(whole, at("2025-10-06 23:59"))
    assert not is_working(whole, at("2025-10-07 00:00"))
    evening = {"timezone": "UTC", "days": [0], "start": "18:00", "end": "00:00"}
    assert is_working(evening, at("2025-10-06 23:59"))
    assert not is_working(evening, at("2025-10-06 17:59"))
    assert not is_working(evening, at("2025-10-07 00:00"))


def test_working_hours_defaults_and_none() -> None:
    assert is_working(None, NOW)
    assert is_working(
        {"timezone": "UTC", "start": "09:00", "end": "11:00"}, at("2025-10-11 10:00")
    )  # any day
    assert not is_working({"timezone": "UTC", "start": "09:00", "end": "11:00"}, at("2025-10-11 11:00"))


@pytest.mark.parametrize(
    "hours",
    [
        {"timezone": "Mars/Olympus", "days": [0], "start": "09:00", "end": "17:00"},
        {"timezone": "posixrules", "days": [0], "start": "09:00", "end": "17:00"},
        {"timezone": 5, "days": [0], "start": "09:00", "end": "17:00"},
        {"timezone": "UTC", "days": [7], "start": "09:00", "end": "17:00"},
        {"timezone": "UTC", "days": [True], "start": "09:00", "end": "17:00"},
        {"timezone": "UTC", "days": "0,1", "start": "09:00", "end": "17:00"},
        {"timezone": "UTC", "days": [0], "start": "9:00", "end": "17:00"},
        {"timezone": "UTC", "days": [0], "start": "09:00", "end": "24:00"},
    ],
)
def test_malformed_working_hours_raise_and_make_the_member_unavailable(hours: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        is_working(hours, NOW)
    assert availability(member(1, working_hours=hours), NOW) == "invalid working hours"


def test_out_of_hours_member_is_skipped_in_the_round_robin() -> None:
    members = [member(1, working_hours=BERLIN_9_TO_5), member(2, open_leads=8)]
    assert decide(lead(), AUTO, members, [], None, at("2025-10-06 12:00")).member_id == 1
    assert decide(lead(), AUTO, members, [], None, at("2025-10-06 18:00")).member_id == 2


@pytest.mark.parametrize("value", ["00:00", "09:30", "23:59"])
def test_parse_hhmm_accepts(value: str) -> None:
    assert parse_hhmm(value).strftime("%H:%M") == value


@pytest.mark.parametrize("value", ["24:00", "12:60", "9:00", "09:0", "0900", "ab:cd", "09-00", "", "١٢:٠٠"])
def test_parse_hhmm_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_hhmm(value)
