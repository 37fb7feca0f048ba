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

from pydantic import BaseModel, ConfigDict, SecretStr

from leadflow.config import Settings
from leadflow.integrations.base import (
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


class TwilioConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_sid: str
    auth_token: SecretStr
    from_number: str
    base_url: str = "https://api.twilio.com"


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


class TwilioSmsConnector:
    name: ClassVar[str] = "sms"
    max_attempts: ClassVar[int] = 4  # an alert that arrives hours late is no longer worth a retry
    erasure_note: ClassVar[str] = "SMS alerts already sent to staff (name, company) cannot be recalled"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        token = settings.twilio_auth_token
        self.config: TwilioConfig | None = None
        if (
            settings.twilio_account_sid
            and settings.twilio_from_number
            and token is not None
            and token.get_secret_value()
        ):
            self.config = TwilioConfig(
                account_sid=settings.twilio_account_sid,
                auth_token=token,
                from_number=settings.twilio_from_number,
                base_url=settings.twilio_base_url,
            )

    def configured(self) -> bool:
        return self.config is not None

    def recipient(self, lead: LeadView) -> str | None:
        """The assignee's phone, else ``SMS_ALERT_TO``, in E.164; None when neither is usable."""
        region = self.settings.default_phone_region
        if lead.assignee is not None:
            number = e164(lead.assignee.phone, region)
            if number:
                return number
        return e164(self.settings.sms_alert_to, region)

    def wants(self, lead: LeadView) -> bool:
        toggle = campaign_toggle(lead, self.name)
        rule = toggle if toggle is not None else lead.urgency_level == "high"
        return rule and self.recipient(lead) is not None

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        config = self.config
        if config is None:
            raise PermanentError("sms is not configured (TWILIO_ACCOUNT_SID/AUTH_TOKEN/FROM_NUMBER)")
        to = self.recipient(lead)
        if to is None:
            raise PermanentError("no phone number to text (assignee phone or SMS_ALERT_TO)")
        link = lead_url(self.settings, lead)
        response = await send(
            ctx.http,
            "POST",
            f"{config.base_url.rstrip('/')}/2010-04-01/Accounts/{config.account_sid}/Messages.json",
            data={"To": to, "From": config.from_number, "Body": sms_body(lead, link)},
            auth=(config.account_sid, config.auth_token.get_secret_value()),
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
        sid = answer.get("sid") if isinstance(answer, dict) else None
        return Outcome(
            status_code=outcome.status_code,
            response_excerpt=twilio_excerpt(response.text),
            external_id=sid if isinstance(sid, str) else None,
            detail="sms sent",
        )
