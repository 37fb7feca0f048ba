"""Periodic work on the same outbox: each periodic job enqueues its own next run (dedup key per slot)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.integrations import registry
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow, table_of
from leadflow.leads.activities import Activity
from leadflow.leads.models import Lead, LeadActivity
from leadflow.pipeline import repository as jobs_repo
from leadflow.pipeline.models import Job
from leadflow.pipeline.worker import Handler, HandlerResult, WorkerContext

REMINDERS_JOB = "reminders.scan"
RETENTION_JOB = "privacy.retention"
REPORTS_JOB = "reports.schedule"  # handler in reports/tasks.py
REMINDER_INTERVAL = timedelta(minutes=1)
# Each periodic job and how often it runs.
PERIODIC = {
    REMINDERS_JOB: REMINDER_INTERVAL,
    RETENTION_JOB: timedelta(days=1),
    REPORTS_JOB: timedelta(minutes=15),
}
leads = table_of(Lead)
activities = table_of(LeadActivity)
jobs = table_of(Job)


def slot(kind: str, when: datetime) -> jobs_repo.NewJob:
    slot = when.replace(second=0, microsecond=0)
    return jobs_repo.NewJob(
        kind=kind, payload={}, run_at=slot, dedup_key=f"periodic:{kind}:{slot:%Y%m%dT%H%M}"
    )


async def ensure_periodic(engine: AsyncEngine) -> None:
    """Make sure each periodic job has a pending run (called when a worker starts)."""
    now = utcnow()
    async with engine.begin() as conn:
        for kind in PERIODIC:
            pending = (
                await conn.execute(
                    select(jobs.c.id)
                    .where(jobs.c.kind == kind, jobs.c.status.in_(("pending", "running")))
                    .limit(1)
                )
            ).first()
            if pending is None:
                await jobs_repo.enqueue(conn, [slot(kind, now)], now)


async def scan_reminders(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Leads whose follow-up date has come: a ``reminder_due`` activity and an e-mail to the assignee."""
    now = utcnow()
    reminded = exists().where(
        and_(
            activities.c.lead_id == leads.c.id,
            activities.c.activity_type == "reminder_due",
            activities.c.created_at >= leads.c.follow_up_date,
        )
    )
    query = (
        select(leads.c.id, leads.c.follow_up_date)
        .where(
            leads.c.follow_up_date.is_not(None),
            leads.c.follow_up_date <= now,
            leads.c.status.not_in(("closed_won", "closed_lost")),
            leads.c.anonymized_at.is_(None),
            ~reminded,
        )
        .limit(500)
    )
    email = registry.build(registry.ConnectorName.EMAIL, ctx.settings)
    async with ctx.engine.begin() as conn:
        due = (await conn.execute(query)).all()
        acts = [
            Activity(
                row.id,
                "reminder_due",
                f"Follow-up due since {row.follow_up_date:%Y-%m-%d %H:%M} UTC",
                now,
                details={"follow_up_date": row.follow_up_date.isoformat()},
            ).row()
            for row in due
        ]
        if acts:
            await conn.execute(activities.insert(), acts)
        new_jobs = [slot(REMINDERS_JOB, now + REMINDER_INTERVAL)]
        if email.configured():
            new_jobs += [
                jobs_repo.NewJob(
                    kind="deliver",
                    payload={"connector": "email", "lead_id": row.id, "reason": "follow_up_due"},
                    run_at=now,
                    lead_id=row.id,
                    dedup_key=f"reminder:{row.id}:{row.follow_up_date:%Y%m%dT%H%M%S}",
                    max_attempts=email.max_attempts,
                )
                for row in due
            ]
        await jobs_repo.enqueue(conn, new_jobs, now)
    return HandlerResult(response_excerpt=f"{len(due)} follow-ups due")


async def retention(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Daily: anonymise or delete leads older than the retention period, in batches."""
    from leadflow.db import reclaim_space
    from leadflow.privacy.repository import erased_since
    from leadflow.privacy.service import enforce_retention
    from leadflow.security.audit import Actor, record

    now = utcnow()
    total = 0
    for _ in range(100):  # at most 100 000 leads a day; the rest tomorrow
        async with ctx.engine.begin() as conn:
            report = await enforce_retention(conn, ctx.cipher, ctx.settings, dry_run=False)
            total += report.done
        if not report.progressed:
            break
    async with ctx.engine.connect() as conn:
        erased = await erased_since(conn, now - PERIODIC[RETENTION_JOB] - timedelta(hours=1))
    # Deleted or anonymised rows leave their bytes in the database files until the space is
    # reclaimed: vacuum (PostgreSQL), rebuild (MySQL) or checkpoint (SQLite) when anything went.
    reclaimed = await reclaim_space(ctx.engine) if total or erased else "nothing to reclaim"
    async with ctx.engine.begin() as conn:
        if total:
            await record(
                conn,
                Actor("retention", None, "worker"),
                "privacy.retention",
                None,
                None,
                {"done": total, "action": ctx.settings.retention_action},
            )
        await jobs_repo.enqueue(conn, [slot(RETENTION_JOB, now + PERIODIC[RETENTION_JOB])], now)
    return HandlerResult(response_excerpt=f"{total} leads {ctx.settings.retention_action}d; {reclaimed}")


def periodic_handlers() -> dict[str, Handler]:
    return {REMINDERS_JOB: scan_reminders, RETENTION_JOB: retention}
