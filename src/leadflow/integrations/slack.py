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

from leadflow.config import ChatWebhookSettings
from leadflow.integrations.base import LeadView
from leadflow.integrations.notify import lead_facts
from leadflow.integrations.webhook_base import ChatWebhookConnector


def escape_mrkdwn(value: str) -> str:
    """Slack's three control characters; what remains cannot form a mention or a link."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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


class SlackConnector(ChatWebhookConnector):
    name: ClassVar[str] = "slack"
    erasure_note: ClassVar[str | None] = (
        "Slack messages already posted (name, company, score) are not deleted"
    )
    posted: ClassVar[str] = "slack message posted"

    @property
    def config(self) -> ChatWebhookSettings:
        return self.settings.slack

    def message(self, lead: LeadView, url: str) -> dict[str, Any]:
        return build_message(lead, url)
