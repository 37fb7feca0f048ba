"""Leads entered by staff: manual entry (a call, an event) and CSV import, through the capture core.

Both build the API's :class:`~leadflow.leads.schemas.CaptureRequest` (the same validation and normal
forms), check the campaign with capture's own :func:`~leadflow.leads.capture.policy.campaign_refusal`
(unknown or inactive campaigns refuse; origin and campaign token do not apply to a signed-in person),
prepare the lead with :func:`~leadflow.leads.capture.prepare` and hand it to the capture writer — so
de-duplication, idempotency, scoring, the ``created`` activity and the processing job (enrichment,
routing, notifications) are the API's. Rate limits do not apply. Who entered a lead is recorded as
an ``updated`` activity and an audit entry (``lead.create``; an import: ``leads.import`` per file).

Manual entry may take a caller without an e-mail address when a phone number is given (the API
keeps its rule): such a lead stores an empty e-mail, e-mail kind ``none`` and de-duplicates on the
phone number's blind index within the campaign.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.campaigns.service import CaptureCampaign
from leadflow.kit.clock import utcnow
from leadflow.kit.text import phone_index_form
from leadflow.leads import changes
from leadflow.leads import repository as repo
from leadflow.leads.activities import Activity
from leadflow.leads.capture import CaptureOutcome, PreparedLead, prepare
from leadflow.leads.capture.policy import TOKEN_REFUSED, campaign_refusal
from leadflow.leads.schemas import CaptureRequest
from leadflow.security.audit import Actor, record
from leadflow.security.crypto import FieldCipher

if TYPE_CHECKING:
    from leadflow.kit.state import AppState

STAFF_SOURCES = ("phone", "manual", "event")  # how a manually entered lead reached us
IMPORT_SOURCE = "import"
NO_EMAIL_KIND = "none"
_PLACEHOLDER = "no-email@example.com"  # validated, never stored (a phone-only lead stores "")
MAX_IMPORT_ROWS = 5000
MAX_IMPORT_BYTES = 2_000_000

# The fields staff enter or map from a CSV column: (name, label).
FIELDS: tuple[tuple[str, str], ...] = (
    ("first_name", "First name"),
    ("last_name", "Last name"),
    ("email", "Email"),
    ("phone", "Phone"),
    ("company", "Company"),
    ("country", "Country (2 letters)"),
    ("service_interest", "Service"),
    ("urgency", "Urgency"),
    ("budget_range", "Budget"),
    ("timeline", "Timeline"),
    ("message", "Message"),
    ("utm_source", "utm_source"),
    ("utm_medium", "utm_medium"),
    ("utm_campaign", "utm_campaign"),
    ("utm_content", "utm_content"),
    ("consent", "Consent given (yes/no)"),
)
FIELD_NAMES = tuple(name for name, _ in FIELDS)
_WHERE = {
    "firstName": "first_name",
    "lastName": "last_name",
    "email": "email",
    "phone": "phone",
    "company": "company",
    "country": "country",
}
YES = frozenset({"yes", "y", "true", "1", "on", "x", "ja", "oui", "si"})


class EntryRefused(Exception):
    """Input that cannot become a lead: messages by field name (``campaign_id`` or a ``FIELDS`` name)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class Entry:
    """A validated lead, ready for the capture core."""

    body: CaptureRequest
    phone_only: bool


def validate(values: Mapping[str, str], campaign_id: str, *, phone_region: str, form_type: str) -> Entry:
    """The capture request of entered ``values`` (field names of :data:`FIELDS`); EntryRefused names
    every field in error. Without an e-mail address a phone number is required."""
    v = {name: (values.get(name) or "").strip() for name in FIELD_NAMES}
    phone_only = not v["email"]
    errors: dict[str, str] = {}
    if phone_only and not v["phone"]:
        errors["email"] = "Give an e-mail address or a phone number."
    payload: dict[str, Any] = {
        "campaign_id": campaign_id,
        "source": "manual",
        "contact": {
            "firstName": v["first_name"],
            "lastName": v["last_name"],
            "email": v["email"] or _PLACEHOLDER,
            "phone": v["phone"] or None,
            "company": v["company"] or None,
            "country": v["country"] or None,
        },
        "lead_details": {
            k: v[k] or None for k in ("service_interest", "urgency", "budget_range", "timeline", "message")
        },
        "tracking": {k: v[k] or None for k in ("utm_source", "utm_medium", "utm_campaign", "utm_content")},
        "form_metadata": {"form_type": form_type, "consent_given": v["consent"].lower() in YES},
    }
    try:
        body = CaptureRequest.model_validate(payload, context={"phone_region": phone_region})
    except ValidationError as exc:
        for problem in exc.errors(include_input=False):
            loc = [str(p) for p in problem["loc"]]
            name = _WHERE.get(loc[1], loc[1]) if len(loc) > 1 else loc[0]
            message = str(problem["msg"]).removeprefix("Value error, ")
            if problem["type"] in ("string_too_short", "string_type", "missing"):
                message = "Required."
            errors.setdefault(name, message)
        raise EntryRefused(errors) from None
    if errors:
        raise EntryRefused(errors)
    return Entry(body, phone_only)


def check_campaign(campaign: CaptureCampaign | None) -> CaptureCampaign:
    """Capture's campaign rule for staff: unknown or inactive campaigns refuse (origin and token are
    for browsers and forms, not for a signed-in person)."""
    refusal = campaign_refusal(campaign, {})
    if refusal is not None and refusal.error not in ("ORIGIN_NOT_ALLOWED", TOKEN_REFUSED):
        raise EntryRefused({"campaign_id": refusal.message})
    assert campaign is not None
    return campaign


def prepared(
    entry: Entry,
    campaign: CaptureCampaign,
    cipher: FieldCipher,
    catalog: frozenset[str],
    *,
    source: str,
    key: str | None,
) -> PreparedLead:
    item = prepare(entry.body, campaign, cipher, catalog, None, key, now=utcnow())
    item.values["source"] = source
    if entry.phone_only:
        phone = entry.body.contact.phone or ""
        item.values.update(email=cipher.encrypt("", "email"), email_domain=None, email_kind=NO_EMAIL_KIND)
        item.email_hash = cipher.blind_index(phone_index_form(phone))  # = its phone_hash
        item.score_input = replace(item.score_input, email_kind=NO_EMAIL_KIND)
    return item


@dataclass(frozen=True, slots=True)
class Core:
    """What staff entry uses of the capture core: the database, the capture writer's ``submit``, the
    cipher, the service catalog and the default phone region."""

    engine: AsyncEngine
    submit: Callable[[PreparedLead], Awaitable[CaptureOutcome]]
    cipher: FieldCipher
    catalog: frozenset[str]
    phone_region: str

    @classmethod
    def of(cls, state: AppState) -> Core:
        """The running application's (its capture writer, so leads share its group commits)."""
        return cls(
            state.engine,
            state.writer.submit,
            state.cipher,
            state.catalog,
            state.settings.default_phone_region,
        )


async def enter(
    core: Core, entry: Entry, campaign: CaptureCampaign, *, source: str, actor: Actor
) -> CaptureOutcome:
    """Capture one manually entered lead; a new lead records who entered it (activity, audit)."""
    if source not in STAFF_SOURCES:
        raise EntryRefused({"source": "Choose phone, manual or event."})
    outcome = await core.submit(prepared(entry, campaign, core.cipher, core.catalog, source=source, key=None))
    if outcome.kind in ("created", "spooled"):
        await _entered(core.engine, [outcome.public_id], actor, f"entered by hand ({source})", "lead.create")
    return outcome


async def _entered(
    engine: AsyncEngine, public_ids: Sequence[str], actor: Actor, how: str, audit_action: str | None
) -> None:
    """Record who entered these leads: one ``updated`` activity each (and an audit entry each)."""
    now = utcnow()
    async with engine.begin() as conn:
        rows = [r for p in public_ids if (r := await repo.get_by_public_id(conn, p)) is not None]
        await changes.apply(
            conn,
            [
                changes.Write(
                    row,
                    {},
                    (
                        Activity(
                            row.id,
                            "updated",
                            f"Lead {how} by {actor.name}",
                            now,
                            actor.name,
                            {"entered_by": actor.name},
                        ),
                    ),
                    audit=changes.Audit(actor, audit_action, {"source": row.source})
                    if audit_action
                    else None,
                )
                for row in rows
            ],
        )


# -- CSV import ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CsvFile:
    """An uploaded CSV file: its header, rows and the digest that keys its rows' idempotency."""

    header: list[str]
    rows: list[list[str]]
    digest: str

    @classmethod
    def parse(cls, content: bytes) -> CsvFile:
        if len(content) > MAX_IMPORT_BYTES:
            raise EntryRefused({"file": f"The file is larger than {MAX_IMPORT_BYTES // 1_000_000} MB."})
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise EntryRefused({"file": "The file is not UTF-8 text."}) from None
        header = text.lstrip("\r\n").split("\n", 1)[0]
        separator = max(",;\t", key=header.count)  # the header's most frequent one; a comma if none
        try:
            table = [
                r for r in csv.reader(io.StringIO(text), delimiter=separator) if any(c.strip() for c in r)
            ]
        except csv.Error as exc:
            raise EntryRefused({"file": f"The file is not valid CSV ({exc})."}) from None
        if len(table) < 2:
            raise EntryRefused({"file": "The file needs a header row and at least one lead."})
        if len(table) - 1 > MAX_IMPORT_ROWS:
            raise EntryRefused({"file": f"At most {MAX_IMPORT_ROWS} leads per file."})
        return cls([h.strip() for h in table[0]], table[1:], hashlib.sha256(content).hexdigest())

    def guess_mapping(self) -> dict[str, int]:
        """Our field -> column index, by header names (``First name``, ``first_name``, ``E-mail``...)."""

        def norm(text: str) -> str:
            return "".join(ch for ch in text.lower() if ch.isalnum())

        aliases = {name: {norm(name), norm(label)} for name, label in FIELDS}
        aliases["email"] |= {"emailaddress", "mail"}
        aliases["phone"] |= {"phonenumber", "mobile", "tel", "telephone"}
        aliases["first_name"] |= {"firstname", "givenname", "forename"}
        aliases["last_name"] |= {"lastname", "surname", "familyname"}
        aliases["company"] |= {"organisation", "organization", "companyname"}
        found: dict[str, int] = {}
        for index, header in enumerate(self.header):
            for name, names in aliases.items():
                if norm(header) in names and name not in found:
                    found[name] = index
        return found

    def values(self, row: list[str], mapping: Mapping[str, int]) -> dict[str, str]:
        return {name: row[i] if i < len(row) else "" for name, i in mapping.items()}


@dataclass
class RowResult:
    line: int  # the row's line in the file (the header is line 1)
    kind: Literal["created", "duplicate", "replay", "key_conflict", "spooled", "invalid"]
    lead_id: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportReport:
    rows: list[RowResult]

    def count(self, *kinds: str) -> int:
        return sum(1 for r in self.rows if r.kind in kinds)


def check_rows(
    file: CsvFile, mapping: Mapping[str, int], campaign_id: str, phone_region: str
) -> list[tuple[int, Entry | EntryRefused]]:
    """Every row validated under ``mapping`` (line numbers as in the file)."""
    checked: list[tuple[int, Entry | EntryRefused]] = []
    for offset, row in enumerate(file.rows):
        try:
            entry: Entry | EntryRefused = validate(
                file.values(row, mapping), campaign_id, phone_region=phone_region, form_type="csv_import"
            )
        except EntryRefused as exc:
            entry = exc
        checked.append((offset + 2, entry))
    return checked


async def import_file(
    core: Core, file: CsvFile, mapping: Mapping[str, int], campaign: CaptureCampaign, *, actor: Actor
) -> ImportReport:
    """Import the valid rows (each keyed ``csv:<file digest>:<line>``, so the same file imported again
    creates nothing twice: its rows answer as replays); invalid rows are reported, not imported."""
    results: list[RowResult] = []
    for line, checked in check_rows(file, mapping, campaign.id, core.phone_region):
        if isinstance(checked, EntryRefused):
            results.append(RowResult(line, "invalid", errors=checked.errors))
            continue
        key = f"csv:{file.digest[:32]}:{line}"
        item = prepared(checked, campaign, core.cipher, core.catalog, source=IMPORT_SOURCE, key=key)
        outcome = await core.submit(item)
        results.append(RowResult(line, outcome.kind, outcome.public_id))
    report = ImportReport(results)
    created = [r.lead_id for r in results if r.kind in ("created", "spooled") and r.lead_id]
    if created:
        await _entered(core.engine, created, actor, "imported from a CSV file", None)
    async with core.engine.begin() as conn:
        await record(
            conn,
            actor,
            "leads.import",
            "campaign",
            campaign.id,
            {
                "file_sha256": file.digest,
                "rows": len(results),
                "created": report.count("created", "spooled"),
                "already_imported": report.count("replay"),
                "duplicates": report.count("duplicate"),
                "invalid": report.count("invalid", "key_conflict"),
            },
        )
    return report


def mapping_of(form: Iterable[tuple[str, str]], width: int) -> dict[str, int]:
    """The mapping posted by the import form (``map_<field>`` = column index, empty: not imported)."""
    found: dict[str, int] = {}
    for name, value in form:
        if name.startswith("map_") and name[4:] in FIELD_NAMES and value.isdigit() and int(value) < width:
            found[name[4:]] = int(value)
    return found
