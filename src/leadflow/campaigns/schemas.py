"""Campaign and analytics bodies."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from leadflow.kit.text import clean_line, clean_text

CampaignType = Literal["service", "product", "consultation", "assessment"]
CampaignStatus = Literal["draft", "active", "paused", "completed"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


_HOST = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _http_parts(value: str, hint: str) -> tuple[str, str, SplitResult]:
    """Scheme, ASCII ``host[:port]`` and the parts of an absolute http(s) URL, or ValueError.

    These values reach response headers (CSP ``frame-ancestors`` / ``form-action``, ``Location``),
    so anything a header cannot carry or that would add a CSP source or directive is refused:
    whitespace and control characters, ``;`` ``,`` and quotes in the host, user info, a bad port.
    An international host is stored in its IDNA (punycode) form, as browsers send it in ``Origin``.
    """
    text = value.strip()
    if any(ch.isspace() or unicodedata.category(ch)[0] in "CZ" for ch in text):
        raise ValueError(hint)
    try:
        parts = urlsplit(text)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii").lower()
    except (ValueError, UnicodeError):
        raise ValueError(hint) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or "@" in parts.netloc or not host:
        raise ValueError(hint)
    if ":" in host:  # an IPv6 literal
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(hint) from None
    elif not _HOST.fullmatch(host):
        raise ValueError(hint)
    return scheme, host if port is None else f"{host}:{port}", parts


def _origin(value: str) -> str:
    hint = "origins look like https://example.com (scheme and host, no path)"
    scheme, netloc, parts = _http_parts(value, hint)
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.strip().endswith(("?", "#")):
        raise ValueError(hint)
    return f"{scheme}://{netloc}"


def _http_url(value: str) -> str:
    scheme, netloc, parts = _http_parts(value, "an absolute http(s) URL, e.g. https://example.com/thanks")
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


class CampaignFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=255, examples=["Nextcloud Installation Q4"])
    description: str | None = Field(None, max_length=5000)
    campaign_type: CampaignType | None = Field(None, examples=["service"])
    status: CampaignStatus | None = Field(None, examples=["active"])
    start_date: date | None = None
    end_date: date | None = None
    budget: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2, examples=[1147.5])
    target_leads: int | None = Field(None, ge=0, le=10_000_000)
    landing_page_url: str | None = Field(None, max_length=2048)
    auto_assign: bool | None = None
    assigned_to: str | None = Field(None, max_length=100)
    notification_emails: list[EmailStr] | None = Field(None, max_length=50)
    allowed_origins: list[str] | None = Field(
        None,
        max_length=50,
        description="Origins allowed to submit from a browser; empty or null allows any origin.",
        examples=[["https://nexlink.website"]],
    )
    services: list[str] | None = Field(
        None,
        max_length=200,
        description="This campaign's service catalog, added to the global SERVICE_CATALOG for scoring.",
        examples=[["Nextcloud Installation"]],
    )

    form_title: str | None = Field(
        None,
        max_length=255,
        description="Hosted form: heading (default: the campaign name)",
        examples=["Get your Nextcloud installed"],
    )
    form_intro: str | None = Field(
        None,
        max_length=2000,
        description="Hosted form: text under the heading",
        examples=["Tell us about your team and we call you back within 2 hours."],
    )
    thank_you_url: str | None = Field(
        None,
        max_length=2048,
        description="Where the hosted form and the no-JS endpoint send the visitor after a submission "
        "(default: a plain thank-you page)",
        examples=["https://nexlink.website/thanks"],
    )
    consent_text: str | None = Field(
        None,
        max_length=2000,
        description="Hosted form: the label of the consent checkbox",
        examples=["I agree that Nexlink may contact me about my request."],
    )
    privacy_notice_url: str | None = Field(
        None,
        max_length=2048,
        description="Hosted form: link to the privacy notice",
        examples=["https://nexlink.website/privacy"],
    )
    privacy_notice_version: str | None = Field(
        None,
        max_length=50,
        description="Version of that notice, stored with each lead as consent_notice_version",
        examples=["2025-09"],
    )
    frame_ancestors: list[str] | None = Field(
        None,
        max_length=50,
        description="Origins that may show the hosted form in an iframe (CSP frame-ancestors); "
        "empty or null: only Leadflow itself.",
        examples=[["https://nexlink.website"]],
    )

    integrations: dict[str, dict[str, Any]] | None = Field(
        None,
        description=(
            'Per-connector overrides for this campaign, e.g. {"slack": {"enabled": false}, '
            '"mailchimp": {"list_id": "abc123"}}. Consent rules cannot be overridden.'
        ),
        examples=[{"slack": {"enabled": False}}],
    )

    @field_validator("integrations")
    @classmethod
    def _integrations(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        if value is None:
            return None
        from leadflow.integrations.registry import ConnectorName

        known = {str(n) for n in ConnectorName}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown connectors {unknown}; known: {sorted(known)}")
        if len(str(value)) > 10_000:
            raise ValueError("integration settings are too large")
        return value

    @field_validator("thank_you_url", "privacy_notice_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("frame_ancestors")
    @classmethod
    def _ancestors(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted({_origin(v) for v in value})

    @field_validator("form_title", "privacy_notice_version", mode="before")
    @classmethod
    def _clean_form_line(cls, value: object) -> object:
        return clean_line(value) if isinstance(value, str) else value

    @field_validator("form_intro", "consent_text", mode="before")
    @classmethod
    def _clean_form_text(cls, value: object) -> object:
        return clean_text(value) if isinstance(value, str) else value

    @field_validator("name", "assigned_to", "landing_page_url", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        return clean_line(value) if isinstance(value, str) else value

    @field_validator("description", mode="before")
    @classmethod
    def _clean_text(cls, value: object) -> object:
        return clean_text(value) if isinstance(value, str) else value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted({_origin(v) for v in value})

    @field_validator("services")
    @classmethod
    def _services(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [clean_line(v) for v in value]
        if any(v is None or len(v) > 100 for v in cleaned):
            raise ValueError("service names are 1-100 characters")
        return [v for v in cleaned if v]

    @model_validator(mode="after")
    def _dates(self) -> CampaignFields:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class CampaignCreate(CampaignFields):
    id: str = Field(pattern=ID_PATTERN, examples=["nextcloud-installation-2025"])
    name: str = Field(min_length=1, max_length=255, examples=["Nextcloud Installation Q4"])
    campaign_type: CampaignType = Field(examples=["service"])
    generate_token: bool = Field(
        False, description="Create an X-Campaign-Token that forms must send; it is shown only once."
    )


class CampaignUpdate(CampaignFields):
    pass


class CampaignOut(BaseModel):
    id: str
    name: str
    description: str | None
    campaign_type: CampaignType
    status: CampaignStatus
    start_date: date | None
    end_date: date | None
    budget: Decimal | None
    target_leads: int | None
    landing_page_url: str | None
    auto_assign: bool
    assigned_to: str | None
    notification_emails: list[str]
    allowed_origins: list[str]
    services: list[str]
    integrations: dict[str, dict[str, Any]] = Field(description="Per-connector overrides for this campaign")
    has_token: bool = Field(description="Whether submissions must carry X-Campaign-Token")
    form_title: str | None = None
    form_intro: str | None = None
    thank_you_url: str | None = None
    consent_text: str | None = None
    privacy_notice_url: str | None = None
    privacy_notice_version: str | None = None
    frame_ancestors: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class CampaignWithToken(CampaignOut):
    token: str | None = Field(None, description="The new campaign token; shown only in this response")


class CampaignList(BaseModel):
    items: list[CampaignOut]


class Period(BaseModel):
    start: date = Field(examples=["2025-10-01"])
    end: date = Field(examples=["2025-10-03"])


class Metrics(BaseModel):
    total_leads: int = Field(examples=[45])
    qualified_leads: int = Field(examples=[18])
    conversion_rate: float = Field(examples=[0.4], description="qualified_leads / total_leads")
    average_lead_score: float = Field(examples=[72])
    cost_per_lead: float = Field(examples=[25.5], description="campaign budget / total_leads")
    revenue_generated: float = Field(examples=[15000], description="Sum of deal_value of closed-won leads")


class ContentPerformance(BaseModel):
    utm_content: str = Field(examples=["ad-variant-a"])
    leads: int = Field(examples=[25])
    conversion_rate: float = Field(examples=[0.45])


class CampaignAnalytics(BaseModel):
    campaign_id: str = Field(examples=["nextcloud-installation-2025"])
    period: Period
    metrics: Metrics
    lead_sources: dict[str, int] = Field(examples=[{"landing-page": 38, "modal": 7}])
    top_performing_content: list[ContentPerformance]


# --- the analytics dashboard (GET /v1/api/analytics) ------------------------------------------------


class DayCount(BaseModel):
    day: date = Field(examples=["2025-10-01"])
    leads: int = Field(examples=[12])


class FunnelStage(BaseModel):
    stage: Literal["new", "contacted", "qualified", "proposal", "won"] = Field(examples=["contacted"])
    leads: int = Field(examples=[30], description="Leads whose status reached this stage or a later one")
    rate: float = Field(examples=[0.6667], description="leads / leads at `new` (all leads of the period)")


class Speed(BaseModel):
    """Capture to first contact (`contacted_at`: the first status change or logged call, meeting, e-mail
    or proposal), in minutes."""

    contacted: int = Field(examples=[40], description="Leads of the period contacted so far")
    waiting: int = Field(examples=[5], description="Leads of the period not contacted yet (not lost)")
    median_minutes: float | None = Field(examples=[42.0])
    p90_minutes: float | None = Field(examples=[180.0])


class RepSpeedOut(Speed):
    rep: str = Field(examples=["sales@nexlink.website"], description="`assigned_to`; `(unassigned)` if none")


class CampaignSpeed(Speed):
    campaign_id: str = Field(examples=["nextcloud-installation-2025"])


class CampaignKpis(BaseModel):
    campaign_id: str = Field(examples=["nextcloud-installation-2025"])
    name: str = Field(examples=["Nextcloud Installation Q4"])
    status: str = Field(examples=["active"])
    leads: int = Field(examples=[45])
    qualified: int = Field(examples=[18])
    won: int = Field(examples=[3])
    conversion_rate: float = Field(examples=[0.4], description="qualified / leads")
    cost_per_lead: float | None = Field(examples=[25.5], description="budget / leads")
    revenue: float = Field(examples=[15000.0])
    roi: float | None = Field(examples=[12.07], description="(revenue − budget) / budget")


class VariantOut(BaseModel):
    utm_content: str = Field(examples=["ad-variant-a"])
    leads: int = Field(examples=[120])
    converted: int = Field(examples=[30], description="qualified (marketing/sales qualified or customer)")
    conversion_rate: float = Field(examples=[0.25])


class AbTest(BaseModel):
    a: str = Field(examples=["ad-variant-a"])
    b: str = Field(examples=["ad-variant-b"])
    test: Literal["two_proportion_z", "fisher_exact", "none"] = Field(
        examples=["two_proportion_z"],
        description="Fisher's exact test when an expected count is below 5, else the two-proportion z-test",
    )
    p_value: float | None = Field(examples=[0.0123])
    significant: bool = Field(examples=[True], description="p < 0.05")
    summary: str = Field(
        examples=[
            "ad-variant-b converts better than ad-variant-a (31.0% vs 22.0%); the difference is "
            "unlikely to be chance (p = 0.012)."
        ]
    )


class Dashboard(BaseModel):
    """Every figure of the analytics page, for one campaign or all of them, over [start, end]."""

    campaign_id: str | None = Field(examples=[None], description="null: all campaigns")
    period: Period
    totals: CampaignKpis = Field(description="The period's figures (campaign_id `*` for all campaigns)")
    leads_per_day: list[DayCount] = Field(description="Every day of the period, zeros included")
    by_channel: dict[str, int] = Field(examples=[{"paid_search": 20, "organic_search": 12}])
    by_source: dict[str, int] = Field(examples=[{"landing-page": 38, "modal": 7}])
    grades: dict[str, int] = Field(examples=[{"A": 5, "B": 12, "C": 20, "D": 8}])
    funnel: list[FunnelStage]
    speed_to_lead: Speed
    speed_by_rep: list[RepSpeedOut]
    speed_by_campaign: list[CampaignSpeed]
    campaigns: list[CampaignKpis] = Field(description="Per campaign, most leads first")
    top_content: list[VariantOut] = Field(description="utm_content with the most leads (up to 5)")
    variants: list[VariantOut] = Field(description="Every utm_content of the period, most leads first")
    ab_test: AbTest | None = Field(
        description="The two variants with the most leads compared; null with fewer than two"
    )
