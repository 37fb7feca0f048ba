"""Generic outbound webhook: POST each processed lead as JSON to ``WEBHOOK_URL``, signed.

Request::

    POST <WEBHOOK_URL>
    Content-Type: application/json
    X-Leadflow-Event: lead.processed
    X-Leadflow-Delivery: <delivery id: a UUID, the same on every retry, unique across databases>
    X-Leadflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(WEBHOOK_SECRET, "<t>.<raw body>")>

    {"event": "lead.processed", "delivery_id": "...", "lead": {...}}

Receivers should (1) check the signature over the *raw* body with :func:`verify_signature` (it also
refuses timestamps outside a tolerance, which stops replays), and (2) drop a delivery id they have
already processed: a delivery is retried when the receiver is slow or failing, so it can arrive more
than once. Any 2xx is success; 429 and 5xx are retried (``Retry-After`` honoured); other answers,
redirects included, are permanent failures.

The body carries the lead's personal data (the receiver is the operator's own system). It also carries
``consent_given`` and ``do_not_sell`` so a receiver that forwards leads can honour them.

Erasure: when a person is erased, the receiver gets ``X-Leadflow-Event: lead.erased``, signed the same
way, with ``{"event": "lead.erased", "delivery_id", "erased_at", "lead_ids": [...]}`` — the public ids
of the person's leads, no personal data. Receivers delete what they stored under those ids.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from leadflow.config import Settings, WebhookSettings, secret_text, text
from leadflow.integrations.base import (
    Connector,
    DeliveryContext,
    DeliveryError,
    LeadView,
    Outcome,
    PermanentError,
    PrivacySubject,
    campaign_toggle,
)
from leadflow.integrations.http import check, excerpt, redact, send

EVENT = "lead.processed"
ERASED_EVENT = "lead.erased"
SIGNATURE_HEADER = "X-Leadflow-Signature"
DELIVERY_HEADER = "X-Leadflow-Delivery"
EVENT_HEADER = "X-Leadflow-Event"
DEFAULT_TOLERANCE = 300.0


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: str | bytes,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (``t=<ts>,v1=<hex>[,v1=<hex>…]``) signs ``body`` with ``secret``.

    False for a missing or malformed header, a timestamp more than ``tolerance`` seconds from ``now``
    (either way), or no matching ``v1`` signature. Compare against the raw request body, before any
    JSON parsing. Several ``v1`` entries are accepted, so a sender can sign with an old and a new secret
    while the secret is rotated.
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, _as_bytes(body))
    return any(hmac.compare_digest(expected, c) for c in candidates)


def lead_document(lead: LeadView) -> dict[str, Any]:
    return {
        "lead_id": lead.lead_id,
        "created_at": lead.created_at.isoformat(),
        "campaign": {"id": lead.campaign_id, "name": lead.campaign_name},
        "contact": {
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "email": lead.email,
            "phone": lead.phone,
            "company": lead.company,
        },
        "source": lead.source,
        "channel": lead.channel,
        "medium": lead.medium,
        "utm": {
            "source": lead.utm_source,
            "medium": lead.utm_medium,
            "campaign": lead.utm_campaign,
            "term": lead.utm_term,
            "content": lead.utm_content,
        },
        "details": {
            "service_interest": lead.service_interest,
            "urgency": lead.urgency,
            "urgency_level": lead.urgency_level,
            "message": lead.message,
            "budget_range": lead.budget_range,
            "timeline": lead.timeline,
        },
        "scoring": {
            "lead_score": lead.lead_score,
            "lead_grade": lead.lead_grade,
            "qualification_status": lead.qualification_status,
        },
        "status": lead.status,
        "deal_value": str(lead.deal_value) if lead.deal_value is not None else None,
        "assignee": (
            {"name": lead.assignee.name, "email": lead.assignee.email} if lead.assignee is not None else None
        ),
        "geo": {"country": lead.geo_country, "region": lead.geo_region, "city": lead.geo_city},
        "privacy": {
            "consent_given": lead.consent_given,
            "do_not_sell": lead.do_not_sell,
            "regime": lead.privacy_regime,
        },
        "tracking": {"visitor_id": lead.visitor_id, "session_id": lead.session_id},
    }


def delivery_id(lead_uuid: str, event: str = EVENT) -> str:
    """The id of one event about one lead: ``uuid5(namespace=<the lead's UUID>, name=<event>)``.

    The lead's UUID has 74 random bits (version 7: time-ordered, ``kit.ids.uuid7``; version 4 for
    leads stored before), so ids from two Leadflow databases feeding one receiver never collide (the
    internal row ids they used before did: ``deliver:webhook:42`` existed in both, and the receiver
    dropped the second as a repeat). Derived, not stored: every retry and replay of the
    delivery sends the same id.
    """
    return str(uuid.uuid5(uuid.UUID(lead_uuid), event))


def erased_delivery_id(lead_ids: tuple[str, ...]) -> str:
    """The id of a ``lead.erased`` event: derived from the erased public lead ids (random, so unique
    across databases), the same on every retry of the erasure job."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"leadflow:{ERASED_EVENT}:{','.join(sorted(lead_ids))}"))


def body_for(lead: LeadView, delivery_id: str) -> bytes:
    document = {"event": EVENT, "delivery_id": delivery_id, "lead": lead_document(lead)}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookConnector(Connector):
    name: ClassVar[str] = "webhook"
    max_attempts: ClassVar[int] = 8
    needs_consent: ClassVar[bool] = False
    shares_data: ClassVar[bool] = True
    counts_as_sync: ClassVar[bool] = True

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings)
        self.config: WebhookSettings = settings.webhook
        self._clock = clock

    def configured(self) -> bool:
        return text(self.config.url) is not None and secret_text(self.config.secret) is not None

    def wants(self, lead: LeadView) -> bool:
        return campaign_toggle(lead, self.name) is not False

    async def _post(
        self, ctx: DeliveryContext, event: str, delivery: str, body: bytes, pii: tuple[str | None, ...]
    ) -> Outcome:
        url = text(self.config.url)
        secret = secret_text(self.config.secret)
        if url is None or secret is None:
            raise PermanentError("the webhook is not configured (WEBHOOK_URL / WEBHOOK_SECRET)")
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Leadflow-Webhook/1",
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery,
            SIGNATURE_HEADER: signature_header(secret, body, timestamp),
        }
        response = await send(ctx.http, "POST", url, content=body, headers=headers)
        # Some receivers echo the body back: keep the lead's personal data out of the job record.
        answer = excerpt(redact(response.text, *pii), 200)
        try:
            check(response)
        except DeliveryError as exc:
            exc.response_excerpt = answer
            raise
        return Outcome(
            status_code=response.status_code,
            response_excerpt=answer,
            detail=f"webhook {event} delivered ({response.status_code})",
        )

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        pii = (lead.email, lead.phone, lead.first_name, lead.last_name, lead.company, lead.message)
        delivery = delivery_id(lead.uuid)
        return await self._post(ctx, EVENT, delivery, body_for(lead, delivery), pii)

    async def erase(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome:
        """Tell the receiver to delete the person's leads (``lead.erased``, lead ids only)."""
        if not subject.lead_ids:
            return Outcome(detail="no leads to report as erased")
        delivery = erased_delivery_id(subject.lead_ids)
        document = {
            "event": ERASED_EVENT,
            "delivery_id": delivery,
            "erased_at": datetime.fromtimestamp(self._clock(), UTC).isoformat(),
            "lead_ids": list(subject.lead_ids),
        }
        body = json.dumps(document, separators=(",", ":")).encode()
        return await self._post(ctx, ERASED_EVENT, delivery, body, (subject.email,))
