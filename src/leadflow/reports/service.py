"""Daily and weekly reports: which period, the figures per campaign, who gets them, the e-mail.

A period is a calendar day (``daily``) or an ISO week, Monday to Sunday (``weekly``), in
``REPORT_TIMEZONE``. Its figures come from the same code as the analytics API
(``campaigns.analytics.summarise`` over ``campaigns.rollup`` sums): a report for a UTC day shows
exactly what ``GET /v1/api/campaigns/{id}/analytics?start=D&end=D`` answers. Cost per lead is the
campaign's to date (budget / all its leads, the API's default period): a budget is not spent per day.

Reports carry no personal data: leads appear by public id, grade, score and assignee (staff), with
a link to the authenticated, audited lead API.
"""

from __future__ import annotations

import csv
import hashlib
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import repository as campaigns_repo
from leadflow.campaigns import rollup
from leadflow.campaigns.analytics import campaign_analytics, summarise
from leadflow.campaigns.repository import CampaignRow
from leadflow.campaigns.schemas import CampaignAnalytics
from leadflow.campaigns.service import get_or_404
from leadflow.config import Settings
from leadflow.integrations.csv_export import safe_cell
from leadflow.integrations.mailer import Attachment, OutgoingEmail, render
from leadflow.integrations.smtp import AUTOMATED_HEADERS
from leadflow.reports import repository as repo
from leadflow.reports.repository import Assignment

PeriodKind = Literal["daily", "weekly"]
KINDS: tuple[PeriodKind, ...] = ("daily", "weekly")
GRADES = ("A", "B", "C", "D")
REPORTED_STATUSES = ("active", "paused")  # campaigns in every scheduled report
WAITING_LISTED = 20  # the oldest leads still waiting, listed by id
CSV_COLUMNS = (
    "period",
    "period_start",
    "period_end",
    "campaign_id",
    "section",
    "item",
    "metric",
    "value",
    "previous",
)


# --- periods --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    first: date  # first local day
    last: date  # last local day (inclusive)
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=self.zone).astimezone(UTC)

    def previous(self) -> Period:
        return period_containing(self.kind, self.first - timedelta(days=1), self.zone)

    @property
    def label(self) -> str:
        if self.kind == "daily":
            return f"{self.first:%a %d %b %Y}"
        week = self.first.isocalendar()
        return f"week {week.week} of {week.year} ({self.first:%d %b} – {self.last:%d %b %Y})"

    @property
    def previous_label(self) -> str:
        return "the day before" if self.kind == "daily" else "the week before"


def period_containing(kind: PeriodKind, day: date, zone: ZoneInfo) -> Period:
    if kind == "daily":
        return Period(kind, day, day, zone)
    monday = day - timedelta(days=day.weekday())
    return Period(kind, monday, monday + timedelta(days=6), zone)


def due_period(kind: PeriodKind, now: datetime, zone: ZoneInfo, hour: int = 0) -> Period:
    """The newest finished period whose report is due at ``now``: a day's from ``hour`` o'clock
    (local) the next day, a week's from ``hour`` o'clock on the Monday after it."""
    local = now.astimezone(zone)
    today = local.date() if local.hour >= hour else local.date() - timedelta(days=1)
    if kind == "daily":
        return period_containing(kind, today - timedelta(days=1), zone)
    this_monday = today - timedelta(days=today.weekday())
    return period_containing(kind, this_monday - timedelta(days=1), zone)


# --- figures --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepSpeed:
    rep: str
    assigned: int
    contacted: int
    median_minutes: float | None  # capture to first contact, over the contacted leads
    waiting: int


@dataclass(frozen=True, slots=True)
class WaitingLead:
    lead_id: str
    grade: str
    score: int
    assigned_to: str | None
    created_at: datetime
    hours_waiting: float
    url: str


@dataclass(frozen=True, slots=True)
class CampaignReport:
    campaign_id: str
    name: str
    current: CampaignAnalytics
    previous: CampaignAnalytics
    cost_per_lead_to_date: float
    grades: dict[str, int]
    previous_grades: dict[str, int]
    reps: list[RepSpeed]
    waiting_total: int
    waiting: list[WaitingLead]

    def change(self, metric: str) -> float | None:
        """Relative change of a metric against the previous period (None when that was 0)."""
        now = float(getattr(self.current.metrics, metric))
        before = float(getattr(self.previous.metrics, metric))
        if not before:
            return 0.0 if not now else None
        return round((now - before) / before, 4)


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    generated_at: datetime
    campaigns: list[CampaignReport] = field(default_factory=list)
    all_campaigns: bool = False  # every active or paused campaign (a manager's report)

    @property
    def total_leads(self) -> int:
        return sum(c.current.metrics.total_leads for c in self.campaigns)

    @property
    def previous_total_leads(self) -> int:
        return sum(c.previous.metrics.total_leads for c in self.campaigns)

    @property
    def total_waiting(self) -> int:
        return sum(c.waiting_total for c in self.campaigns)

    def change(self) -> float | None:
        now, before = self.total_leads, self.previous_total_leads
        if not before:
            return 0.0 if not now else None
        return round((now - before) / before, 4)


async def _figures(conn: AsyncConnection, campaign: CampaignRow, period: Period) -> CampaignAnalytics:
    sums = await rollup.sums_between(conn, campaign.id, period.start, period.end)
    return summarise(campaign, sums, period.first, period.last)


def _speed(rows: Sequence[Assignment]) -> list[RepSpeed]:
    by_rep: dict[str, list[Assignment]] = {}
    for row in rows:
        by_rep.setdefault(str(row.assigned_to), []).append(row)
    reps = []
    for rep, items in by_rep.items():
        minutes = [
            (_aware(r.contacted_at) - _aware(r.created_at)).total_seconds() / 60
            for r in items
            if r.contacted_at is not None
        ]
        reps.append(
            RepSpeed(
                rep=rep,
                assigned=len(items),
                contacted=len(minutes),
                median_minutes=round(statistics.median(minutes), 1) if minutes else None,
                waiting=len(items) - len(minutes),
            )
        )
    return sorted(reps, key=lambda r: (-r.assigned, r.rep))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def campaign_report(
    conn: AsyncConnection, settings: Settings, campaign: CampaignRow, period: Period, now: datetime
) -> CampaignReport:
    previous = period.previous()
    to_date = await campaign_analytics(conn, campaign.id, None, None)
    waiting_total, oldest = await repo.waiting(conn, campaign.id, WAITING_LISTED)
    base = settings.public_base_url.rstrip("/")
    return CampaignReport(
        campaign_id=campaign.id,
        name=campaign.name,
        current=await _figures(conn, campaign, period),
        previous=await _figures(conn, campaign, previous),
        cost_per_lead_to_date=to_date.metrics.cost_per_lead,
        grades=await repo.grade_counts(conn, campaign.id, period.start, period.end),
        previous_grades=await repo.grade_counts(conn, campaign.id, previous.start, previous.end),
        reps=_speed(await repo.assignments(conn, campaign.id, period.start, period.end)),
        waiting_total=waiting_total,
        waiting=[
            WaitingLead(
                lead_id=r.public_id,
                grade=r.lead_grade,
                score=int(r.lead_score),
                assigned_to=r.assigned_to,
                created_at=_aware(r.created_at),
                hours_waiting=round((now - _aware(r.created_at)).total_seconds() / 3600, 1),
                url=f"{base}/leads/{r.public_id}",  # the workspace page
            )
            for r in oldest
        ],
    )


async def build(
    conn: AsyncConnection,
    settings: Settings,
    period: Period,
    campaign_ids: Sequence[str] | None,
    now: datetime,
) -> Report:
    """The report of these campaigns (None: every active or paused campaign). Unknown ids are 404."""
    if campaign_ids is None:
        campaigns = [c for c in await campaigns_repo.list_all(conn) if c.status in REPORTED_STATUSES]
        campaigns.sort(key=lambda c: c.id)
    else:
        campaigns = [await get_or_404(conn, cid) for cid in campaign_ids]
    reports = [await campaign_report(conn, settings, c, period, now) for c in campaigns]
    return Report(period, now, reports, all_campaigns=campaign_ids is None)


# --- recipients -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    to: str
    campaign_id: str | None  # None: every campaign (a manager who opted in with REPORT_EMAILS)


async def recipients(
    conn: AsyncConnection, settings: Settings, campaign_id: str | None = None
) -> list[Recipient]:
    """Each reported campaign's ``notification_emails`` (its own report), and ``REPORT_EMAILS``
    (everything). With ``campaign_id``, only that campaign's report, managers included."""
    found: list[Recipient] = []
    for campaign in await campaigns_repo.list_all(conn):
        if campaign_id is not None and campaign.id != campaign_id:
            continue
        if campaign_id is None and campaign.status not in REPORTED_STATUSES:
            continue
        for address in campaign.notification_emails or []:
            found.append(Recipient(str(address).lower(), campaign.id))
    found += [Recipient(address, campaign_id) for address in settings.report_emails]
    unique = {(r.to, r.campaign_id): r for r in found}
    return sorted(unique.values(), key=lambda r: (r.campaign_id or "", r.to))


def dedup_key(period: Period, recipient: Recipient) -> str:
    """One e-mail per period, scope and recipient, whichever worker gets there first."""
    who = hashlib.sha256(recipient.to.encode()).hexdigest()[:16]
    return f"report:{period.kind}:{period.first.isoformat()}:{recipient.campaign_id or '*'}:{who}"


# --- the e-mail -----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def to_csv(report: Report) -> bytes:
    """One row per figure (long format: filter or pivot it in a spreadsheet); every cell through
    :func:`safe_cell`, since ``utm_content`` comes from visitors (no formula runs in a spreadsheet)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    p = report.period
    head = (p.kind, p.first.isoformat(), p.last.isoformat())
    for c in report.campaigns:
        now, before = c.current, c.previous

        def row(section: str, item: str, metric: str, value: object, previous: object = "") -> None:
            cells = (*head, c.campaign_id, section, item, metric, value, previous)  # noqa: B023
            writer.writerow([safe_cell(cell) for cell in cells])

        for metric in (
            "total_leads",
            "qualified_leads",
            "conversion_rate",
            "average_lead_score",
            "revenue_generated",
        ):
            row(
                "summary",
                "",
                metric,
                _fmt(getattr(now.metrics, metric)),
                _fmt(getattr(before.metrics, metric)),
            )
        row("summary", "", "cost_per_lead_to_date", _fmt(c.cost_per_lead_to_date))
        row("summary", "", "waiting_for_first_contact", c.waiting_total)
        for grade in GRADES:
            row("grade", grade, "leads", c.grades.get(grade, 0), c.previous_grades.get(grade, 0))
        for source, count in now.lead_sources.items():
            row("source", source, "leads", count, before.lead_sources.get(source, 0))
        for content in now.top_performing_content:
            row("content", content.utm_content, "leads", content.leads)
            row("content", content.utm_content, "conversion_rate", _fmt(content.conversion_rate))
        for rep in c.reps:
            row("speed_to_lead", rep.rep, "assigned", rep.assigned)
            row("speed_to_lead", rep.rep, "contacted", rep.contacted)
            row("speed_to_lead", rep.rep, "median_minutes_to_contact", _fmt(rep.median_minutes))
            row("speed_to_lead", rep.rep, "not_contacted", rep.waiting)
        for lead in c.waiting:
            row("waiting", lead.lead_id, "hours_waiting", _fmt(lead.hours_waiting))
    return out.getvalue().encode()


def _subject_scope(report: Report) -> str:
    if report.all_campaigns:
        return "all campaigns"
    return ", ".join(c.name for c in report.campaigns)


def compose(report: Report, to: str, key: str) -> OutgoingEmail:
    rendered = render(
        "report",
        package="leadflow.reports",
        report=report,
        scope=_subject_scope(report),
        grades=GRADES,
        pct=pct,
    )
    p = report.period
    return OutgoingEmail(
        to=to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        dedup_key=key,
        category=f"report-{p.kind}",
        headers=AUTOMATED_HEADERS,
        attachments=(Attachment(f"leadflow-{p.kind}-report-{p.first.isoformat()}.csv", to_csv(report)),),
    )


def pct(change: float | None) -> str:
    """A change as ``+12.5 %`` (``new`` when the previous period had none)."""
    if change is None:
        return "new"
    return f"{change * 100:+.1f} %"
