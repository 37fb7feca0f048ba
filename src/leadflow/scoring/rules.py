"""The spec's 100-point lead score, as pure functions with a per-rule breakdown.

Contact (25) + Intent (35) + Behaviour (25) + Source (15). Every rule returns its points and a short
reason; the breakdown is stored on the lead so a salesperson can see why a lead is hot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from leadflow.leads.models import OPTIONAL_FIELDS as OPTIONAL_FIELDS
from leadflow.scoring.channels import CHANNEL_POINTS

HIGH_URGENCY = frozenset({"high", "emergency", "urgent", "asap", "same-day", "immediate", "critical"})
NO_BUDGET = frozenset(
    {
        "unknown",
        "not sure",
        "notsure",
        "n/a",
        "na",
        "none",
        "tbd",
        "undecided",
        "don't know",
        "dont know",
        "-",
    }
)
GRADE_FLOORS = (("A", 80), ("B", 60), ("C", 40))

_FIRST_WORD = re.compile(r"[a-z][a-z-]*")


@dataclass(frozen=True, slots=True)
class ScoreInput:
    """Everything the score depends on, already validated and normalised."""

    email_kind: str  # "business" | "free" | "disposable"
    phone: bool = False
    company: bool = False
    service_interest: str | None = None
    urgency: str | None = None
    budget_range: str | None = None
    filled_optional: frozenset[str] = frozenset()
    time_on_page_seconds: int | None = None
    returning_visitor: bool = False
    channel: str = "Unassigned"
    service_catalog: frozenset[str] = frozenset()

    def __reduce__(self) -> tuple[type[ScoreInput], tuple[Any, ...]]:
        """Pickled with every captured lead (to the SQLite writer process): the fields in order, rather
        than the per-field ``__getstate__``/``__setstate__`` Python runs for a slots dataclass."""
        return (
            ScoreInput,
            (
                self.email_kind,
                self.phone,
                self.company,
                self.service_interest,
                self.urgency,
                self.budget_range,
                self.filled_optional,
                self.time_on_page_seconds,
                self.returning_visitor,
                self.channel,
                self.service_catalog,
            ),
        )


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    category: str
    points: int
    max_points: int
    reason: str


@dataclass(frozen=True, slots=True)
class Score:
    total: int
    grade: str
    rules: tuple[RuleResult, ...] = field(default_factory=tuple)

    def breakdown(self) -> dict[str, Any]:
        categories: dict[str, int] = {}
        for r in self.rules:
            categories[r.category] = categories.get(r.category, 0) + r.points
        return {
            "total": self.total,
            "grade": self.grade,
            "categories": categories,
            "rules": [
                {
                    "rule": r.rule,
                    "category": r.category,
                    "points": r.points,
                    "max": r.max_points,
                    "reason": r.reason,
                }
                for r in self.rules
            ],
        }


def normalise_catalog(names: Iterable[str]) -> frozenset[str]:
    return frozenset(" ".join(n.split()).casefold() for n in names if n and n.strip())


def urgency_level(value: str | None) -> str | None:
    """The urgency's level from its first word: "High (Same day)" -> "high"."""
    if not value:
        return None
    text = value.strip().casefold()
    if text.startswith(("same day", "same-day")):
        return "high"
    match = _FIRST_WORD.search(text)
    if not match:
        return None
    word = match.group(0)
    if word in HIGH_URGENCY:
        return "high"
    if word in ("medium", "moderate", "normal"):
        return "medium"
    if word == "low":
        return "low"
    return None


def has_budget(value: str | None) -> bool:
    """A real budget indication: not blank, not "unknown"/"not sure", and it names an amount."""
    if not value:
        return False
    text = " ".join(value.casefold().split())
    if text in NO_BUDGET:
        return False
    return any(ch.isdigit() for ch in text)


def grade_for(total: int) -> str:
    for grade, floor in GRADE_FLOORS:
        if total >= floor:
            return grade
    return "D"


def contact_rules(s: ScoreInput) -> list[RuleResult]:
    business = s.email_kind == "business"
    return [
        RuleResult(
            "business_email",
            "contact",
            15 if business else 0,
            15,
            "business e-mail domain" if business else f"{s.email_kind} e-mail domain",
        ),
        RuleResult("phone", "contact", 5 if s.phone else 0, 5, "phone given" if s.phone else "no phone"),
        RuleResult(
            "company", "contact", 5 if s.company else 0, 5, "company given" if s.company else "no company"
        ),
    ]


def intent_rules(s: ScoreInput) -> list[RuleResult]:
    interest = " ".join((s.service_interest or "").split()).casefold()
    if not interest:
        service = RuleResult("service_interest", "intent", 0, 15, "no service interest")
    elif interest in s.service_catalog:
        service = RuleResult("service_interest", "intent", 15, 15, "specific service from the catalog")
    else:
        service = RuleResult("service_interest", "intent", 5, 15, "general inquiry")
    level = urgency_level(s.urgency)
    urgency_points = {"high": 15, "medium": 10, "low": 5}.get(level or "", 0)
    urgency = RuleResult("urgency", "intent", urgency_points, 15, f"urgency {level or 'not given'}")
    budget = has_budget(s.budget_range)
    return [
        service,
        urgency,
        RuleResult(
            "budget", "intent", 5 if budget else 0, 5, "budget range given" if budget else "no budget"
        ),
    ]


def behaviour_rules(s: ScoreInput) -> list[RuleResult]:
    seconds = s.time_on_page_seconds
    if seconds is not None and seconds > 180:
        time_rule = RuleResult("time_on_page", "behaviour", 10, 10, "more than 3 minutes on page")
    elif seconds is not None and seconds >= 60:
        time_rule = RuleResult("time_on_page", "behaviour", 5, 10, "1-3 minutes on page")
    else:
        time_rule = RuleResult("time_on_page", "behaviour", 0, 10, "under a minute or unknown")
    complete = all(f in s.filled_optional for f in OPTIONAL_FIELDS)
    completion = RuleResult(
        "form_completion",
        "behaviour",
        10 if complete else 5,
        10,
        "all fields completed" if complete else "required fields only",
    )
    returning = RuleResult(
        "returning_visitor",
        "behaviour",
        5 if s.returning_visitor else 0,
        5,
        "returning visitor" if s.returning_visitor else "first visit",
    )
    return [time_rule, completion, returning]


def source_rules(s: ScoreInput) -> list[RuleResult]:
    return [RuleResult("channel", "source", CHANNEL_POINTS.get(s.channel, 0), 15, s.channel)]


def score(s: ScoreInput) -> Score:
    rules = (*contact_rules(s), *intent_rules(s), *behaviour_rules(s), *source_rules(s))
    total = max(0, min(100, sum(r.points for r in rules)))
    return Score(total=total, grade=grade_for(total), rules=rules)
