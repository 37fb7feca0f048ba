"""The capture rules, pure: no I/O, no clock, no database (DESIGN.md §4 rule 4).

Everything that decides what happens to a submitted lead lives here, so that a change to a capture
rule is a change to this file:

* the request checks that need no database: bot signals (:func:`bot_reason`), the campaign's state
  and dates (:func:`campaign_closed`), origin and token (:func:`campaign_refusal`);
* :func:`prepare`: the lead's stored values (normal forms, channel, encryption) and its score input;
* :func:`plan_batch`: for a batch of prepared leads and what the store read about them (earlier leads
  of the same people, visitors seen before, leads holding the same idempotency keys), each one's
  outcome (created, duplicate, replay, key conflict) and the new leads' rows, scored;
* :func:`follow_up_rows`: the ``created`` / ``duplicate_submission`` / ``previously_erased`` activities
  and the outbox job of the planned leads, once they have ids (:func:`process_job_row`);
* :func:`claim_keys`: the cross-process claims a batch locks before it reads.

The store (``store.py``) does the reading and writing; the service (``service.py``) runs the batches.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, NamedTuple

from leadflow.campaigns.service import CaptureCampaign
from leadflow.enrichment.email_domain import classify_domain
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.ids import new_lead_ids
from leadflow.kit.text import email_index_form, phone_index_form
from leadflow.leads.activities import Activity
from leadflow.leads.models import OPTIONAL_FIELDS, PII_FIELDS
from leadflow.leads.schemas import CaptureRequest, Contact, LeadDetails
from leadflow.privacy.regions import regime
from leadflow.scoring import rules
from leadflow.scoring.channels import Channel, classify
from leadflow.security.crypto import FieldCipher

RESPONSE_TIMES = {"A": "2 hours", "B": "4 hours", "C": "24 hours", "D": "48 hours"}
# The score is a pure function of its (hashable) input, and most leads share a few inputs.
score = functools.lru_cache(maxsize=4096)(rules.score)


@functools.lru_cache(maxsize=4096)
def _score_returning(inputs: rules.ScoreInput) -> rules.Score:
    """The score of these inputs for a returning visitor (every other input kept as it is)."""
    return rules.score(dataclasses.replace(inputs, returning_visitor=True))


@functools.lru_cache(maxsize=1024)
def _service_catalog(catalog: frozenset[str], campaign_services: tuple[str, ...]) -> frozenset[str]:
    """The services a lead may name: the configured catalog and the campaign's own (per campaign)."""
    return catalog | rules.normalise_catalog(campaign_services)


# -- Request checks -------------------------------------------------------------------------------

BotReason = Literal["honeypot", "too_fast", "disposable"]


def bot_reason(body: CaptureRequest, min_fill_seconds: float, reject_disposable: bool) -> BotReason | None:
    """Why the submission looks automated (honeypot, filled too fast, disposable address), or None."""
    form = body.form_metadata
    if form.honeypot:
        return "honeypot"
    fill = form.fill_time_seconds
    if fill is None and form.started_at is not None and form.timestamp is not None:
        fill = (form.timestamp - form.started_at).total_seconds()
    if fill is not None and fill < min_fill_seconds:
        return "too_fast"
    if reject_disposable and classify_domain(body.contact.email.rsplit("@", 1)[1]) == "disposable":
        return "disposable"
    return None


def bot_refusal(reason: BotReason) -> ApiError:
    if reason == "disposable":
        return ApiError(
            400, "DISPOSABLE_EMAIL", "Disposable e-mail addresses are not accepted", field="contact.email"
        )
    return ApiError(400, "SUBMISSION_REJECTED", "The submission was rejected as automated")


def same_origin(headers: Mapping[str, str]) -> bool:
    """The browser page is one Leadflow served itself (the hosted form ``/f/{id}``): Origin's host
    equals the request's Host. Such a request is allowed whatever the campaign's origins."""
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host or "://" not in origin:
        return False
    scheme, _, netloc = origin.lower().partition("://")
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return netloc.removesuffix(default) == host.lower().removesuffix(default)


TOKEN_REFUSED = "INVALID_CAMPAIGN_TOKEN"  # noqa: S105 - an error code, not a secret


def campaign_closed(status: str, end_date: date | None, today: date) -> str | None:
    """Why a campaign takes no leads, in words a visitor can read, or None when it takes them.

    A campaign takes leads while its status is ``active`` and up to and including its end date
    (calendar days in UTC, the same days analytics count in). The API answers such a refusal with
    409 ``CAMPAIGN_INACTIVE``; the hosted form and the no-JS form show the words.
    """
    if status != "active":
        return f"This campaign is {status} and does not take requests."
    if end_date is not None and today > end_date:
        return f"This campaign ended on {end_date.isoformat()} and no longer takes requests."
    return None


def campaign_refusal(
    campaign: CaptureCampaign | None, headers: Mapping[str, str], today: date | None = None
) -> ApiError | None:
    """Why this campaign does not take this request (unknown, inactive or ended, origin, token), or None.

    ``today`` is the UTC date the end date is compared with (default: the clock's today).
    A wrong or missing campaign token is :data:`TOKEN_REFUSED`: the caller may still accept a bearer
    token with the ingest scope instead (that look-up needs the token store).
    """
    if campaign is None:
        return ApiError(404, "CAMPAIGN_NOT_FOUND", "Unknown campaign", field="campaign_id")
    closed = campaign_closed(campaign.status, campaign.end_date, today or utcnow().date())
    if closed is not None:
        return ApiError(409, "CAMPAIGN_INACTIVE", closed, field="campaign_id")
    if not campaign.origin_ok(headers.get("origin")) and not same_origin(headers):
        return ApiError(403, "ORIGIN_NOT_ALLOWED", "This origin may not submit to this campaign")
    if not campaign.token_ok(headers.get("x-campaign-token")):
        return ApiError(401, TOKEN_REFUSED, "X-Campaign-Token is missing or wrong")
    return None


# -- Preparing one lead -----------------------------------------------------------------------------

# ScoreInput fields only known when the batch is planned (they depend on what is stored).
DECIDED_AT_PLAN = frozenset({"returning_visitor"})


# Which request model holds each optional field (a missing attribute on a pydantic model is a slow
# exception path on the hot path, so each field is read only where it lives).
CONTACT_OPTIONAL = tuple(f for f in OPTIONAL_FIELDS if f in Contact.model_fields)
DETAIL_OPTIONAL = tuple(f for f in OPTIONAL_FIELDS if f in LeadDetails.model_fields)
if set(CONTACT_OPTIONAL) | set(DETAIL_OPTIONAL) != set(
    OPTIONAL_FIELDS
):  # pragma: no cover - import-time check
    raise RuntimeError("every optional lead field must be a field of Contact or LeadDetails")


def score_fields(
    body: CaptureRequest, campaign: CaptureCampaign, catalog: frozenset[str], channel: Channel
) -> dict[str, Any]:
    """The one mapping from a capture request to the scoring inputs (every ScoreInput field but
    :data:`DECIDED_AT_PLAN`; a test fails when a field is missing, so none falls back to its default)."""
    contact, details, tracking = body.contact, body.lead_details, body.tracking
    return {
        "email_kind": classify_domain(contact.email.rsplit("@", 1)[1]),
        "phone": contact.phone is not None,
        "company": contact.company is not None,
        "service_interest": details.service_interest,
        "urgency": details.urgency,
        "budget_range": details.budget_range,
        "filled_optional": frozenset(
            [f for f in CONTACT_OPTIONAL if getattr(contact, f)]
            + [f for f in DETAIL_OPTIONAL if getattr(details, f)]
        ),
        "time_on_page_seconds": tracking.time_on_page_seconds,
        "channel": channel.name,
        "service_catalog": _service_catalog(catalog, campaign.services),
    }


@dataclass(slots=True)
class PreparedLead:
    campaign: CaptureCampaign
    values: dict[str, Any]
    email_hash: str
    score_input: rules.ScoreInput  # returning_visitor still False: decided by plan_batch
    returning_hint: bool
    idempotency_key: str | None
    tracking_enabled: bool
    created_at: datetime | None = None  # only imports and the demo back-date a lead
    lead_ids: tuple[str, str] | None = None  # (uuid, public id) given before storing: spooled leads

    def __reduce__(self) -> tuple[type[PreparedLead], tuple[Any, ...]]:
        """Pickled on the way to the SQLite writer process: the fields in order (see
        :meth:`~leadflow.scoring.rules.ScoreInput.__reduce__`)."""
        return (
            PreparedLead,
            (
                self.campaign,
                self.values,
                self.email_hash,
                self.score_input,
                self.returning_hint,
                self.idempotency_key,
                self.tracking_enabled,
                self.created_at,
                self.lead_ids,
            ),
        )

    def scored(self, returning: bool) -> rules.Score:
        """The lead's score once it is known whether the visitor is returning."""
        return _score_returning(self.score_input) if returning else score(self.score_input)


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    kind: Literal["created", "duplicate", "replay", "key_conflict", "spooled"]
    public_id: str
    grade: str
    tracking_enabled: bool

    def __reduce__(self) -> tuple[type[CaptureOutcome], tuple[Any, ...]]:
        """Pickled back from the SQLite writer process, one per lead (see :meth:`PreparedLead.__reduce__`)."""
        return (CaptureOutcome, (self.kind, self.public_id, self.grade, self.tracking_enabled))


def prepare(
    body: CaptureRequest,
    campaign: CaptureCampaign,
    cipher: FieldCipher,
    catalog: frozenset[str],
    client_ip: str | None,
    idempotency_key: str | None,
    now: datetime | None = None,
) -> PreparedLead:
    """Everything about a lead that needs no database: normal forms, channel, encryption, score input.

    ``now`` is the consent time of a lead with consent (default: the clock's now)."""
    contact, details, tracking, form = body.contact, body.lead_details, body.tracking, body.form_metadata
    channel = classify(
        tracking.utm_source,
        tracking.utm_medium,
        tracking.utm_campaign,
        tracking.referrer_url,
        tracking.landing_page_url,
    )
    score_input = rules.ScoreInput(**score_fields(body, campaign, catalog, channel))
    submitted = form.timestamp
    if submitted is not None and submitted.tzinfo is None:
        submitted = submitted.replace(tzinfo=UTC)
    enc = cipher.encrypter(len(PII_FIELDS))  # the lead's nonces in one call to the OS
    # First-touch UTM has no column: it starts the lead's enrichment JSON, which the worker extends
    # (lead.process in leads/tasks.py keeps it). Every row carries the key, so a batch's INSERT has one shape.
    touch = tracking.first_touch.stored() if tracking.first_touch else None
    values: dict[str, Any] = {
        "first_name": enc(contact.first_name, "first_name"),
        "last_name": enc(contact.last_name, "last_name"),
        "email": enc(contact.email, "email"),
        "email_domain": contact.email.rsplit("@", 1)[1],
        "phone": enc(contact.phone, "phone"),
        "phone_hash": cipher.blind_index(phone_index_form(contact.phone)) if contact.phone else None,
        "company": enc(contact.company, "company"),
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "source": body.source,
        "medium": channel.medium,
        "channel": channel.name,
        "utm_source": tracking.utm_source,
        "utm_medium": tracking.utm_medium,
        "utm_campaign": tracking.utm_campaign,
        "utm_term": tracking.utm_term,
        "utm_content": tracking.utm_content,
        "service_interest": details.service_interest,
        "urgency": details.urgency,
        "message": enc(details.message, "message"),
        "budget_range": details.budget_range,
        "timeline": details.timeline,
        "visitor_id": tracking.visitor_id,
        "session_id": tracking.session_id,
        "ip_address": enc(tracking.ip_address or client_ip, "ip_address"),
        "user_agent": enc(tracking.user_agent, "user_agent"),
        "referrer_url": tracking.referrer_url,
        "landing_page_url": tracking.landing_page_url,
        "time_on_page_seconds": tracking.time_on_page_seconds,
        "visit_count": tracking.visit_count,
        "form_type": form.form_type,
        "form_version": form.form_version,
        "consent_given": form.consent_given,
        "consent_at": (now or utcnow()) if form.consent_given else None,
        "consent_notice_version": form.consent_notice_version if form.consent_given else None,
        "do_not_sell": form.do_not_sell,
        "privacy_regime": regime(contact.country, contact.region) if contact.country else None,
        "email_kind": score_input.email_kind,
        "submitted_at": submitted,
        "status": "new",
        "idempotency_key": idempotency_key,
        "enrichment": {"first_touch": touch} if touch else None,
    }
    return PreparedLead(
        campaign=campaign,
        values=values,
        email_hash=cipher.blind_index(email_index_form(contact.email)),
        score_input=score_input,
        returning_hint=bool(tracking.returning_visitor) or (tracking.visit_count or 0) > 1,
        idempotency_key=idempotency_key,
        tracking_enabled=bool(tracking.visitor_id or tracking.session_id),
    )


def claim_keys(items: Sequence[PreparedLead]) -> list[str]:
    """The capture claims of a batch: one per (campaign, person) and per (campaign, idempotency key).

    SHA-256 over the campaign id and the blind index (or the key): fixed length, no personal data.
    """
    keys: set[str] = set()
    for item in items:
        campaign = item.campaign.id
        keys.add(hashlib.sha256(f"p\0{campaign}\0{item.email_hash}".encode()).hexdigest())
        if item.idempotency_key:
            keys.add(hashlib.sha256(f"k\0{campaign}\0{item.idempotency_key}".encode()).hexdigest())
    return sorted(keys)


# -- Planning a batch -------------------------------------------------------------------------------


class EarlierLead(NamedTuple):
    """A stored lead of a person in the batch (the de-duplication read)."""

    id: int
    public_id: str
    campaign_id: str
    email_hash: str
    created_at: datetime


class KeyedLead(NamedTuple):
    """A stored lead holding an idempotency key used in the batch."""

    id: int
    public_id: str
    campaign_id: str
    idempotency_key: str
    email_hash: str
    lead_grade: str
    visitor_id: str | None
    session_id: str | None


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store read, inside the batch's transaction, about the batch's people and keys."""

    earlier: Sequence[EarlierLead]  # newest first
    visitors: set[str]
    keyed: Sequence[KeyedLead]


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings the plan depends on."""

    dedup_window: timedelta
    qualifying_grades: frozenset[str]


@dataclass(slots=True)
class _Known:
    """What the batch knows about one (campaign, person): their newest lead so far."""

    lead_id: int | None  # None while the lead is only in this batch
    public_id: str
    created_at: datetime
    position: int | None = None  # its place in the batch, for a lead of this batch


@dataclass(slots=True)
class Plan:
    outcomes: list[CaptureOutcome | None] = field(default_factory=list)
    lead_rows: list[dict[str, Any]] = field(default_factory=list)
    lead_index: list[int] = field(default_factory=list)  # position in the batch of each lead row
    # (lead id, or None and the batch position of a lead written in this batch, metadata)
    duplicate_activities: list[tuple[int | None, int | None, dict[str, Any]]] = field(default_factory=list)

    def answers(self) -> list[CaptureOutcome]:
        return [o for o in self.outcomes if o is not None]


def plan_batch(
    items: Sequence[PreparedLead],
    stored: Stored,
    rules_: Rules,
    now: datetime,
    breakdown: Callable[[rules.Score], Any] = rules.Score.breakdown,
    *,
    spooled: bool = False,
) -> Plan:
    """Decide each item's fate (replay, conflict, duplicate, new) and build the new leads' rows.

    ``breakdown`` gives the stored form of a score's breakdown (a dict, or the store's cached JSON
    text). ``spooled``: the items were acknowledged from the spool, so each becomes a lead: a duplicate
    is stored and linked to the earlier lead, and a key another lead took meanwhile is left off.
    """
    plan = Plan()
    newest: dict[tuple[str, str], _Known] = {}
    for seen in stored.earlier:  # newest first: keep the first seen per (campaign, person)
        newest.setdefault(
            (seen.campaign_id, seen.email_hash), _Known(seen.id, seen.public_id, seen.created_at)
        )
    by_key = {(r.campaign_id, r.idempotency_key): r for r in stored.keyed}
    batch_keys: dict[tuple[str, str], tuple[str, str, str, bool]] = {}
    seen_visitors = set(stored.visitors)
    horizon = now - rules_.dedup_window
    for position, item in enumerate(items):
        person = (item.campaign.id, item.email_hash)
        key = (item.campaign.id, item.idempotency_key) if item.idempotency_key else None
        drop_key = spooled and key is not None and (key in by_key or key in batch_keys)
        if drop_key:
            key = None  # the key went to another lead meanwhile: this one is stored without it
        if key is not None:
            hit = by_key.get(key)
            if hit is not None:
                kind: Literal["replay", "key_conflict"] = (
                    "replay" if hit.email_hash == item.email_hash else "key_conflict"
                )
                tracked = bool(hit.visitor_id or hit.session_id)
                plan.outcomes.append(CaptureOutcome(kind, hit.public_id, hit.lead_grade, tracked))
                continue
            if key in batch_keys:
                public_id, email_hash, grade, tracked = batch_keys[key]
                kind = "replay" if email_hash == item.email_hash else "key_conflict"
                plan.outcomes.append(CaptureOutcome(kind, public_id, grade, tracked))
                continue
        known = newest.get(person)
        recent = known is not None and known.created_at >= horizon
        if recent and known is not None:
            if spooled:
                spooled_id = (item.lead_ids or ("", ""))[1]
                meta = {"source": item.values["source"], "spooled_lead_id": spooled_id}
                plan.duplicate_activities.append((known.lead_id, known.position, meta))
            else:
                plan.outcomes.append(CaptureOutcome("duplicate", known.public_id, "", item.tracking_enabled))
                meta = {
                    "source": item.values["source"],
                    "channel": item.values["channel"],
                    "utm_campaign": item.values["utm_campaign"],
                    "utm_content": item.values["utm_content"],
                }
                plan.duplicate_activities.append((known.lead_id, known.position, meta))
                continue
        visitor = item.values["visitor_id"]
        returning = item.returning_hint or (visitor is not None and visitor in seen_visitors)
        if visitor:
            seen_visitors.add(visitor)
        result = item.scored(returning)
        uuid, public_id = item.lead_ids or new_lead_ids()
        row = dict(item.values)
        if drop_key:
            row["idempotency_key"] = None
        qualified = result.grade in rules_.qualifying_grades
        row.update(
            uuid=uuid,
            public_id=public_id,
            email_hash=item.email_hash,
            returning_visitor=returning,
            lead_score=result.total,
            lead_grade=result.grade,
            score_breakdown=breakdown(result),
            qualification_status="marketing_qualified" if qualified else "unqualified",
            previous_lead_id=known.lead_id if known is not None else None,
            created_at=item.created_at or now,
            updated_at=item.created_at or now,
        )
        plan.lead_index.append(position)
        plan.lead_rows.append(row)
        newest[person] = _Known(None, public_id, now, position)
        if key is not None:
            batch_keys[key] = (public_id, item.email_hash, result.grade, item.tracking_enabled)
        plan.outcomes.append(CaptureOutcome("created", public_id, result.grade, item.tracking_enabled))
    return plan


def spooled_outcome(item: PreparedLead, public_id: str) -> CaptureOutcome:
    """The answer to a lead accepted into the spool (its grade as if it were stored now)."""
    return CaptureOutcome("spooled", public_id, item.scored(item.returning_hint).grade, item.tracking_enabled)


# -- Rows that follow the leads -----------------------------------------------------------------------


def process_job_row(lead_id: int, public_id: str, now: datetime) -> dict[str, Any]:
    """The outbox job of a captured lead (``lead.process``): the one place capture creates a job,
    through the one way to create jobs (``JobKind.new``)."""
    from leadflow.leads.tasks import process_job  # leads.tasks imports leads.service, which imports capture

    return process_job(lead_id, public_id, now).row(now)


def follow_up_rows(
    plan: Plan, ids: Sequence[int], erased: set[str], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The activity and outbox job rows of a planned batch, once its leads have ids."""
    activity_rows: list[dict[str, Any]] = []
    job_rows: list[dict[str, Any]] = []
    id_at = dict(zip(plan.lead_index, ids, strict=True))
    for row, lead_id in zip(plan.lead_rows, ids, strict=True):
        if row["email_hash"] in erased:
            description = "This person asked for erasure before; check consent before contacting"
            activity_rows.append(Activity(lead_id, "previously_erased", description, now, details=None).row())
        meta = {
            "score": row["lead_score"],
            "grade": row["lead_grade"],
            "channel": row["channel"],
            "previous_lead_id": row["previous_lead_id"],
        }
        description = f"Lead captured from {row['source']} ({row['channel']})"
        activity_rows.append(Activity(lead_id, "created", description, now, details=meta).row())
        job_rows.append(process_job_row(lead_id, row["public_id"], now))
    for known_id, position, meta in plan.duplicate_activities:
        lead_id = known_id if known_id is not None else id_at[position or 0]
        description = "The same person submitted this campaign's form again"
        activity_rows.append(Activity(lead_id, "duplicate_submission", description, now, details=meta).row())
    return activity_rows, job_rows
