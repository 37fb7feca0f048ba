"""Who gets a lead: the routing choice as pure functions (no I/O; the clock is injected).

Order of precedence (spec "Routing & Notifications": campaign configuration, service type, lead score,
geographic location, team availability):

1. **campaign_fixed** - the campaign has ``auto_assign = false`` and an ``assigned_to`` e-mail: that person
   gets every lead of the campaign, whatever their load or hours (an explicit admin choice). When a team
   member has that e-mail, ``member_id`` links to them. ``auto_assign = false`` *without* an assignee means
   "never auto-assign": rules and round-robin are skipped and the lead goes to the fallback owner (or
   stays unassigned).
2. **rule:<name>** - the first active rule (by ``position``, then id) whose conditions all hold and whose
   member is eligible: active, within working hours and below capacity. A matching rule whose member is
   not eligible is skipped (the reason says so) and the next rule is tried.
3. **round_robin** - weighted, load-based: among eligible members (active, service and region match,
   within working hours, ``open_leads < capacity``) the lowest ``(open_leads + 1) / weight`` wins; ties go
   to the member assigned longest ago (never-assigned first), then the lowest id. Because every
   assignment raises the winner's load, nobody is starved and a member of weight 2 carries twice the
   open leads of a member of weight 1.
4. **fallback** - ``settings.fallback_owner`` (an e-mail, no member link, no capacity check).
5. **unassigned** - nobody.

Matching details (case-insensitive throughout):

* services: a member or rule that lists services only takes leads whose ``service_interest`` is one of
  them (a lead without a service interest does not match); an empty list means any service.
* regions: entries are ISO 3166 country codes (``"DE"``) or subdivisions (``"US-CA"``); a country entry
  matches any lead in that country, a subdivision entry needs the lead's ``geo_region_code`` too; a lead
  without a known country does not match; an empty list means anywhere.
* working hours ``{"timezone": "Europe/Berlin", "days": [0..6], "start": "09:00", "end": "17:00"}``:
  Monday is 0; a shift with ``start > end`` runs past midnight into the next day (it belongs to the day
  it starts on); ``start == end`` is the whole day; ``None`` means always available. A malformed
  configuration makes the member unavailable rather than failing the routing of the lead.
* rule conditions (all present keys must hold, an empty list is no constraint): ``campaign_ids``
  (exact), ``services``, ``grades``, ``min_score`` (inclusive), ``countries``, ``regions`` (as above).

The ``reason`` is one readable sentence naming the rule and member (names and e-mails of staff are fine);
it never contains the lead's personal data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from fractions import Fraction
from functools import cache
from typing import Any, Final
from zoneinfo import ZoneInfo, available_timezones

CLOSED_STATUSES: Final = ("closed_won", "closed_lost")
ALL_DAYS: Final = (0, 1, 2, 3, 4, 5, 6)


@dataclass(frozen=True, slots=True)
class RoutingLead:
    """The facts about a lead that routing may use (no personal data)."""

    lead_id: int
    campaign_id: str
    service_interest: str | None
    lead_score: int
    lead_grade: str
    geo_country: str | None  # ISO 3166-1 alpha-2, e.g. "US"
    geo_region_code: str | None  # ISO 3166-2 subdivision without the country, e.g. "CA"
    urgency_level: str | None


@dataclass(frozen=True, slots=True)
class CampaignRouting:
    """The campaign's routing configuration (spec columns ``auto_assign`` and ``assigned_to``)."""

    auto_assign: bool
    assigned_to: str | None  # fixed assignee e-mail, used when auto_assign is false


@dataclass(frozen=True, slots=True)
class MemberState:
    """A team member and their live load (``open_leads``: assigned leads not closed)."""

    id: int
    name: str
    email: str
    phone: str | None
    active: bool
    services: list[str]  # empty: any service
    regions: list[str]  # "DE", "US-CA"; empty: anywhere
    capacity: int
    open_leads: int
    working_hours: dict[str, Any] | None  # None: always available
    weight: int
    last_assigned_at: datetime | None


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    name: str
    position: int
    active: bool
    conditions: dict[str, Any]
    member_id: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome: ``rule`` is "campaign_fixed", "rule:<name>", "round_robin", "fallback" or "unassigned"."""

    member_id: int | None
    assignee: str | None
    reason: str
    rule: str


# --- small helpers ----------------------------------------------------------------------------------


def _fold(value: str) -> str:
    return " ".join(value.split()).casefold()


@cache
def valid_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_hhmm(value: str) -> time:
    """``"09:30"`` -> ``time(9, 30)``; anything else (including ``"24:00"``) is a ValueError."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise ValueError("times look like HH:MM")
    hours, minutes = value[:2], value[3:]
    if not (hours.isdigit() and minutes.isdigit() and hours.isascii() and minutes.isascii()):
        raise ValueError("times look like HH:MM")
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError("times run from 00:00 to 23:59")
    return time(int(hours), int(minutes))


def is_working(hours: Mapping[str, Any] | None, now: datetime) -> bool:
    """Whether ``now`` (timezone-aware) falls in the working hours; ValueError on a malformed config."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if hours is None:
        return True
    zone_name = hours.get("timezone", "UTC")
    if not isinstance(zone_name, str) or zone_name not in valid_timezones():
        raise ValueError("unknown time zone")
    days_value = hours.get("days", list(ALL_DAYS))
    if not isinstance(days_value, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days_value
    ):
        raise ValueError("days are integers 0 (Monday) to 6 (Sunday)")
    days = frozenset(days_value)
    start = parse_hhmm(hours.get("start", "00:00"))
    end = parse_hhmm(hours.get("end", "00:00"))
    local = now.astimezone(ZoneInfo(zone_name))
    weekday, clock = local.weekday(), local.time().replace(tzinfo=None)
    if start == end:  # the whole day
        return weekday in days
    if start < end:
        return weekday in days and start <= clock < end
    # Overnight shift: from start on a listed day until end on the following day.
    return (weekday in days and clock >= start) or ((weekday - 1) % 7 in days and clock < end)


def service_matches(wanted: Sequence[str], service: str | None) -> bool:
    """True when ``wanted`` is empty or lists ``service`` (case- and whitespace-insensitive)."""
    if not wanted:
        return True
    if not service:
        return False
    folded = _fold(service)
    return any(_fold(w) == folded for w in wanted)


def region_matches(wanted: Sequence[str], country: str | None, region_code: str | None) -> bool:
    """True when ``wanted`` is empty, names the lead's country, or names its ``COUNTRY-REGION``."""
    if not wanted:
        return True
    if not country:
        return False
    country = country.strip().upper()
    subdivision = f"{country}-{region_code.strip().upper()}" if region_code else None
    for entry in wanted:
        code = entry.strip().upper()
        if code == country or (subdivision is not None and code == subdivision):
            return True
    return False


def rule_matches(conditions: Mapping[str, Any], lead: RoutingLead) -> bool:
    """All present conditions hold (an empty list or a null value is no constraint)."""
    campaign_ids = conditions.get("campaign_ids") or []
    if campaign_ids and lead.campaign_id not in campaign_ids:
        return False
    if not service_matches(conditions.get("services") or [], lead.service_interest):
        return False
    grades = conditions.get("grades") or []
    if grades and lead.lead_grade.upper() not in {str(g).upper() for g in grades}:
        return False
    min_score = conditions.get("min_score")
    if min_score is not None and lead.lead_score < int(min_score):
        return False
    countries = conditions.get("countries") or []
    if countries and (lead.geo_country or "").strip().upper() not in {str(c).upper() for c in countries}:
        return False
    return region_matches(conditions.get("regions") or [], lead.geo_country, lead.geo_region_code)


# --- eligibility ------------------------------------------------------------------------------------

INACTIVE, AT_CAPACITY, OFF_HOURS, BAD_HOURS = (
    "inactive",
    "at capacity",
    "outside working hours",
    "invalid working hours",
)
NO_SERVICE, NO_REGION = "not covering the service", "not covering the region"
_REASON_ORDER = (INACTIVE, AT_CAPACITY, OFF_HOURS, BAD_HOURS, NO_SERVICE, NO_REGION)
_COUNTED = {BAD_HOURS: "with invalid working hours"}


def availability(member: MemberState, now: datetime) -> str | None:
    """None when the member can take a lead now, else why not (inactive, capacity, hours)."""
    if not member.active:
        return INACTIVE
    if member.open_leads >= member.capacity:
        return AT_CAPACITY
    try:
        working = is_working(member.working_hours, now)
    except ValueError:
        return BAD_HOURS
    return None if working else OFF_HOURS


def round_robin_blocker(member: MemberState, lead: RoutingLead, now: datetime) -> str | None:
    """None when the member is eligible for this lead in the round-robin, else why not."""
    blocker = availability(member, now)
    if blocker is not None:
        return blocker
    if not service_matches(member.services, lead.service_interest):
        return NO_SERVICE
    if not region_matches(member.regions, lead.geo_country, lead.geo_region_code):
        return NO_REGION
    return None


_NEVER = datetime.min.replace(tzinfo=UTC)


def _load_key(member: MemberState) -> tuple[Fraction, int, datetime, int]:
    last = member.last_assigned_at
    return (
        Fraction(member.open_leads + 1, max(member.weight, 1)),
        0 if last is None else 1,
        _NEVER if last is None else last,
        member.id,
    )


def pick_round_robin(members: Sequence[MemberState]) -> MemberState | None:
    """Lowest (open_leads + 1) / weight; ties: oldest last_assigned_at (never first), then lowest id."""
    return min(members, key=_load_key, default=None)


def _who(member: MemberState) -> str:
    return f"{member.name} <{member.email}>"


def _load(member: MemberState) -> str:
    return f"{member.open_leads} of {member.capacity} open leads"


def _summary(blockers: Counter[str]) -> str:
    total = sum(blockers.values())
    if total == 0:
        return "there are no team members"
    parts = [f"{blockers[r]} {_COUNTED.get(r, r)}" for r in _REASON_ORDER if blockers[r]]
    noun = "member" if total == 1 else "members"
    return f"none of {total} team {noun} is eligible ({', '.join(parts)})"


# --- the decision -----------------------------------------------------------------------------------


def decide(
    lead: RoutingLead,
    campaign: CampaignRouting,
    members: Sequence[MemberState],
    rules: Sequence[Rule],
    fallback_owner: str | None,
    now: datetime,
) -> Decision:
    """Choose the assignee of ``lead`` (see the module docstring for the order and the matching)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    by_id = {m.id: m for m in members}

    if not campaign.auto_assign:
        fixed = (campaign.assigned_to or "").strip()
        if fixed:
            member = next((m for m in members if m.email.casefold() == fixed.casefold()), None)
            who = _who(member) if member is not None else fixed
            return Decision(
                member.id if member is not None else None,
                member.email if member is not None else fixed,
                f"The campaign assigns every lead to {who} (automatic assignment is off).",
                "campaign_fixed",
            )
        return _fallback(fallback_owner, "the campaign has automatic assignment off and no fixed assignee")

    skipped: list[str] = []
    for rule in sorted((r for r in rules if r.active), key=lambda r: (r.position, r.id)):
        if not rule_matches(rule.conditions, lead):
            continue
        member = by_id.get(rule.member_id)
        if member is None:
            skipped.append(f"rule '{rule.name}' matched but its member is not an active team member")
            continue
        blocker = availability(member, now)
        if blocker is not None:
            skipped.append(f"rule '{rule.name}' matched but {member.name} is unavailable ({blocker})")
            continue
        return Decision(
            member.id,
            member.email,
            f"{_notes(skipped)}Routing rule '{rule.name}' matched; assigned to {_who(member)} ({_load(member)}).",
            f"rule:{rule.name}",
        )

    blockers: Counter[str] = Counter()
    eligible: list[MemberState] = []
    for member in members:
        blocker = round_robin_blocker(member, lead, now)
        if blocker is None:
            eligible.append(member)
        else:
            blockers[blocker] += 1
    prefix = _notes(skipped)
    chosen = pick_round_robin(eligible)
    if chosen is not None:
        count = len(eligible)
        return Decision(
            chosen.id,
            chosen.email,
            f"{prefix}Weighted round-robin among {count} eligible member{'s' if count != 1 else ''} "
            f"chose {_who(chosen)} ({_load(chosen)}, weight {chosen.weight}).",
            "round_robin",
        )
    return _fallback(fallback_owner, _summary(blockers), prefix)


def _notes(skipped: list[str]) -> str:
    """Skipped rules as a sentence that leads the reason ("" when none)."""
    text = "; ".join(skipped)
    return text[0].upper() + text[1:] + ". " if text else ""


def _fallback(owner: str | None, why: str, prefix: str = "") -> Decision:
    owner = (owner or "").strip() or None
    if owner is not None:
        return Decision(None, owner, f"{prefix}Assigned to the fallback owner {owner}: {why}.", "fallback")
    return Decision(
        None, None, f"{prefix}The lead stays unassigned: {why} and no fallback owner is set.", "unassigned"
    )
