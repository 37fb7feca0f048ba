"""Microsoft Teams incoming webhook: an Adaptive Card for hot (A-grade) leads.

The body is the documented envelope ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <card>}]}``. Lead values go
into ``TextRun`` inlines of a ``RichTextBlock``, which Teams renders as plain text (no markdown), so a
lead named ``[click](https://evil)`` shows as typed instead of becoming a link.

Teams answers ``200`` with body ``1`` (Workflows webhooks: ``202``). An old-style connector signals
throttling or a failed delivery in the body of a 2xx ("Microsoft Teams endpoint returned HTTP error
429 ..."), so the body is read before calling it a success.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from leadflow.config import Settings
from leadflow.integrations.base import DeliveryContext, LeadView, Outcome, PermanentError, RetriableError
from leadflow.integrations.http import check, excerpt, parse_retry_after, send
from leadflow.integrations.notify import grade_rule, lead_facts, lead_url

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"  # what Teams renders on desktop, web and mobile
_BODY_ERROR = re.compile(r"returned HTTP error (\d{3})")


class TeamsConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    webhook_url: SecretStr


def build_card(lead: LeadView, url: str) -> dict[str, Any]:
    """The Adaptive Card (the attachment's ``content``)."""
    title = f"New {lead.lead_grade}-grade lead (score {lead.lead_score})"
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Large", "wrap": True},
    ]
    body.extend(
        {
            "type": "RichTextBlock",
            "inlines": [
                {"type": "TextRun", "text": f"{fact.label}: ", "weight": "Bolder"},
                {"type": "TextRun", "text": fact.value},
            ],
        }
        for fact in lead_facts(lead)
    )
    body.append({"type": "TextBlock", "text": lead.lead_id, "isSubtle": True, "size": "Small", "wrap": True})
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "fallbackText": title,
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": "Open lead", "url": url}],
    }


def build_message(lead: LeadView, url: str) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": build_card(lead, url)}],
    }


class TeamsConnector:
    name: ClassVar[str] = "teams"
    max_attempts: ClassVar[int] = 6
    erasure_note: ClassVar[str] = "Teams messages already posted (name, company, score) are not deleted"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = settings.teams_webhook_url
        self.config: TeamsConfig | None = (
            TeamsConfig(webhook_url=url) if url is not None and url.get_secret_value().strip() else None
        )

    def configured(self) -> bool:
        return self.config is not None

    def wants(self, lead: LeadView) -> bool:
        return grade_rule(lead, self.name)

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        if self.config is None:
            raise PermanentError("teams is not configured (TEAMS_WEBHOOK_URL)")
        body = build_message(lead, lead_url(self.settings, lead))
        response = await send(ctx.http, "POST", self.config.webhook_url.get_secret_value(), json=body)
        outcome = check(response)
        match = _BODY_ERROR.search(response.text)
        if match is not None:
            code = int(match.group(1))
            message = f"teams accepted the request but reported HTTP error {code} in the body"
            if code in (408, 429) or code >= 500:
                raise RetriableError(
                    message,
                    status_code=code,
                    response_excerpt=excerpt(response.text),
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )
            raise PermanentError(message, status_code=code, response_excerpt=excerpt(response.text))
        return Outcome(
            status_code=outcome.status_code,
            response_excerpt=outcome.response_excerpt,
            detail="teams card posted",
        )
