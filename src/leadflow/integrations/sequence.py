"""Automated e-mail sequence to the lead (only with consent).

Step 0 acknowledges the request right away; each delivery returns a :class:`FollowUp` for the next
step, so the worker schedules it as its own job: step 1 two days after step 0, step 2 on day five.
The worker rebuilds the lead for every step and :meth:`EmailSequenceConnector.deliver` checks again,
so the sequence stops as soon as the lead leaves ``new``/``contacted`` (a salesperson took over),
consent is withdrawn, or the sequence is switched off.

Replies go to the assigned team member when there is one. Every mail carries a signed, expiring,
single-use unsubscribe link in its footer and in ``List-Unsubscribe`` (with a ``mailto:`` fallback) plus
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), see ``privacy/unsubscribe.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from leadflow.config import SequenceSettings, Settings
from leadflow.integrations.base import (
    Connector,
    DeliveryContext,
    FollowUp,
    LeadView,
    Outcome,
    PermanentError,
    campaign_toggle,
)
from leadflow.integrations.mailer import Mailer, OutgoingEmail, render
from leadflow.integrations.smtp import message_key
from leadflow.kit.clock import utcnow
from leadflow.privacy.unsubscribe import link_for, list_unsubscribe_headers

DAY = 86_400.0
ACTIVE_STATUSES = frozenset({"new", "contacted"})


@dataclass(frozen=True, slots=True)
class Step:
    template: str
    day: int  # days after step 0


STEPS: tuple[Step, ...] = (Step("sequence_0", 0), Step("sequence_1", 2), Step("sequence_2", 5))


def step_of(payload: dict[str, Any]) -> int:
    step = payload.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise PermanentError(f"invalid sequence step {step!r}")
    return step


def follow_up_after(step: int) -> FollowUp | None:
    """The job for the step after ``step``, or None after the last one."""
    following = step + 1
    if following >= len(STEPS):
        return None
    delay = (STEPS[following].day - STEPS[step].day) * DAY
    return FollowUp(delay_seconds=delay, payload={"step": following}, key=f"step{following}")


class EmailSequenceConnector(Connector):
    name: ClassVar[str] = "sequence"
    max_attempts: ClassVar[int] = 6
    needs_consent: ClassVar[bool] = True
    shares_data: ClassVar[bool] = False  # mails come from us
    erasure_note: ClassVar[str | None] = (
        "the e-mail sequence stops: its pending steps are deleted with the leads; mails already sent stay "
        "in the recipient's mailbox"
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config: SequenceSettings = settings.sequence

    def configured(self) -> bool:
        # Credentials only. SEQUENCE_ENABLED=false is a switch checked by wants() and deliver(): steps
        # already queued then end quietly instead of dead-lettering as "not configured".
        return Mailer(self.settings).configured()

    def stop_reason(self, lead: LeadView) -> str | None:
        """Why this lead must not get (more of) the sequence; None when it may."""
        if not self.config.enabled:
            return "sequence disabled"
        if not lead.consent_given:
            return "no consent"
        if not lead.email:
            return "no e-mail address"
        if lead.status not in ACTIVE_STATUSES:
            return f"lead status is {lead.status}"
        if campaign_toggle(lead, self.name) is False:
            return "disabled for the campaign"
        return None

    def wants(self, lead: LeadView) -> bool:
        return self.stop_reason(lead) is None

    def compose(self, lead: LeadView, step: int, dedup_key: str) -> OutgoingEmail:
        assignee = lead.assignee
        service = lead.service_interest
        unsubscribe_url = link_for(self.settings, lead.lead_id, utcnow())
        rendered = render(
            STEPS[step].template,
            first_name=lead.first_name or "there",
            service=service,
            topic=service or "our services",
            assignee_name=assignee.name if assignee else None,
            signature=assignee.name if assignee else "The team",
            urgent=lead.urgency_level == "high",
            unsubscribe_url=unsubscribe_url,
        )
        sender = Mailer(self.settings).config.sender
        return OutgoingEmail(
            to=lead.email,
            to_name=lead.full_name or None,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            dedup_key=message_key(lead, f"{dedup_key}#step{step}"),  # unique across installations
            reply_to=assignee.email if assignee else None,
            category=f"lead-sequence-{step}",
            headers=list_unsubscribe_headers(unsubscribe_url, mailto=sender),
        )

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        step = step_of(ctx.payload)
        if step >= len(STEPS):
            return Outcome(detail="sequence finished")
        reason = self.stop_reason(lead)
        if reason is not None:
            return Outcome(detail=f"sequence stopped before step {step}: {reason}")
        sent = await Mailer(self.settings, ctx.http).send(self.compose(lead, step, ctx.dedup_key))
        return Outcome(
            status_code=sent.status_code,
            response_excerpt=sent.response_excerpt,
            external_id=sent.external_id,
            detail=f"sequence step {step} sent",
            follow_up=follow_up_after(step),
        )
