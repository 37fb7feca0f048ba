"""Request and response bodies of the lead endpoints (the spec's shapes, field for field)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from leadflow.kit.clock import UtcDateTime
from leadflow.kit.text import clean_line, clean_text, normalise_email, normalise_ip, normalise_phone
from leadflow.leads.models import QUALIFICATION_STATUSES, SOURCES, STATUSES

Source = Literal["landing-page", "modal", "contact-form", "embed", "manual", "import"]
assert set(SOURCES) == set(Source.__args__)  # type: ignore[attr-defined]

Status = Literal["new", "contacted", "qualified", "proposal", "closed_won", "closed_lost"]
assert set(STATUSES) == set(Status.__args__)  # type: ignore[attr-defined]
Qualification = Literal["unqualified", "marketing_qualified", "sales_qualified", "customer", "lost"]
assert set(QUALIFICATION_STATUSES) == set(Qualification.__args__)  # type: ignore[attr-defined]
Grade = Literal["A", "B", "C", "D"]

_STRICT = ConfigDict(extra="ignore", populate_by_name=True, str_max_length=20000)


def _line(value: object) -> object:
    return clean_line(value) if isinstance(value, str) else value


def _email_value(value: object) -> object:
    if isinstance(value, str):
        if len(value) > 320:
            raise ValueError("Invalid email format")
        return normalise_email(value)
    return value


class Contact(BaseModel):
    model_config = _STRICT

    first_name: str = Field(alias="firstName", min_length=1, max_length=100, examples=["John"])
    last_name: str = Field(alias="lastName", min_length=1, max_length=100, examples=["Doe"])
    email: str = Field(max_length=255, examples=["john.doe@company.com"])
    phone: str | None = Field(None, max_length=50, examples=["+1-555-123-4567"])
    company: str | None = Field(None, max_length=255, examples=["Acme Corp"])
    country: str | None = Field(
        None,
        pattern=r"^[A-Za-z]{2}$",
        description="ISO 3166-1 country the person gives; decides GDPR/CCPA before GeoIP does",
        examples=["US"],
    )
    region: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9]{1,3}$",
        description="ISO 3166-2 subdivision code without the country (e.g. CA for California)",
        examples=["CA"],
    )

    @field_validator("first_name", "last_name", "company", "phone", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        return _line(value)

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: object) -> object:
        return _email_value(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        region = (info.context or {}).get("phone_region", "US")
        return normalise_phone(value, region)


class LeadDetails(BaseModel):
    model_config = _STRICT

    service_interest: str | None = Field(None, max_length=100, examples=["Nextcloud Installation"])
    urgency: str | None = Field(None, max_length=50, examples=["High (Same day)"])
    message: str | None = Field(None, max_length=5000, examples=["Need Nextcloud setup for 50 users ASAP"])
    budget_range: str | None = Field(None, max_length=50, examples=["$5000-$10000"])
    timeline: str | None = Field(None, max_length=50, examples=["Within 2 weeks"])

    @field_validator("service_interest", "urgency", "budget_range", "timeline", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        return _line(value)

    @field_validator("message", mode="before")
    @classmethod
    def _message(cls, value: object) -> object:
        return clean_text(value) if isinstance(value, str) else value


class FirstTouch(BaseModel):
    """The visitor's first UTM-tagged visit (embed.js keeps it 90 days, with consent only)."""

    model_config = _STRICT

    utm_source: str | None = Field(None, max_length=255, examples=["newsletter"])
    utm_medium: str | None = Field(None, max_length=255, examples=["email"])
    utm_campaign: str | None = Field(None, max_length=255, examples=["autumn-2025"])
    utm_term: str | None = Field(None, max_length=255, examples=[None])
    utm_content: str | None = Field(None, max_length=255, examples=["hero-button"])
    t: int | None = Field(
        None,
        ge=0,
        le=253402300799999,
        description="When it happened, milliseconds since 1970-01-01 UTC (JavaScript's Date.now())",
        examples=[1759480200000],
    )

    @field_validator("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        return _line(value)

    def stored(self) -> dict[str, str] | None:
        """As kept in ``leads.enrichment["first_touch"]``; None without any UTM value."""
        utm = {k: v for k, v in self.model_dump(exclude={"t"}).items() if v}
        if not utm:
            return None
        if self.t is not None:
            utm["at"] = datetime.fromtimestamp(self.t / 1000, UTC).isoformat()
        return utm


class FirstTouchOut(BaseModel):
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    at: datetime | None = Field(None, description="When the first touch happened (as the browser said)")


class Tracking(BaseModel):
    model_config = _STRICT

    visitor_id: str | None = Field(None, max_length=255, examples=["vis_123456789"])
    session_id: str | None = Field(None, max_length=255, examples=["sess_987654321"])
    utm_source: str | None = Field(None, max_length=255, examples=["google"])
    utm_medium: str | None = Field(None, max_length=255, examples=["cpc"])
    utm_campaign: str | None = Field(None, max_length=255, examples=["nextcloud-q4-2025"])
    utm_term: str | None = Field(None, max_length=255, examples=["nextcloud installation"])
    utm_content: str | None = Field(None, max_length=255, examples=["ad-variant-a"])
    referrer_url: str | None = Field(
        None, max_length=2048, examples=["https://google.com/search?q=nextcloud"]
    )
    landing_page_url: str | None = Field(
        None, max_length=2048, examples=["https://nexlink.website/campaigns/nextcloud-installation.html"]
    )
    user_agent: str | None = Field(None, max_length=1024, examples=["Mozilla/5.0..."])
    ip_address: str | None = Field(None, max_length=45, examples=["192.168.1.1"])
    time_on_page_seconds: int | None = Field(
        None, ge=0, le=86400 * 7, description="Seconds the visitor spent on the page before submitting."
    )
    returning_visitor: bool | None = Field(None, description="The page saw this visitor before.")
    visit_count: int | None = Field(
        None, ge=0, le=1_000_000, description="Visits by this visitor, this one included."
    )
    first_touch: FirstTouch | None = Field(
        None,
        description="First-touch UTM values (the `utm_*` fields above are the last touch); kept with "
        "the lead and shown as `first_touch` in its detail.",
    )

    @field_validator(
        "visitor_id",
        "session_id",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "referrer_url",
        "landing_page_url",
        "user_agent",
        mode="before",
    )
    @classmethod
    def _clean(cls, value: object) -> object:
        return _line(value)

    @field_validator("ip_address")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return normalise_ip(value) if value else None


class FormMetadata(BaseModel):
    model_config = _STRICT

    form_type: str | None = Field(None, max_length=50, examples=["campaign_landing"])
    form_version: str | None = Field(None, max_length=50, examples=["v2.1"])
    consent_given: bool = Field(False, examples=[True])
    timestamp: UtcDateTime | None = Field(None, examples=["2025-10-03T10:30:00Z"])
    consent_notice_version: str | None = Field(
        None,
        max_length=50,
        description="Version of the privacy notice shown with the consent box",
        examples=["2025-09"],
    )
    do_not_sell: bool = Field(False, description="CCPA: do not sell or share my personal information")
    honeypot: str | None = Field(
        None,
        max_length=1000,
        description="Bot trap: a hidden form field people leave empty. Any value rejects the submission.",
    )
    started_at: UtcDateTime | None = Field(
        None, description="When the form was shown (for the minimum fill time); no zone means UTC"
    )
    fill_time_seconds: float | None = Field(
        None, ge=0, le=86400, description="Seconds between showing and submitting the form (embed script)"
    )

    @field_validator("form_type", "form_version", "consent_notice_version", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        return _line(value)


class CaptureRequest(BaseModel):
    """A lead submitted by a campaign form (the spec's request body)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "campaign_id": "nextcloud-installation-2025",
                    "source": "landing-page",
                    "contact": {
                        "firstName": "John",
                        "lastName": "Doe",
                        "email": "john.doe@company.com",
                        "phone": "+1-555-123-4567",
                        "company": "Acme Corp",
                    },
                    "lead_details": {
                        "service_interest": "Nextcloud Installation",
                        "urgency": "High (Same day)",
                        "message": "Need Nextcloud setup for 50 users ASAP",
                        "budget_range": "$5000-$10000",
                        "timeline": "Within 2 weeks",
                    },
                    "tracking": {
                        "visitor_id": "vis_123456789",
                        "session_id": "sess_987654321",
                        "utm_source": "google",
                        "utm_medium": "cpc",
                        "utm_campaign": "nextcloud-q4-2025",
                        "utm_term": "nextcloud installation",
                        "utm_content": "ad-variant-a",
                        "referrer_url": "https://google.com/search?q=nextcloud+installation",
                        "landing_page_url": "https://nexlink.website/campaigns/nextcloud-installation.html",
                        "user_agent": "Mozilla/5.0...",
                        "ip_address": "192.168.1.1",
                    },
                    "form_metadata": {
                        "form_type": "campaign_landing",
                        "form_version": "v2.1",
                        "consent_given": True,
                        "timestamp": "2025-10-03T10:30:00Z",
                    },
                }
            ]
        },
    )

    campaign_id: str = Field(min_length=1, max_length=100, examples=["nextcloud-installation-2025"])
    source: Source = Field(examples=["landing-page"])
    contact: Contact
    lead_details: LeadDetails = Field(default_factory=LeadDetails)
    tracking: Tracking = Field(default_factory=Tracking)
    form_metadata: FormMetadata = Field(default_factory=FormMetadata)

    @field_validator("campaign_id", mode="before")
    @classmethod
    def _campaign(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class NextSteps(BaseModel):
    expected_response_time: str = Field(examples=["2 hours"])
    contact_method: str = Field(examples=["email"])
    tracking_enabled: bool = Field(examples=[True])


class CaptureResponse(BaseModel):
    success: bool = Field(True, examples=[True])
    lead_id: str = Field(examples=["lead_abc123def456"])
    message: str = Field("Lead captured successfully", examples=["Lead captured successfully"])
    next_steps: NextSteps


class LeadStatusResponse(BaseModel):
    lead_id: str = Field(examples=["lead_abc123def456"])
    status: Status = Field(examples=["contacted"])
    last_updated: datetime
    assigned_to: str | None = Field(examples=["sales@nexlink.website"])
    next_action: str = Field(examples=["Follow-up call scheduled for Oct 5"])
    estimated_response_time: str = Field(examples=["24 hours"])


class Activity(BaseModel):
    activity_type: str = Field(examples=["status_changed"])
    description: str | None
    performed_by: str | None
    metadata: dict[str, Any] | None
    created_at: datetime


class LeadSummary(BaseModel):
    """A lead as listed (decrypted contact fields, the spec's column names)."""

    lead_id: str
    uuid: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    company: str | None
    campaign_id: str
    campaign_name: str
    source: str
    medium: str | None
    channel: str | None
    service_interest: str | None
    urgency: str | None
    lead_score: int
    lead_grade: Grade
    qualification_status: Qualification
    status: Status
    assigned_to: str | None
    follow_up_date: datetime | None
    deal_value: Decimal | None
    created_at: datetime
    updated_at: datetime
    contacted_at: datetime | None


class GeoLocation(BaseModel):
    """Where the lead's IP address is, from the GeoIP database (``GEOIP_CITY_DB``)."""

    country: str | None = Field(description="ISO 3166-1 alpha-2 country code", examples=["GB"])
    region: str | None = Field(description="Largest subdivision (state, nation)", examples=["England"])
    city: str | None = Field(examples=["Boxford"])


class LeadEnrichment(BaseModel):
    """What the worker found out about the lead (all null until it has run: see ``enriched_at``)."""

    enriched_at: datetime | None = Field(description="When enrichment ran; null while it is pending")
    geo: GeoLocation
    email_domain_type: str | None = Field(
        description=(
            "Kind of e-mail domain: `business`, `free` (webmail) or `disposable`; `anonymized` once "
            "the lead is anonymised"
        ),
        examples=["business"],
    )
    mx: str | None = Field(
        description=(
            "MX check of the e-mail domain: `valid`, `invalid` (no mail server: scored as undeliverable), "
            "`unknown` (DNS failed) or `skipped` (`MX_CHECK` off)"
        ),
        examples=["valid"],
    )
    company_domain: str | None = Field(
        description="The e-mail domain, for business addresses", examples=["acme-corp.com"]
    )
    company_name: str | None = Field(
        description="Company name guessed from a business domain", examples=["Acme Corp"]
    )


class LeadDetail(LeadSummary):
    message: str | None
    budget_range: str | None
    timeline: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    first_touch: FirstTouchOut | None = Field(
        None,
        description="The visitor's first UTM-tagged visit, when the form's script sent it (embed.js, "
        "with tracking consent); the `utm_*` fields are the last touch",
    )
    visitor_id: str | None
    session_id: str | None
    ip_address: str | None
    user_agent: str | None
    referrer_url: str | None
    landing_page_url: str | None
    time_on_page_seconds: int | None
    visit_count: int | None
    returning_visitor: bool
    form_type: str | None
    form_version: str | None
    consent_given: bool
    submitted_at: datetime | None
    previous_lead_id: str | None = Field(description="The earlier lead of the same person and campaign")
    score_breakdown: dict[str, Any] | None
    enrichment: LeadEnrichment
    privacy_regime: str | None = Field(
        description=(
            "Privacy law that applies: `gdpr` (EU/EEA/UK) or `ccpa` (California), from the form's "
            "country/region, else from GeoIP; null when neither applies or is known"
        ),
        examples=["gdpr"],
    )
    do_not_sell: bool = Field(description="The lead opted out of the sale/sharing of personal data (CCPA)")
    activities: list[Activity]


class LeadPage(BaseModel):
    items: list[LeadSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )


# Contact fields staff may correct (GDPR Art. 16 rectification); each is re-encrypted.
CONTACT_FIELDS = ("first_name", "last_name", "email", "phone", "company")


class LeadUpdate(BaseModel):
    """Fields a salesperson changes; every change is recorded as an activity."""

    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    qualification_status: Qualification | None = None
    assigned_to: str | None = Field(None, max_length=100)
    note: str | None = Field(None, max_length=5000, description="Adds a note_added activity")
    follow_up_date: UtcDateTime | None = None
    deal_value: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    first_name: str | None = Field(None, min_length=1, max_length=100, description="Rectification")
    last_name: str | None = Field(None, min_length=1, max_length=100, description="Rectification")
    email: str | None = Field(
        None,
        max_length=255,
        description="Rectification: de-duplication, search and the privacy tools use the new address",
    )
    phone: str | None = Field(None, max_length=50, description="Rectification (E.164; null clears it)")
    company: str | None = Field(None, max_length=255, description="Rectification (null clears it)")
    do_not_sell: bool | None = Field(
        None, description="Opt-out of sale/sharing (CCPA) for the person: applies to all their leads"
    )

    @field_validator("assigned_to", "first_name", "last_name", "phone", "company", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        return _line(value)

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: object) -> object:
        return _email_value(value)

    @field_validator("note", mode="before")
    @classmethod
    def _note(cls, value: object) -> object:
        return clean_text(value) if isinstance(value, str) else value

    @field_validator("follow_up_date", mode="before")
    @classmethod
    def _aware(cls, value: object) -> object:
        """A follow-up is a moment in time: a value without a zone is ambiguous and refused."""
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return value  # let the type's own validation explain
            if parsed.tzinfo is None:
                raise ValueError("follow_up_date needs a time zone (e.g. 2025-10-05T09:00:00Z)")
        return value
