"""Hosted-form settings of a campaign, and the mapping of an HTML form post to the capture request.

An HTML form post (``application/x-www-form-urlencoded``) is turned into the JSON body of
``POST /v1/api/leads`` and handed to the same capture function; nothing here validates a lead.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import repository as campaigns_repo
from leadflow.kit.clock import utcnow

CONTACT_FIELDS = ("firstName", "lastName", "email", "phone", "company")
DETAIL_FIELDS = ("service_interest", "urgency", "message", "budget_range", "timeline")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# Form inputs that are not lead data: campaign token, idempotency key, honeypot, form shown at.
TOKEN_FIELD, KEY_FIELD, HONEYPOT_FIELD, STARTED_FIELD, FORM_TYPE_FIELD = (
    "lf_token",
    "lf_key",
    "lf_hp",
    "lf_started",
    "lf_form",
)
MAX_FIELDS = 100
# What a stored origin must look like to be written into a CSP header (the campaign schema only
# accepts such values; this guards rows written before it did): one source, ASCII, no separators.
_CSP_ORIGIN = re.compile(r"https?://[a-z0-9_.-]+(:[0-9]{1,5})?|https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?")

# Labels of the form inputs, for error pages and the hosted form; the API's field path's last part.
LABELS = {
    "firstName": "First name",
    "lastName": "Last name",
    "email": "Email",
    "phone": "Phone",
    "company": "Company",
    "service_interest": "Service",
    "urgency": "How urgent is it?",
    "message": "Message",
    "budget_range": "Budget",
    "timeline": "Timeline",
    "consent_given": "Consent",
    "campaign_id": "Campaign",
}
_ALIASES = {"first_name": "firstName", "last_name": "lastName"}

URGENCY_CHOICES = ("High (Same day)", "Medium (This week)", "Low (This month)")
BUDGET_CHOICES = ("Under $1,000", "$1,000-$5,000", "$5,000-$10,000", "Over $10,000")
TIMELINE_CHOICES = ("Immediately", "Within 2 weeks", "Within a month", "Just researching")


def input_name(field: str | None) -> str | None:
    """The form input an API error's ``field`` ("contact.email") is about ("email")."""
    if not field:
        return None
    last = field.rsplit(".", 1)[-1]
    return _ALIASES.get(last, last)


@dataclass(frozen=True, slots=True)
class FormPost:
    """An HTML form post, as the capture endpoint's JSON body and headers."""

    body: dict[str, object]
    token: str | None
    idempotency_key: str | None


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("", "false", "0", "no", "off")


def form_post(campaign_id: str, pairs: Iterable[tuple[str, str]], now: datetime | None = None) -> FormPost:
    """The capture request for the posted inputs (the first value of a repeated name counts)."""
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    now = now or utcnow()

    def pick(names: Iterable[str]) -> dict[str, str]:
        return {n: fields[n].strip() for n in names if fields.get(n, "").strip()}

    metadata: dict[str, object] = {
        "form_type": fields.get(FORM_TYPE_FIELD, "").strip() or "html",
        "form_version": "html/1",
        "consent_given": "consent_given" in fields and _truthy(fields["consent_given"]),
        "timestamp": now.isoformat(),
    }
    if fields.get("consent_notice_version", "").strip():
        metadata["consent_notice_version"] = fields["consent_notice_version"].strip()
    if fields.get(HONEYPOT_FIELD, "").strip():
        metadata["honeypot"] = fields[HONEYPOT_FIELD]
    started = _parse_time(fields.get(STARTED_FIELD, ""))
    if started is not None and started <= now:
        metadata["fill_time_seconds"] = min((now - started).total_seconds(), 86400.0)
    body: dict[str, object] = {
        "campaign_id": campaign_id,
        "source": fields.get("source", "").strip() or "landing-page",
        "contact": pick(CONTACT_FIELDS),
        "lead_details": pick(DETAIL_FIELDS),
        "tracking": pick(UTM_FIELDS),
        "form_metadata": metadata,
    }
    return FormPost(
        body=body,
        token=fields.get(TOKEN_FIELD, "").strip() or None,
        idempotency_key=fields.get(KEY_FIELD, "").strip() or None,
    )


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class HostedForm:
    """What the hosted form page and the no-JS endpoint's answer need from the campaign."""

    campaign_id: str
    name: str
    status: str
    has_token: bool
    title: str
    intro: str | None
    services: tuple[str, ...]
    thank_you_url: str | None
    consent_text: str
    privacy_notice_url: str | None
    privacy_notice_version: str | None
    frame_ancestors: tuple[str, ...]
    end_date: date | None = None  # the last day (UTC) the form takes requests

    def frame_ancestors_csp(self) -> str:
        return " ".join(("'self'", *(o for o in self.frame_ancestors if _CSP_ORIGIN.fullmatch(o))))

    def form_action_csp(self) -> str:
        """CSP form-action: Leadflow itself and, for the redirect after a post, the thank-you origin."""
        sources = ["'self'"]
        if self.thank_you_url:
            try:
                parts = urlsplit(self.thank_you_url)
            except ValueError:
                return "'self'"
            origin = f"{parts.scheme}://{parts.netloc}"
            if _CSP_ORIGIN.fullmatch(origin):
                sources.append(origin)
        return " ".join(sources)


async def hosted_form(conn: AsyncConnection, campaign_id: str) -> HostedForm | None:
    row = await campaigns_repo.get(conn, campaign_id)
    if row is None:
        return None
    return HostedForm(
        campaign_id=row.id,
        name=row.name,
        status=row.status,
        end_date=row.end_date,
        has_token=row.token_hash is not None,
        title=row.form_title or row.name,
        intro=row.form_intro,
        services=tuple(row.services or ()),
        thank_you_url=row.thank_you_url,
        consent_text=row.consent_text or f"I agree that {row.name} may contact me about my request.",
        privacy_notice_url=row.privacy_notice_url,
        privacy_notice_version=row.privacy_notice_version,
        frame_ancestors=tuple(row.frame_ancestors or ()),
    )


def new_form_key() -> str:
    """The Idempotency-Key a hosted form page carries: a resubmitted page stores one lead."""
    return "form_" + secrets.token_urlsafe(18)
