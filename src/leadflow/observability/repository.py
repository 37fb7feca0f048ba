"""SQL for metrics gauges and alerts: queue and lead counts, recent job outcomes, alert state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.kit.models import columns_of, rows_as, table_of
from leadflow.leads.models import Lead
from leadflow.observability.models import AlertState
from leadflow.pipeline.models import Job, JobAttempt

jobs = table_of(Job)
attempts = table_of(JobAttempt)
leads = table_of(Lead)
alert_state = table_of(AlertState)

OPEN_STATUSES = ("pending", "running", "dead")  # "done" grows without bound and is not a queue


async def database_answers(engine: AsyncEngine) -> bool:
    """Whether the database answers a trivial query (the health check)."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    counts: dict[tuple[str, str, str], int]  # (kind, connector or "", status) -> jobs
    due: int  # pending jobs whose run_at has passed
    oldest_due_at: datetime | None  # run_at of the oldest of them
    last_attempt_at: datetime | None  # the newest job attempt any worker recorded


async def queue_snapshot(conn: AsyncConnection, now: datetime) -> QueueSnapshot:
    connector = jobs.c.payload["connector"].as_string()  # JSON path: portable through SQLAlchemy
    counts = {
        (str(r[0]), str(r[1] or ""), str(r[2])): int(r[3])
        for r in await conn.execute(
            select(jobs.c.kind, connector, jobs.c.status, func.count())
            .where(jobs.c.status.in_(OPEN_STATUSES))
            .group_by(jobs.c.kind, connector, jobs.c.status)
        )
    }
    due_row = (
        await conn.execute(
            select(func.count(), func.min(jobs.c.run_at)).where(
                jobs.c.status == "pending", jobs.c.run_at <= now
            )
        )
    ).one()
    last = (await conn.execute(select(func.max(attempts.c.started_at)))).scalar()
    return QueueSnapshot(counts, int(due_row[0] or 0), due_row[1], last)


async def leads_by_campaign(conn: AsyncConnection) -> list[tuple[str, str, str, int]]:
    """(campaign, grade, status, leads) for every combination that has leads."""
    rows = await conn.execute(
        select(leads.c.campaign_id, leads.c.lead_grade, leads.c.status, func.count()).group_by(
            leads.c.campaign_id, leads.c.lead_grade, leads.c.status
        )
    )
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


async def outcomes_since(conn: AsyncConnection, since: datetime) -> dict[str, int]:
    """Job attempts recorded since ``since``, by outcome (success, retry, dead, permanent, ...)."""
    rows = await conn.execute(
        select(attempts.c.outcome, func.count())
        .where(attempts.c.started_at >= since)
        .group_by(attempts.c.outcome)
    )
    return {str(r[0]): int(r[1]) for r in rows}


@dataclass(frozen=True, slots=True)
class DeadJob:
    """A lead's job that was dead-lettered (the digest's line)."""

    id: int
    kind: str
    payload: dict[str, Any]
    lead_id: int
    attempts: int
    last_error: str | None
    finished_at: datetime


async def dead_between(conn: AsyncConnection, since: datetime, until: datetime) -> list[DeadJob]:
    """Jobs of a lead that were dead-lettered in ``[since, until)`` and are still dead."""
    query = (
        select(*columns_of(DeadJob, jobs))
        .where(
            jobs.c.status == "dead",
            jobs.c.lead_id.is_not(None),
            jobs.c.finished_at >= since,
            jobs.c.finished_at < until,
        )
        .order_by(jobs.c.finished_at, jobs.c.id)
    )
    return rows_as(DeadJob, await conn.execute(query))


# --- alert state -------------------------------------------------------------------------------------


async def claim_firing(engine: AsyncEngine, name: str, now: datetime, throttle: timedelta) -> bool:
    """True if this process should send the "firing" message for ``name`` now.

    It should when the condition was not firing before, or when the last message is older than the
    throttle period. One conditional UPDATE (or the first INSERT) decides, so concurrent processes
    never both send.
    """
    async with engine.begin() as conn:
        result = await conn.execute(
            update(alert_state)
            .where(
                alert_state.c.name == name,
                or_(
                    alert_state.c.state != "firing",
                    alert_state.c.sent_at.is_(None),
                    alert_state.c.sent_at < now - throttle,
                ),
            )
            .values(state="firing", sent_at=now, changed_at=now)
        )
        if result.rowcount == 1:
            return True
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(alert_state).values(name=name, state="firing", changed_at=now, sent_at=now)
            )
    except IntegrityError:
        return False  # the row exists: firing and sent recently (or another process just claimed it)
    return True


async def release(engine: AsyncEngine, name: str) -> None:
    """The firing message could not be delivered anywhere: let the next check send it again."""
    async with engine.begin() as conn:
        await conn.execute(update(alert_state).where(alert_state.c.name == name).values(sent_at=None))


async def claim_resolved(engine: AsyncEngine, name: str, now: datetime) -> bool:
    """True if ``name`` was firing and this process is the one that marks it resolved."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(alert_state)
            .where(and_(alert_state.c.name == name, alert_state.c.state == "firing"))
            .values(state="ok", changed_at=now, sent_at=now)
        )
        return bool(result.rowcount == 1)


async def alert_states(conn: AsyncConnection) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in await conn.execute(select(alert_state.c.name, alert_state.c.state))}
