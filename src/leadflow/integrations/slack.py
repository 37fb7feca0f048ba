"""Slack incoming webhook: an instant message for hot (A-grade) leads.

Slack answers ``200 ok``; errors are plain strings (``400 invalid_payload``, ``403 action_prohibited``,
``404 channel_not_found``, ``410 channel_is_archived``) and are permanent, ``429``/``5xx`` are retried
with ``Retry-After``. The message carries a ``text`` fallback (used for notifications) and Block Kit
``blocks``. Lead values are escaped for mrkdwn so a name like ``<!channel>`` cannot ping a channel or
smuggle a link. Only the name and company of the lead go to Slack, never its e-mail or phone: the
button links to the lead in the API, where reads are authorised and audited.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from leadflow.config import Settings
from leadflow.integrations.base import DeliveryContext, LeadView, Outcome, PermanentError
from leadflow.integrations.http import check, send
from leadflow.integrations.notify import grade_rule, lead_facts, lead_url

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
    erasure_note: ClassVar[str] = "Slack messages already posted (name, company, score) are not deleted"

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
