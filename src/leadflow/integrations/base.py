"""The one base class every connector implements, its facts (traits), and what it is given.

A connector turns a processed lead into one delivery (a Slack message, a CRM upsert, an SMS...).
It raises :class:`RetriableError` for failures worth retrying (timeouts, 429, 5xx; ``retry_after`` from
the vendor's ``Retry-After``) and :class:`PermanentError` for contract errors (4xx) that no retry fixes.
The worker records every attempt, backs off, and dead-letters after the connector's attempt limit.

Facts about a connector are class attributes on :class:`Connector` (with safe defaults); the optional
capabilities of privacy requests are runtime-checkable Protocols (:class:`Erases`,
:class:`Unsubscribes`) that the privacy code finds with ``isinstance``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx

from leadflow.config import Settings


class DeliveryError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        response_excerpt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response_excerpt = response_excerpt


class RetriableError(DeliveryError):
    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        response_excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, response_excerpt=response_excerpt)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    pass


@dataclass(frozen=True, slots=True)
class FollowUp:
    """Schedule the same connector again later with this payload (e-mail sequences)."""

    delay_seconds: float
    payload: dict[str, Any]
    key: str  # appended to the job's dedup key, so each step is enqueued once


@dataclass(frozen=True, slots=True)
class Outcome:
    """A successful delivery: what the vendor answered, and its id for the thing created, if any."""

    status_code: int | None = None
    response_excerpt: str | None = None
    external_id: str | None = None
    detail: str | None = None  # short, no personal data: goes into the lead's activity
    follow_up: FollowUp | None = None


@dataclass(frozen=True, slots=True)
class Assignee:
    name: str
    email: str
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class LeadView:
    """A processed lead, decrypted, as connectors see it (built by the worker for each delivery)."""

    id: int
    lead_id: str  # public id, lead_ + 12 hex
    uuid: str  # the lead's random UUID (leads.uuid): unique across databases
    first_name: str
    last_name: str
    email: str
    phone: str | None
    company: str | None
    campaign_id: str
    campaign_name: str
    source: str
    channel: str | None
    medium: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    service_interest: str | None
    urgency: str | None
    urgency_level: str | None  # high | medium | low | None
    message: str | None
    budget_range: str | None
    timeline: str | None
    visitor_id: str | None
    session_id: str | None
    lead_score: int
    lead_grade: str
    qualification_status: str
    status: str
    consent_given: bool
    do_not_sell: bool
    privacy_regime: str | None
    geo_country: str | None
    geo_region: str | None
    geo_city: str | None
    company_domain: str | None
    email_kind: str | None
    deal_value: Decimal | None
    created_at: datetime
    assignee: Assignee | None = None
    campaign_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def integration_settings(self, name: str) -> dict[str, Any]:
        """The campaign's overrides for one connector (``campaigns.settings["integrations"][name]``)."""
        value = (self.campaign_settings.get("integrations") or {}).get(name)
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    settings: Settings
    http: httpx.AsyncClient
    job_id: int
    attempt: int
    # Stable per (lead, connector): vendors that accept one use it to drop repeated deliveries.
    dedup_key: str
    payload: dict[str, Any] = field(default_factory=dict)


class Connector(ABC):
    """One integration: subclass it, set ``name`` and ``max_attempts``, and declare its facts.

    Instances are cheap; the registry builds one per use from settings. The facts below are class
    attributes with safe defaults, read by the code that applies them (privacy policy, fan-out, the
    activity a delivery writes, erasure answers): nothing outside a connector's module lists connectors
    by name, so adding one is its module, one registry line and its tests.
    """

    name: ClassVar[str]
    max_attempts: ClassVar[int]

    # -- facts (DESIGN rule 12) ------------------------------------------------------------------------
    # The two privacy facts default to the strict side: a connector that does not say otherwise gets
    # only leads that consented and did not opt out of sale/sharing.
    # Needs the person's consent (``consent_given``): e-mail marketing, the automated sequence.
    needs_consent: ClassVar[bool] = True
    # Hands the lead to a third party for its own use ("sell or share" under the CCPA): blocked by
    # ``do_not_sell``.
    shares_data: ClassVar[bool] = True
    # A delivery keeps a record in another system in step ("synced" activity) rather than notifying
    # someone ("notification_sent").
    counts_as_sync: ClassVar[bool] = False
    # A delivery tells the team about the lead and who owns it (a chat message, an e-mail or SMS to
    # the assignee): sent again, to the new owner, when a person reassigns the lead.
    notifies_owner: ClassVar[bool] = False
    # A corrected lead (rectification) is delivered again so the tool updates its record.
    resyncs_corrections: ClassVar[bool] = False
    # For a tool that cannot delete (no :class:`Erases`): what the erasure answer says it still holds.
    erasure_note: ClassVar[str | None] = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def configured(self) -> bool:
        """Credentials present. A connector without them is off (never a silent success)."""

    @abstractmethod
    def wants(self, lead: LeadView) -> bool:
        """Whether this lead should get this delivery (grade, urgency, consent, campaign override...)."""

    @abstractmethod
    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class PrivacySubject:
    """A person a connected tool must erase, or stop marketing to (decrypted only inside the job)."""

    email: str
    lead_ids: tuple[str, ...] = ()  # public lead ids (``lead_…``) the person had
    request_id: str | None = None
    # Settings of the campaigns the person's leads came from (connector overrides, e.g. list ids).
    campaign_settings: tuple[dict[str, Any], ...] = ()

    def integration_values(self, name: str, key: str) -> list[Any]:
        """The distinct values campaigns set for ``integrations.<name>.<key>``."""
        found: list[Any] = []
        for settings in self.campaign_settings:
            value = ((settings.get("integrations") or {}).get(name) or {}).get(key)
            if value is not None and value not in found:
                found.append(value)
        return found


@runtime_checkable
class Erases(Protocol):
    """Trait: the tool keeps its own copy of a person and can delete it (right to erasure)."""

    async def erase(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome: ...


@runtime_checkable
class Unsubscribes(Protocol):
    """Trait: the tool sends marketing to a person and can stop it (withdrawn consent, unsubscribe)."""

    async def unsubscribe(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome: ...


def campaign_toggle(lead: LeadView, name: str) -> bool | None:
    """A campaign's explicit on/off for a connector (``{"enabled": false}``), or None when not set."""
    enabled = lead.integration_settings(name).get("enabled")
    return enabled if isinstance(enabled, bool) else None
