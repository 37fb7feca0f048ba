"""CSV export of leads: the CRM fallback (``leadflow leads export``).

Streams leads page by page (newest first, ``EXPORT_PAGE`` rows per query), decrypting the personal
fields, so memory stays flat however many leads match. Columns use the specification's column names
(``lead_id`` is the public id); the IP address and user agent are left out (not needed to work a lead).

Every cell is made safe for spreadsheets: a value starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return (or their full-width forms) is prefixed with ``'`` so Excel/LibreOffice/Sheets show it
as text instead of evaluating it as a formula (CSV injection). A value that is just a number (``-5``,
``+15551234567``) cannot hold a formula and is left as it is.

Each export writes one audit entry (channel ``cli``, action ``leads.export``) with the filters, the
number of rows and whether it completed: it is a read of personal data.
"""

from __future__ import annotations

import csv
import getpass
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.config import Settings
from leadflow.kit.models import AnyRow
from leadflow.leads import repository as repo
from leadflow.security.audit import Actor, record_now
from leadflow.security.crypto import FieldCipher

EXPORT_PAGE = 500
ENCRYPTED = ("first_name", "last_name", "email", "phone", "company", "message")
COLUMNS: tuple[str, ...] = (
    "lead_id",
    "uuid",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "campaign_id",
    "campaign_name",
    "source",
    "medium",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "service_interest",
    "urgency",
    "message",
    "budget_range",
    "timeline",
    "visitor_id",
    "session_id",
    "referrer_url",
    "landing_page_url",
    "lead_score",
    "lead_grade",
    "qualification_status",
    "status",
    "assigned_to",
    "follow_up_date",
    "deal_value",
    "consent_given",
    "do_not_sell",
    "privacy_regime",
    "created_at",
    "updated_at",
    "contacted_at",
)
FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
PLAIN_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


def safe_cell(value: object) -> str:
    """The CSV text for one value, neutralised against formula injection."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        text = value.astimezone(UTC).isoformat()
    elif isinstance(value, Decimal):
        text = format(value, "f")
    else:
        text = str(value)
    if not text or PLAIN_NUMBER.match(text):
        return text
    first = text.lstrip(" ")[:1]
    if text[0] in FORMULA_START or first in FORMULA_START:
        return "'" + text
    return text


@dataclass(frozen=True, slots=True)
class ExportFilter:
    campaign_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def parse_bound(value: str, *, end: bool) -> datetime:
    """A CLI date bound: ``YYYY-MM-DD`` (a whole UTC day; ``end`` → the next midnight) or ISO datetime.

    A datetime without a zone is taken as UTC. Raises ValueError for anything else.
    """
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        start = datetime.combine(day, time.min, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _record(cipher: FieldCipher, row: AnyRow) -> dict[str, Any]:
    data = dict(row._mapping)
    for name in ENCRYPTED:
        data[name] = cipher.decrypt(data[name], name)
    data["lead_id"] = data["public_id"]
    return data


async def iter_leads(
    conn: AsyncConnection, cipher: FieldCipher, flt: ExportFilter, page: int = EXPORT_PAGE
) -> AsyncIterator[dict[str, Any]]:
    """Matching leads, decrypted, newest first, fetched ``page`` rows at a time (keyset pagination)."""
    query = repo.LeadFilter(campaign_id=flt.campaign_id, created_from=flt.since, created_to=flt.until)
    async for record in iter_filtered(conn, cipher, query, page):
        yield record


async def iter_filtered(
    conn: AsyncConnection, cipher: FieldCipher, query: repo.LeadFilter, page: int = EXPORT_PAGE
) -> AsyncIterator[dict[str, Any]]:
    """The leads of a list filter (the workspace's list), decrypted, in its order, page by page."""
    before: int | None = None
    while True:
        rows = await repo.list_page(conn, query, before, page)
        for row in rows:
            yield _record(cipher, row)
        if len(rows) < page:
            return
        before = int(rows[-1].id)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:100]
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def _details(flt: ExportFilter, rows: int, destination: str) -> dict[str, Any]:
    return {
        "campaign_id": flt.campaign_id,
        "since": flt.since.isoformat() if flt.since else None,
        "until": flt.until.isoformat() if flt.until else None,
        "rows": rows,
        "destination": destination,
    }


async def export_csv(
    engine: AsyncEngine,
    settings: Settings,
    out: TextIO,
    flt: ExportFilter,
    destination: str = "stdout",
) -> int:
    """Write the header and every matching lead to ``out``; returns the number of leads written."""
    cipher = FieldCipher(settings.encryption_keys, settings.blind_key)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    completed = False
    try:
        async with engine.connect() as conn:
            async for record in iter_leads(conn, cipher, flt):
                writer.writerow([safe_cell(record.get(column)) for column in COLUMNS])
                count += 1
        out.flush()
        completed = True
    finally:  # a failed export has still read personal data: audit it too
        details = _details(flt, count, destination) | {"completed": completed}
        actor = Actor(name=_actor(), role="admin", channel="cli")
        await record_now(engine, actor, "leads.export", "lead", flt.campaign_id, details)
    return count
