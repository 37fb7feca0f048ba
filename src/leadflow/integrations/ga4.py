"""Google Analytics 4 Measurement Protocol: one ``generate_lead`` event per lead.

``POST {GA4_BASE_URL}/mp/collect?measurement_id=<G-…>&api_secret=<secret>`` with
``{"client_id", "timestamp_micros", "consent", "events": [{"name": "generate_lead", "params": {...}}]}``.

* ``client_id`` is the visitor id the landing page captured (the browser's analytics id), so the lead
  joins the visitor's session; without one, a stable id derived from the lead id (never from personal
  data) in GA's ``<number>.<seconds>`` shape.
* Params: ``session_id``, ``engagement_time_msec``, ``lead_source``, ``campaign``, ``lead_grade``,
  ``lead_score``, ``service``, ``channel``, traffic source/medium, and ``currency`` + ``value`` when the
  lead has a deal value (currency: the campaign's ``integrations.ga4.currency``, default USD).
* GA4 forbids personal data: names, e-mail, phone, company and the message are never sent, and any
  value that contains an e-mail address or the lead's phone is dropped (UTM tags sometimes carry them).
* Limits from the protocol guide are enforced before sending: parameter names ≤ 40 characters
  (letters, digits, underscores, starting with a letter), values ≤ 100 characters, ≤ 25 parameters.
* ``consent``: ad_user_data / ad_personalization are GRANTED only for a consenting lead that did not opt
  out of selling/sharing. A GDPR-regime lead without consent is not sent at all.

``/mp/collect`` answers 2xx even for malformed events, so a bad event is never reported as an error;
the fake server in the tests checks every event against the limits instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from leadflow.config import Ga4Settings, Settings, secret_text, text
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

EVENT = "generate_lead"
MAX_PARAMS = 25
MAX_NAME = 40
MAX_VALUE = 100
MAX_BACKDATE = timedelta(hours=72)  # older timestamps are dropped by GA4: send those as "now"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
EMAIL_RE = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
DIGITS = re.compile(r"\D")


def client_id(lead: LeadView) -> str:
    if lead.visitor_id and lead.visitor_id.strip():
        return lead.visitor_id.strip()[:MAX_VALUE]
    digest = int.from_bytes(hashlib.sha256(lead.lead_id.encode()).digest()[:4], "big")
    return f"{digest}.{int(lead.created_at.timestamp())}"


def _looks_personal(value: str, lead: LeadView) -> bool:
    if EMAIL_RE.search(value):
        return True
    phone = DIGITS.sub("", lead.phone or "")
    return len(phone) >= 7 and phone in DIGITS.sub("", value)


def event_params(lead: LeadView) -> dict[str, str | int | float]:
    """The event's parameters, within GA4's limits and without personal data."""
    raw: dict[str, str | int | float | None] = {
        "session_id": lead.session_id,
        "engagement_time_msec": 100,
        "lead_source": lead.source,
        "campaign": lead.campaign_id,
        "lead_grade": lead.lead_grade,
        "lead_score": lead.lead_score,
        "service": lead.service_interest,
        "channel": lead.channel,
        "source": lead.utm_source,
        "medium": lead.utm_medium or lead.medium,
    }
    if lead.deal_value is not None:
        currency = lead.integration_settings("ga4").get("currency")
        raw["currency"] = currency.upper() if isinstance(currency, str) and currency.strip() else "USD"
        raw["value"] = float(lead.deal_value)
    params: dict[str, str | int | float] = {}
    for name, value in raw.items():
        if value is None or not NAME_RE.match(name) or len(params) >= MAX_PARAMS:
            continue
        if isinstance(value, str):
            value = value.strip()
            if not value or _looks_personal(value, lead):
                continue
            value = value[:MAX_VALUE]
        params[name] = value
    return params


def payload(lead: LeadView, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    granted = "GRANTED" if lead.consent_given and not lead.do_not_sell else "DENIED"
    body: dict[str, Any] = {
        "client_id": client_id(lead),
        "consent": {"ad_user_data": granted, "ad_personalization": granted},
        "events": [{"name": EVENT, "params": event_params(lead)}],
    }
    if now - MAX_BACKDATE < lead.created_at <= now:
        body["timestamp_micros"] = int(lead.created_at.timestamp() * 1_000_000)
    return body


class Ga4Connector(Connector):
    name: ClassVar[str] = "ga4"
    max_attempts: ClassVar[int] = 4  # an analytics hit is worth little once the 72-hour window closes
    needs_consent: ClassVar[bool] = False  # GDPR leads need it: wants() checks the regime
    shares_data: ClassVar[bool] = True
    counts_as_sync: ClassVar[bool] = True
    # Facts for privacy requests: GA4 holds no personal data from us, so there is nothing to erase.
    erasure_note: ClassVar[str | None] = (
        "GA4 events carry no personal data (no name, e-mail, phone, company or message; a pseudonymous "
        "client id only), so nothing is erased there"
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config: Ga4Settings = settings.ga4

    def configured(self) -> bool:
        return (
            text(self.config.measurement_id) is not None and secret_text(self.config.api_secret) is not None
        )

    def wants(self, lead: LeadView) -> bool:
        if lead.privacy_regime == "gdpr" and not lead.consent_given:
            return False
        return campaign_toggle(lead, self.name) is not False

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        secret = secret_text(self.config.api_secret)
        measurement_id = text(self.config.measurement_id)
        if secret is None or measurement_id is None:
            raise PermanentError("GA4 is not configured (GA4_MEASUREMENT_ID / GA4_API_SECRET)")
        body = payload(lead)
        response = await send(
            ctx.http,
            "POST",
            self.config.base_url.rstrip("/") + "/mp/collect",
            params={"measurement_id": measurement_id, "api_secret": secret},
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            check(response)
        except DeliveryError as exc:
            exc.response_excerpt = None  # nothing useful; the URL carries the secret, the body nothing
            raise
        return Outcome(
            status_code=response.status_code,
            detail=f"GA4 {EVENT} event sent ({len(body['events'][0]['params'])} params)",
        )
