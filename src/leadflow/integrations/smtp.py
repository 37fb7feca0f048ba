"""E-mail notification to the team member a lead is assigned to (SMTP or SendGrid, see ``mailer``).

Two kinds: the new-lead notification (the fan-out job), and a reminder when the job's payload says
``{"reason": "follow_up_due"}`` (queued by the scheduler when a lead's follow-up date has passed).

The message has the same summary as the chat notifications (name, company, score/grade, service,
urgency, campaign) plus budget and timeline, and a link to the lead. The lead's e-mail address, phone
and message are not copied into the mail: they are read through the link, where access is
authorised and audited.
"""

from __future__ import annotations

from typing import ClassVar

from leadflow.integrations.base import (
    Connector,
    DeliveryContext,
    LeadView,
    Outcome,
    PermanentError,
    campaign_toggle,
)
from leadflow.integrations.mailer import Mailer, OutgoingEmail, render
from leadflow.integrations.notify import lead_facts, lead_url

REMINDER = "follow_up_due"  # payload reason used by the pipeline scheduler
# RFC 3834: tell auto-responders (out-of-office) not to answer; Exchange honours the second header.
AUTOMATED_HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}


def message_key(lead: LeadView, dedup_key: str) -> str:
    """What the mail's ids derive from: the lead's random UUID and the job's dedup key.

    The dedup key alone (``deliver:email:<row id>``, ``reminder:<row id>:<date>``) names an internal
    row id, which every installation has: two installations sending from one domain gave different
    leads the same ``Message-ID``, and mail systems drop a message whose id they have seen. The UUID
    makes it unique across databases; both parts are stored, so every retry sends the same ids.
    """
    return f"{lead.uuid}:{dedup_key}"


class EmailNotificationConnector(Connector):
    notifies_owner: ClassVar[bool] = True
    name: ClassVar[str] = "email"
    max_attempts: ClassVar[int] = 8
    # Staff notification: no consent needed, nothing handed to a third party for its own use.
    needs_consent: ClassVar[bool] = False
    shares_data: ClassVar[bool] = False
    erasure_note: ClassVar[str | None] = "notification e-mails already sent to staff cannot be recalled"

    def configured(self) -> bool:
        return Mailer(self.settings).configured()

    def wants(self, lead: LeadView) -> bool:
        if lead.assignee is None or not lead.assignee.email:
            return False
        return campaign_toggle(lead, self.name) is not False

    def compose(self, lead: LeadView, dedup_key: str, reason: str | None = None) -> OutgoingEmail:
        """The message; its ``Message-ID`` / ``X-Leadflow-Dedup`` come from :func:`message_key`."""
        assignee = lead.assignee
        if assignee is None:
            raise PermanentError("the lead has no assignee to notify")
        rendered = render(
            "reminder" if reason == REMINDER else "notification",
            lead=lead,
            assignee=assignee,
            facts=lead_facts(lead),
            url=lead_url(self.settings, lead),
        )
        return OutgoingEmail(
            to=assignee.email,
            to_name=assignee.name,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            dedup_key=message_key(lead, dedup_key),
            category="lead-reminder" if reason == REMINDER else "lead-notification",
            headers=AUTOMATED_HEADERS,
        )

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        if lead.assignee is None or not lead.assignee.email:
            # Unassigned since the job was queued: nobody to tell, and no retry changes that.
            return Outcome(detail="no assignee; nothing sent")
        reason = ctx.payload.get("reason")
        message = self.compose(lead, ctx.dedup_key, reason if isinstance(reason, str) else None)
        mailer = Mailer(self.settings, ctx.http)
        sent = await mailer.send(message)
        kind = "reminder" if reason == REMINDER else "notification"
        return Outcome(
            status_code=sent.status_code,
            response_excerpt=sent.response_excerpt,
            external_id=sent.external_id,
            detail=f"{kind} e-mail sent to the assignee via {mailer.config.transport}",
        )
