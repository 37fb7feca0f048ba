"""The lead summary every notification shows (Slack, Teams, e-mail, SMS) and who gets one.

No contact details: a team member opens the lead through :func:`lead_url`, where reads are
authorised and audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadflow.config import Settings
from leadflow.integrations.base import LeadView, campaign_toggle

DEFAULT_GRADES = frozenset({"A"})
FIELD_LIMIT = 300  # characters of one lead value in a message (Slack allows 2,000 per field)


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str


def lead_url(settings: Settings, lead: LeadView) -> str:
    """Where a team member opens the lead: its workspace page (sign-in required; reads are audited)."""
    return f"{settings.public_base_url.rstrip('/')}/leads/{lead.lead_id}"


def clip(value: str, limit: int = FIELD_LIMIT) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def lead_facts(lead: LeadView) -> list[Fact]:
    """Name, company, score/grade, service, urgency, campaign, assignee: no contact details."""
    return [
        Fact("Name", clip(lead.full_name or "(no name)")),
        Fact("Company", clip(lead.company or "—")),
        Fact("Score", f"{lead.lead_score} (grade {lead.lead_grade})"),
        Fact("Service", clip(lead.service_interest or "—")),
        Fact("Urgency", clip(lead.urgency or lead.urgency_level or "—")),
        Fact("Campaign", clip(lead.campaign_name or lead.campaign_id)),
        Fact("Assigned to", clip(lead.assignee.name) if lead.assignee else "unassigned"),
    ]


def grade_rule(lead: LeadView, name: str, default_grades: frozenset[str] = DEFAULT_GRADES) -> bool:
    """A-grade leads by default. A campaign overrides with ``{"enabled": bool}`` (explicit on/off for
    every lead of the campaign) or ``{"grades": ["A", "B"]}``."""
    toggle = campaign_toggle(lead, name)
    if toggle is not None:
        return toggle
    grades = lead.integration_settings(name).get("grades")
    if isinstance(grades, list) and all(isinstance(g, str) for g in grades):
        return lead.lead_grade.upper() in {g.upper() for g in grades}
    return lead.lead_grade.upper() in default_grades
