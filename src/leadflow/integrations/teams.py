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

import httpx

from leadflow.config import ChatWebhookSettings
from leadflow.integrations.base import LeadView, PermanentError, RetriableError
from leadflow.integrations.http import excerpt, parse_retry_after
from leadflow.integrations.notify import lead_facts
from leadflow.integrations.webhook_base import ChatWebhookConnector

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"  # what Teams renders on desktop, web and mobile
_BODY_ERROR = re.compile(r"returned HTTP error (\d{3})")


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


class TeamsConnector(ChatWebhookConnector):
    name: ClassVar[str] = "teams"
    erasure_note: ClassVar[str | None] = (
        "Teams messages already posted (name, company, score) are not deleted"
    )
    posted: ClassVar[str] = "teams card posted"

    @property
    def config(self) -> ChatWebhookSettings:
        return self.settings.teams

    def message(self, lead: LeadView, url: str) -> dict[str, Any]:
        return build_message(lead, url)

    def check_body(self, response: httpx.Response) -> None:
        """An old-style connector reports throttling or a failed delivery in a 2xx body."""
        match = _BODY_ERROR.search(response.text)
        if match is None:
            return
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
