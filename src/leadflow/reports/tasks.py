"""Report jobs: ``reports.schedule`` (periodic) queues one ``reports.send`` per recipient and period.

Once per period even with several workers: each e-mail is a job whose dedup key names the period,
the scope and the recipient (``service.dedup_key``); the outbox's unique ``dedup_key`` lets only the
first enqueue in, however many workers run the schedule. The send is retried like any delivery and
keeps its ``Message-ID`` across retries: the id derives from the dedup key and a random
``message_key`` stored in the job's payload, because the dedup key alone is the same in every
installation (two sending one address the same day's report from one domain gave both mails one
``Message-ID``, and mail systems drop the second as a copy).
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta

from leadflow.integrations.mailer import Mailer
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.pipeline.jobs import JobKind, Task, Tasks
from leadflow.pipeline.repository import NewJob
from leadflow.pipeline.worker import HandlerResult, WorkerContext
from leadflow.reports import service

SCHEDULE = JobKind("reports.schedule")
SCHEDULE_EVERY = timedelta(minutes=15)
SEND_ATTEMPTS = 8
SEND = JobKind("reports.send", SEND_ATTEMPTS)
REPORTS_JOB = SCHEDULE.name
SEND_JOB = SEND.name


async def schedule(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Queue the reports that are due (already queued ones are skipped by their dedup key)."""
    now = utcnow()
    settings = ctx.settings
    if not settings.report_periods:
        return HandlerResult(response_excerpt="reports are off (REPORT_PERIODS)")
    if not Mailer(settings).configured():
        return HandlerResult(response_excerpt="e-mail is not configured: no reports")
    async with ctx.engine.connect() as conn:
        recipients = await service.recipients(conn, settings)
    follow_ups: list[NewJob] = []
    for kind in settings.report_periods:
        period = service.due_period(kind, now, settings.report_zone, settings.report_hour)
        follow_ups += [
            SEND.new(
                {
                    "period": kind,
                    "first": period.first.isoformat(),
                    "to": r.to,
                    "campaign_id": r.campaign_id,
                    "message_key": secrets.token_hex(16),
                },
                run_at=now,
                dedup_key=service.dedup_key(period, r),
            )
            for r in recipients
        ]
    return HandlerResult(jobs=tuple(follow_ups), response_excerpt=f"{len(follow_ups)} report e-mails due")


async def send(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Build one report and e-mail it (SMTP or SendGrid, as ``EMAIL_TRANSPORT`` says)."""
    payload = job.payload or {}
    settings = ctx.settings
    period = service.period_containing(
        payload["period"], date.fromisoformat(payload["first"]), settings.report_zone
    )
    campaign_id = payload.get("campaign_id")
    async with ctx.engine.connect() as conn:
        if campaign_id is not None:
            from leadflow.campaigns import repository as campaigns_repo

            if await campaigns_repo.get(conn, campaign_id) is None:
                return HandlerResult(response_excerpt="the campaign was deleted: nothing sent")
        report = await service.build(conn, settings, period, [campaign_id] if campaign_id else None, utcnow())
    key = job.dedup_key or f"report-job:{job.id}"
    if payload.get("message_key"):  # jobs queued before it existed have none
        key = f"{payload['message_key']}:{key}"
    message = service.compose(report, payload["to"], key)
    sent = await Mailer(settings, ctx.http).send(message)
    return HandlerResult(
        status_code=sent.status_code,
        response_excerpt=sent.response_excerpt,
        connector="report",
    )


def register(tasks: Tasks) -> None:
    tasks.add(Task(SCHEDULE, schedule, every=SCHEDULE_EVERY), Task(SEND, send))
