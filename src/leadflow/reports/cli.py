"""``leadflow reports send``: build a daily or weekly report now, send it or write it to a file."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from leadflow.config import Settings
    from leadflow.reports.service import Report

reports_app = typer.Typer(help="Daily and weekly e-mail reports.", no_args_is_help=True)


class PeriodOption(StrEnum):
    daily = "daily"
    weekly = "weekly"


@reports_app.command("send")
def send(
    period: Annotated[PeriodOption, typer.Option(help="daily | weekly")],
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's report")] = None,
    to: Annotated[
        str | None, typer.Option(help="Send to this address only (default: the usual recipients)")
    ] = None,
    day: Annotated[
        str | None,
        typer.Option("--date", help="A day (YYYY-MM-DD) in the period; default: the last finished one"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Send nothing; list the recipients")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Also write the report: .html, .txt or .csv by the suffix, else the whole e-mail (.eml)"
        ),
    ] = None,
) -> None:
    """Build a report for the last finished day or week (REPORT_TIMEZONE) and e-mail it."""
    from leadflow.cli import _run, _settings
    from leadflow.integrations.base import DeliveryError
    from leadflow.integrations.mailer import Mailer
    from leadflow.kit.clock import utcnow
    from leadflow.reports import service
    from leadflow.security.audit import CLI, record

    settings = _settings()
    zone = settings.report_zone
    kind = service.KINDS[0] if period is PeriodOption.daily else service.KINDS[1]
    if to is not None and ("@" not in to or any(c.isspace() for c in to)):
        typer.echo("error: --to must be an e-mail address", err=True)
        raise typer.Exit(2)
    if day is not None:
        try:
            chosen = service.period_containing(kind, date.fromisoformat(day), zone)
        except ValueError as exc:
            typer.echo("error: --date must look like 2026-12-01", err=True)
            raise typer.Exit(2) from exc
    else:
        chosen = service.due_period(kind, utcnow(), zone)
    mailer = Mailer(settings)
    if not dry_run and not mailer.configured():
        typer.echo("error: e-mail is not configured (SMTP_HOST, or EMAIL_TRANSPORT=sendgrid)", err=True)
        raise typer.Exit(1)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")

    async def work(engine: AsyncEngine) -> tuple[list[service.Recipient], dict[str | None, service.Report]]:
        now = utcnow()
        async with engine.connect() as conn:
            if to is not None:
                targets = [service.Recipient(to.lower(), campaign)]
            else:
                targets = await service.recipients(conn, settings, campaign)
            scopes = {r.campaign_id for r in targets} | {campaign}
            reports = {
                scope: await service.build(conn, settings, chosen, [scope] if scope else None, now)
                for scope in scopes
            }
        if not dry_run:
            for r in targets:
                key = f"report-manual:{service.dedup_key(chosen, r)}:{stamp}"
                await Mailer(settings).send(service.compose(reports[r.campaign_id], r.to, key))
        async with engine.begin() as conn:
            await record(
                conn,
                CLI,
                "report.preview" if dry_run else "report.send",
                "report",
                f"{kind}:{chosen.first.isoformat()}",
                {"campaign_id": campaign, "recipients": len(targets)},
            )
        return targets, reports

    try:
        targets, reports = _run(settings, work)
    except DeliveryError as exc:
        typer.echo(f"error: sending failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    report = reports[campaign]
    if output is not None:
        output.write_bytes(_render_file(settings, report, output, to or "preview@leadflow.invalid"))
        typer.echo(f"wrote {output}")
    verb = "would send" if dry_run else "sent"
    typer.echo(f"{verb} the {kind} report for {chosen.label} to {len(targets)} recipient(s)")
    for r in targets:
        typer.echo(f"  {r.to} ({r.campaign_id or 'all campaigns'})")


def _render_file(settings: Settings, report: Report, path: Path, to: str) -> bytes:
    from leadflow.integrations.mailer import Mailer
    from leadflow.reports import service

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return service.to_csv(report)
    message = service.compose(report, to, f"report-preview:{report.period.kind}:{report.period.first}")
    if suffix == ".html":
        return message.html.encode()
    if suffix == ".txt":
        return message.text.encode()
    return Mailer(settings).build_mime(message).as_bytes()
