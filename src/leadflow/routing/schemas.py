"""Team member and routing rule bodies (validation happens here; errors carry the field path)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from leadflow.kit.text import clean_line, normalise_email
from leadflow.routing.rules import parse_hhmm, valid_timezones

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
MAX_ID = 2**63 - 1  # BIGINT
_CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _text(value: object) -> object:
    return clean_line(value) if isinstance(value, str) else value


def _member_email(value: object) -> object:
    """Team member e-mails are compared and stored lower-cased (one person, one address)."""
    if not isinstance(value, str):
        return value
    if len(value) > 255:
        raise ValueError("Value is too long")
    return normalise_email(value).lower()


def _phone(value: object) -> object:
    if not isinstance(value, str):
        return value
    if not value.strip().startswith("+"):
        raise ValueError("Phone numbers are international, e.g. +14155550100")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("Invalid phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError("Invalid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _country(value: str) -> str:
    code = value.strip().upper()
    if not _COUNTRY.match(code):
        raise ValueError("Country codes are 2 letters (ISO 3166-1 alpha-2), e.g. DE")
    return code


def _region(value: str) -> str:
    code = value.strip().upper()
    if not _REGION.match(code):
        raise ValueError('Regions are a 2-letter country code, optionally with a subdivision: "DE", "US-CA"')
    return code


def _service(value: str) -> str:
    cleaned = clean_line(value)
    if not cleaned or len(cleaned) > 100:
        raise ValueError("Service names are 1-100 characters")
    return cleaned


def _campaign_id(value: str) -> str:
    if not _CAMPAIGN_ID.match(value):
        raise ValueError("Not a campaign id")
    return value


def _timezone(value: str) -> str:
    if value not in valid_timezones():
        raise ValueError("Unknown time zone; use an IANA name such as Europe/Berlin")
    return value


def _hhmm(value: str) -> str:
    parse_hhmm(value)
    return value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _dedupe_folded(values: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        key = value.casefold()
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


Email = Annotated[str, BeforeValidator(_member_email)]
Phone = Annotated[str, BeforeValidator(_phone), Field(max_length=50)]
Country = Annotated[str, AfterValidator(_country)]
Region = Annotated[str, AfterValidator(_region)]
Service = Annotated[str, AfterValidator(_service)]
CampaignId = Annotated[str, AfterValidator(_campaign_id)]
Grade = Annotated[Literal["A", "B", "C", "D"], BeforeValidator(_upper)]
Day = Annotated[int, Field(ge=0, le=6)]
Services = Annotated[list[Service], AfterValidator(_dedupe_folded), Field(max_length=200)]
Regions = Annotated[list[Region], AfterValidator(_dedupe_folded), Field(max_length=300)]


class WorkingHours(BaseModel):
    """When the member takes leads. ``start > end`` is a shift past midnight; ``start == end`` all day."""

    model_config = ConfigDict(extra="forbid")

    timezone: Annotated[str, AfterValidator(_timezone)] = Field(examples=["Europe/Berlin"])
    days: list[Day] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        min_length=1,
        max_length=7,
        description="Weekdays, Monday = 0 ... Sunday = 6 (default Monday to Friday)",
        examples=[[0, 1, 2, 3, 4]],
    )
    start: Annotated[str, AfterValidator(_hhmm)] = Field(examples=["09:00"], description="HH:MM, local")
    end: Annotated[str, AfterValidator(_hhmm)] = Field(examples=["17:00"], description="HH:MM, local")

    @model_validator(mode="after")
    def _sorted_days(self) -> WorkingHours:
        self.days = sorted(set(self.days))
        return self


class MemberFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str | None, BeforeValidator(_text)] = Field(
        None, min_length=1, max_length=100, examples=["Anna Schmidt"]
    )
    email: Email | None = Field(None, examples=["anna@nexlink.website"])
    phone: Phone | None = Field(None, examples=["+4915112345678"], description="E.164, for SMS alerts")
    active: bool | None = Field(None, description="Inactive members never receive leads")
    services: Services | None = Field(
        None,
        description="Services this member handles (case-insensitive); empty or null: any service",
        examples=[["Nextcloud Installation", "Cloud Migration"]],
    )
    regions: Regions | None = Field(
        None,
        description='Countries ("DE") or subdivisions ("US-CA") this member covers; empty or null: anywhere',
        examples=[["DE", "AT", "US-CA"]],
    )
    capacity: int | None = Field(None, ge=0, le=100_000, description="Most open leads at once", examples=[25])
    weight: int | None = Field(
        None, ge=1, le=1000, description="Round-robin share: weight 2 gets twice the leads of 1", examples=[1]
    )
    working_hours: WorkingHours | None = Field(None, description="Null: always available")


class MemberCreate(MemberFields):
    name: Annotated[str, BeforeValidator(_text)] = Field(
        min_length=1, max_length=100, examples=["Anna Schmidt"]
    )
    email: Email = Field(examples=["anna@nexlink.website"])
    active: bool = True
    capacity: int = Field(50, ge=0, le=100_000, description="Most open leads at once", examples=[25])
    weight: int = Field(1, ge=1, le=1000, description="Round-robin share", examples=[1])


class MemberUpdate(MemberFields):
    """Only the fields sent change; ``working_hours: null`` makes the member always available."""


class MemberOut(BaseModel):
    id: int = Field(examples=[1])
    name: str = Field(examples=["Anna Schmidt"])
    email: str = Field(examples=["anna@nexlink.website"])
    phone: str | None = Field(examples=["+4915112345678"])
    active: bool
    services: list[str] = Field(examples=[["Nextcloud Installation"]])
    regions: list[str] = Field(examples=[["DE", "US-CA"]])
    capacity: int = Field(examples=[25])
    weight: int = Field(examples=[1])
    working_hours: dict[str, Any] | None = Field(
        description="Null: always available",
        examples=[{"timezone": "Europe/Berlin", "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}],
    )
    open_leads: int = Field(examples=[3], description="Assigned leads not closed (won or lost)")
    last_assigned_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MemberList(BaseModel):
    items: list[MemberOut]


class RuleConditions(BaseModel):
    """All listed conditions must hold; a missing key or an empty list is no constraint."""

    model_config = ConfigDict(extra="forbid")

    campaign_ids: list[CampaignId] | None = Field(
        None, max_length=200, examples=[["nextcloud-installation-2025"]]
    )
    services: Services | None = Field(None, examples=[["Nextcloud Installation"]])
    grades: Annotated[list[Grade], AfterValidator(_dedupe_folded)] | None = Field(
        None, max_length=4, examples=[["A", "B"]]
    )
    min_score: int | None = Field(None, ge=0, le=100, examples=[80], description="Inclusive")
    countries: Annotated[list[Country], AfterValidator(_dedupe_folded)] | None = Field(
        None, max_length=300, examples=[["DE", "AT"]]
    )
    regions: Regions | None = Field(None, examples=[["US-CA"]])

    def stored(self) -> dict[str, Any]:
        """The JSON kept in ``routing_rules.conditions`` (no null or empty entries)."""
        return {k: v for k, v in self.model_dump().items() if v is not None and v != []}


class RuleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str | None, BeforeValidator(_text)] = Field(
        None, min_length=1, max_length=100, examples=["Enterprise DACH"]
    )
    position: int | None = Field(
        None, ge=0, le=1_000_000, description="Lower runs first (ties: older rule first)", examples=[10]
    )
    active: bool | None = None
    conditions: RuleConditions | None = None
    member_id: int | None = Field(
        None, ge=1, le=MAX_ID, examples=[1], description="The team member who gets the lead"
    )


class RuleCreate(RuleFields):
    name: Annotated[str, BeforeValidator(_text)] = Field(
        min_length=1, max_length=100, examples=["Enterprise DACH"]
    )
    position: int = Field(100, ge=0, le=1_000_000, description="Lower runs first", examples=[10])
    active: bool = True
    conditions: RuleConditions = Field(default_factory=RuleConditions)
    member_id: int = Field(ge=1, le=MAX_ID, examples=[1])


class RuleUpdate(RuleFields):
    """Only the fields sent change; ``conditions`` is replaced as a whole."""


class RuleOut(BaseModel):
    id: int = Field(examples=[1])
    name: str = Field(examples=["Enterprise DACH"])
    position: int = Field(examples=[10])
    active: bool
    conditions: dict[str, Any] = Field(examples=[{"grades": ["A"], "countries": ["DE", "AT"]}])
    member_id: int = Field(examples=[1])
    member_email: str | None = Field(examples=["anna@nexlink.website"])
    created_at: datetime


class RuleList(BaseModel):
    items: list[RuleOut]
