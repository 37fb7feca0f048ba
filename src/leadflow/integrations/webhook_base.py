"""Chat incoming webhooks (Slack, Teams): one secret URL, one message per hot lead.

What differs between the two is the message (Block Kit or an Adaptive Card) and how the vendor reports
a failure; configuration, the grade rule, the POST and the error mapping are here once. The message
carries the lead's name, company and score, never its e-mail or phone: its button links to the lead in
the API, where reads are authorised and audited.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import httpx

from leadflow.config import ChatWebhookSettings, secret_text
from leadflow.integrations.base import Connector, DeliveryContext, LeadView, Outcome, PermanentError
from leadflow.integrations.http import check, send
from leadflow.integrations.notify import grade_rule, lead_url


class ChatWebhookConnector(Connector):
    notifies_owner: ClassVar[bool] = True
    max_attempts: ClassVar[int] = 6
    # Staff notification: no consent needed, nothing handed to a third party for its own use.
    needs_consent: ClassVar[bool] = False
    shares_data: ClassVar[bool] = False
    erasure_note: ClassVar[str | None] = None  # each chat says what stays posted
    posted: ClassVar[str]  # the activity's detail, e.g. "slack message posted"

    @property
    @abstractmethod
    def config(self) -> ChatWebhookSettings:
        """This connector's settings group (``settings.slack``, ``settings.teams``)."""

    @abstractmethod
    def message(self, lead: LeadView, url: str) -> dict[str, Any]:
        """The JSON body posted for ``lead``; ``url`` opens the lead."""

    def check_body(self, response: httpx.Response) -> None:
        """A vendor that reports failures inside a 2xx body raises here (default: nothing to read)."""

    def configured(self) -> bool:
        return secret_text(self.config.webhook_url) is not None

    def wants(self, lead: LeadView) -> bool:
        return grade_rule(lead, self.name)

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        url = secret_text(self.config.webhook_url)
        if url is None:
            raise PermanentError(f"{self.name} is not configured ({self.name.upper()}_WEBHOOK_URL)")
        response = await send(ctx.http, "POST", url, json=self.message(lead, lead_url(self.settings, lead)))
        outcome = check(response)
        self.check_body(response)
        return Outcome(
            status_code=outcome.status_code, response_excerpt=outcome.response_excerpt, detail=self.posted
        )
