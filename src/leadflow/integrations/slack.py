"""Slack incoming webhook: an instant message for hot (A-grade) leads.

Slack answers ``200 ok``; errors are plain strings (``400 invalid_payload``, ``403 action_prohibited``,
``404 channel_not_found``, ``410 channel_is_archived``) and are permanent, ``429``/``5xx`` are retried
with ``Retry-After``. The message carries a ``text`` fallback (used for notifications) and Block Kit
``blocks``. Lead values are escaped for mrkdwn so a name like ``<!channel>`` cannot ping a channel or
smuggle a link. Only the name and company of the lead go to Slack, never its e-mail or phone: the
button links to the lead in the API, where reads are authorised and audited.

Also home to the lead summary shared by the chat and e-mail notifications (:func:`lead_facts`,
:func:`lead_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from leadflow.config import Settings
from leadflow.integrations.base import DeliveryContext, LeadView, Outcome, PermanentError, campaign_toggle
from leadflow.integrations.http import check, send

DEFAULT_GRADES = frozenset({"A"})
FIELD_LIMIT = 300  # characters of one lead value in a message (Slack allows 2,000 per field)


# --- the lead summary every notification shows ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str


def lead_url(settings: Settings, lead: LeadView) -> str:
    """Where a team member opens the lead (authenticated API; reads are audited)."""
    return f"{settings.public_base_url.rstrip('/')}/v1/api/leads/{lead.lead_id}"


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


# --- Slack ------------------------------------------------------------------------------------------


def escape_mrkdwn(value: str) -> str:
    """Slack's three control characters; what remains cannot form a mention or a link."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    webhook_url: SecretStr


def build_message(lead: LeadView, url: str) -> dict[str, Any]:
    """The webhook body: ``text`` fallback plus Block Kit ``blocks``."""
    facts = lead_facts(lead)
    values = {fact.label: fact.value for fact in facts}
    who = values["Name"] + (f" ({values['Company']})" if lead.company else "")
    service = f", {values['Service']}" if lead.service_interest else ""
    text = (
        f"New {lead.lead_grade}-grade lead: {escape_mrkdwn(who)} (score {lead.lead_score}"
        f"{escape_mrkdwn(service)}) <{url}|Open lead>"
    )
    return {
        "text": text,
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"New {lead.lead_grade}-grade lead", "emoji": True},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{fact.label}*\n{escape_mrkdwn(fact.value)}"}
                    for fact in facts
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open lead"},
                        "url": url,
                        "style": "primary",
                        "action_id": "open_lead",
                    }
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{lead.lead_id} · {escape_mrkdwn(lead.source)} · captured "
                        f"{lead.created_at:%Y-%m-%d %H:%M} UTC",
                    }
                ],
            },
        ],
    }


class SlackConnector:
    name: ClassVar[str] = "slack"
    max_attempts: ClassVar[int] = 6

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = settings.slack_webhook_url
        self.config: SlackConfig | None = (
            SlackConfig(webhook_url=url) if url is not None and url.get_secret_value().strip() else None
        )

    def configured(self) -> bool:
        return self.config is not None

    def wants(self, lead: LeadView) -> bool:
        return grade_rule(lead, self.name)

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        if self.config is None:
            raise PermanentError("slack is not configured (SLACK_WEBHOOK_URL)")
        body = build_message(lead, lead_url(self.settings, lead))
        response = await send(ctx.http, "POST", self.config.webhook_url.get_secret_value(), json=body)
        outcome = check(response)
        return Outcome(
            status_code=outcome.status_code,
            response_excerpt=outcome.response_excerpt,
            detail="slack message posted",
        )
