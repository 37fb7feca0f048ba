"""Twilio SMS for high-urgency leads, texted to the assignee (or ``SMS_ALERT_TO``).

``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth (AccountSid:
AuthToken) and a form body ``To``/``From``/``Body``; Twilio answers ``201`` with the message resource.
The text is at most 320 characters (two GSM-7 segments) and names the lead, company, service, grade
and a link, never the lead's e-mail or phone: lead values are scrubbed of anything that looks like an
address or a phone number. Twilio echoes the body and numbers in its answers, so only the message sid,
status and error code are kept from them.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from leadflow.config import Settings, TwilioSettings
from leadflow.integrations.base import (
    Connector,
    DeliveryContext,
    DeliveryError,
    LeadView,
    Outcome,
    PermanentError,
    campaign_toggle,
)
from leadflow.integrations.http import check, send
from leadflow.integrations.mailer import redact_emails
from leadflow.integrations.notify import lead_url
from leadflow.kit.text import normalise_phone

MAX_BODY = 320
MAX_LINK = 160  # a longer link would crowd out the text; the lead id is in it anyway
_PHONE_LIKE = re.compile(r"\+?\d[\d\s().\-/]{5,}\d")


def e164(number: str | None, region: str) -> str | None:
    if not number or not number.strip():
        return None
    try:
        return normalise_phone(number, region)
    except ValueError:
        return None


def scrub(value: str, lead: LeadView) -> str:
    """A lead value without the lead's (or any) e-mail address or phone number in it."""
    for secret in (lead.email, lead.phone):
        if secret:
            value = re.sub(re.escape(secret), " ", value, flags=re.IGNORECASE)
    value = redact_emails(value).replace("<email>", " ")
    value = _PHONE_LIKE.sub(" ", value)
    return " ".join(value.split())


def sms_body(lead: LeadView, url: str) -> str:
    """``Urgent A-lead (87): John Doe, Acme Corp - Nextcloud Installation. High (Same day). <link>``"""
    name = scrub(lead.full_name, lead) or "(no name)"
    company = scrub(lead.company or "", lead)
    service = scrub(lead.service_interest or "", lead)
    urgency = scrub(lead.urgency or "", lead)
    kind = "Urgent" if lead.urgency_level == "high" else "New"  # a campaign may text every lead
    text = f"{kind} {lead.lead_grade}-lead ({lead.lead_score}): {name}"
    if company:
        text += f", {company}"
    if service:
        text += f" - {service}"
    if urgency:
        text += f". {urgency}"
    text += "."
    link = url if len(url) <= MAX_LINK else ""
    room = MAX_BODY - (len(link) + 1 if link else 0)
    if len(text) > room:
        text = text[: room - 1].rstrip() + "…"
    return f"{text} {link}" if link else text


def twilio_excerpt(text: str | None) -> str | None:
    """Code, status and docs link of a Twilio answer (its message quotes numbers and the body)."""
    if not text:
        return None
    try:
        data: Any = json.loads(text)
    except ValueError:
        return "non-JSON answer"
    if not isinstance(data, dict):
        return "unexpected answer"
    keep = {k: data.get(k) for k in ("code", "status", "more_info", "sid") if data.get(k) is not None}
    return json.dumps(keep)


class TwilioSmsConnector(Connector):
    notifies_owner: ClassVar[bool] = True
    name: ClassVar[str] = "sms"
    max_attempts: ClassVar[int] = 4  # an alert that arrives hours late is no longer worth a retry
    # Staff notification: no consent needed, nothing handed to a third party for its own use.
    needs_consent: ClassVar[bool] = False
    shares_data: ClassVar[bool] = False
    erasure_note: ClassVar[str | None] = "SMS alerts already sent to staff (name, company) cannot be recalled"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config: TwilioSettings = settings.twilio

    def credentials(self) -> tuple[str, str, str] | None:
        """(account sid, auth token, sender number), or None unless all three are set."""
        config = self.config
        token = config.auth_token.get_secret_value() if config.auth_token is not None else ""
        if not (config.account_sid and config.from_number and token):
            return None
        return config.account_sid, token, config.from_number

    def configured(self) -> bool:
        return self.credentials() is not None

    def recipient(self, lead: LeadView) -> str | None:
        """The assignee's phone, else ``SMS_ALERT_TO``, in E.164; None when neither is usable."""
        region = self.settings.default_phone_region
        if lead.assignee is not None:
            number = e164(lead.assignee.phone, region)
            if number:
                return number
        return e164(self.settings.sms.alert_to, region)

    def wants(self, lead: LeadView) -> bool:
        toggle = campaign_toggle(lead, self.name)
        rule = toggle if toggle is not None else lead.urgency_level == "high"
        return rule and self.recipient(lead) is not None

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        credentials = self.credentials()
        if credentials is None:
            raise PermanentError("sms is not configured (TWILIO_ACCOUNT_SID/AUTH_TOKEN/FROM_NUMBER)")
        sid, token, sender = credentials
        to = self.recipient(lead)
        if to is None:
            raise PermanentError("no phone number to text (assignee phone or SMS_ALERT_TO)")
        link = lead_url(self.settings, lead)
        response = await send(
            ctx.http,
            "POST",
            f"{self.config.base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json",
            data={"To": to, "From": sender, "Body": sms_body(lead, link)},
            auth=(sid, token),
        )
        try:
            outcome = check(response)
        except DeliveryError as exc:
            exc.response_excerpt = twilio_excerpt(response.text)
            raise
        try:
            answer: Any = response.json()
        except ValueError:
            answer = None
        message_sid = answer.get("sid") if isinstance(answer, dict) else None
        return Outcome(
            status_code=outcome.status_code,
            response_excerpt=twilio_excerpt(response.text),
            external_id=message_sid if isinstance(message_sid, str) else None,
            detail="sms sent",
        )
