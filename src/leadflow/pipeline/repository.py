"""SQL for the outbox: enqueue, claim with a lease (SKIP LOCKED where the database has it), finish."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import AnyRow, table_of
from leadflow.pipeline.models import Job, JobAttempt

jobs = table_of(Job)
attempts = table_of(JobAttempt)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert. Build it with :meth:`leadflow.pipeline.jobs.JobKind.new` (the one way to
    create a job); :meth:`row` is its ``jobs`` row, for writers that insert rows themselves."""

    kind: str
    payload: dict[str, Any]
    run_at: datetime
    lead_id: int | None = None
    dedup_key: str | None = None
    max_attempts: int = 8
    connector: str | None = None  # a ``deliver`` job's connector (the integrations page's look-ups)

    def row(self, now: datetime) -> dict[str, Any]:
        """The ``jobs`` row (every row has the same keys, so a batch is one multi-row insert)."""
        return {
            "kind": self.kind,
            "payload": self.payload,
            "status": "pending",
            "attempts": 0,
            "max_attempts": self.max_attempts,
            "run_at": self.run_at,
            "lead_id": self.lead_id,
            "dedup_key": self.dedup_key,
            "connector": self.connector,
            "created_at": now,
            "updated_at": now,
        }


async def enqueue(conn: AsyncConnection, new: Sequence[NewJob], now: datetime) -> int:
    """Insert jobs; ones whose dedup_key already exists are skipped. Returns how many were added."""
    keys = [j.dedup_key for j in new if j.dedup_key]
    existing: set[str] = set()
    if keys:
        rows = await conn.execute(select(jobs.c.dedup_key).where(jobs.c.dedup_key.in_(keys)))
        existing = {r[0] for r in rows}
    rows_to_add = []
    seen: set[str] = set()
    for job in new:
        if job.dedup_key and (job.dedup_key in existing or job.dedup_key in seen):
            continue
        if job.dedup_key:
            seen.add(job.dedup_key)
        rows_to_add.append(job.row(now))
    if not rows_to_add:
        return 0
    try:
        async with conn.begin_nested():
            await conn.execute(insert(jobs), rows_to_add)
    except IntegrityError:
        # Another worker enqueued one of these keys concurrently: insert one by one, skipping those.
        added = 0
        for row in rows_to_add:
            try:
                async with conn.begin_nested():
                    await conn.execute(insert(jobs), [row])
                added += 1
            except IntegrityError:
                continue
        return added
    return len(rows_to_add)


async def pending_kinds(conn: AsyncConnection, kinds: Sequence[str]) -> set[str]:
    """Which of ``kinds`` have a job waiting or running (the scheduler seeds the others)."""
    if not kinds:
        return set()
    query = select(jobs.c.kind).where(jobs.c.kind.in_(kinds), jobs.c.status.in_(("pending", "running")))
    return {str(r[0]) for r in await conn.execute(query.distinct())}


async def done_keys(conn: AsyncConnection, dedup_keys: Sequence[str]) -> set[str]:
    """Which of these dedup keys belong to a job that finished successfully."""
    if not dedup_keys:
        return set()
    query = select(jobs.c.dedup_key).where(jobs.c.dedup_key.in_(dedup_keys), jobs.c.status == "done")
    return {str(r[0]) for r in await conn.execute(query)}


async def set_payloads(conn: AsyncConnection, payloads: dict[int, dict[str, Any]], now: datetime) -> None:
    """Store new payloads (a handler's scrubbed or progressed payload, written with its job's outcome)."""
    for job_id, payload in payloads.items():
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(payload=payload, updated_at=now))


async def claim(
    conn: AsyncConnection, worker: str, limit: int, lease: timedelta, now: datetime
) -> Sequence[AnyRow]:
    """Take up to ``limit`` due jobs (and jobs whose lease expired) for ``worker``."""
    due = or_(
        (jobs.c.status == "pending") & (jobs.c.run_at <= now),
        (jobs.c.status == "running") & (jobs.c.locked_until < now),
    )
    values = {
        "status": "running",
        "locked_by": worker,
        "locked_until": now + lease,
        "attempts": jobs.c.attempts + 1,
        "updated_at": now,
    }
    pick = select(jobs.c.id).where(due).order_by(jobs.c.run_at, jobs.c.id).limit(limit)
    if conn.dialect.name == "sqlite":
        # One statement, so two connections can never pick the same rows (SQLite has no SKIP LOCKED).
        claimed = await conn.execute(
            update(jobs).where(jobs.c.id.in_(pick.scalar_subquery())).values(**values).returning(jobs.c.id)
        )
        ids = [r[0] for r in claimed]
    else:
        ids = [r[0] for r in await conn.execute(pick.with_for_update(skip_locked=True))]
        if ids:
            await conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(**values))
    if not ids:
        return []
    return (
        await conn.execute(select(jobs).where(jobs.c.id.in_(ids)).order_by(jobs.c.run_at, jobs.c.id))
    ).all()


def _owned(job_id: int, worker: str) -> Any:
    return (jobs.c.id == job_id) & (jobs.c.locked_by == worker) & (jobs.c.status == "running")


async def renew(
    conn: AsyncConnection, worker: str, job_ids: Sequence[int], until: datetime, now: datetime
) -> int:
    """Heartbeat: extend the lease of the jobs ``worker`` still holds; returns how many it holds."""
    if not job_ids:
        return 0
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(job_ids), jobs.c.locked_by == worker, jobs.c.status == "running")
        .values(locked_until=until, updated_at=now)
    )
    return int(result.rowcount or 0)


async def release(conn: AsyncConnection, worker: str, job_ids: Sequence[int], now: datetime) -> int:
    """Give jobs back at once (a worker shutting down): pending again, the attempt not counted."""
    if not job_ids:
        return 0
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(job_ids), jobs.c.locked_by == worker, jobs.c.status == "running")
        .values(
            status="pending",
            run_at=now,
            locked_by=None,
            locked_until=None,
            attempts=jobs.c.attempts - 1,
            updated_at=now,
        )
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class ClaimState:
    locked_by: str | None
    status: str
    attempts: int


async def claim_states(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, ClaimState]:
    """Who holds these jobs now (locked until commit where the database can lock); deleted jobs are absent.

    A job is still held by the worker that ran it when ``locked_by`` is that worker, its status is
    ``running`` and ``attempts`` is the one that worker claimed (a re-claim after the lease ran out
    counts up, even by the same worker).
    """
    if not job_ids:
        return {}
    query = select(jobs.c.id, jobs.c.locked_by, jobs.c.status, jobs.c.attempts).where(jobs.c.id.in_(job_ids))
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return {int(r.id): ClaimState(r.locked_by, r.status, int(r.attempts)) for r in await conn.execute(query)}


async def finish_many(conn: AsyncConnection, job_ids: Sequence[int], now: datetime) -> None:
    """Mark jobs done; the caller has checked with :func:`claim_states` in the same transaction."""
    if job_ids:
        await conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(job_ids))
            .values(status="done", finished_at=now, locked_until=None, last_error=None, updated_at=now)
        )


async def finish(conn: AsyncConnection, job_id: int, worker: str, now: datetime) -> bool:
    """Mark done; False when this worker no longer holds the lease (another took the job over)."""
    result = await conn.execute(
        update(jobs)
        .where(_owned(job_id, worker))
        .values(status="done", finished_at=now, locked_until=None, last_error=None, updated_at=now)
    )
    return result.rowcount == 1


async def reschedule(
    conn: AsyncConnection, job_id: int, worker: str, run_at: datetime, error: str, now: datetime
) -> bool:
    result = await conn.execute(
        update(jobs)
        .where(_owned(job_id, worker))
        .values(
            status="pending",
            run_at=run_at,
            locked_until=None,
            locked_by=None,
            last_error=error,
            updated_at=now,
        )
    )
    return result.rowcount == 1


async def bury(conn: AsyncConnection, job_id: int, worker: str, error: str, now: datetime) -> bool:
    """Dead-letter: the job stays visible with its error until someone retries it."""
    result = await conn.execute(
        update(jobs)
        .where(_owned(job_id, worker))
        .values(status="dead", locked_until=None, last_error=error, finished_at=now, updated_at=now)
    )
    return result.rowcount == 1


async def add_attempts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Record attempts (every row has the same keys: one multi-row insert)."""
    if rows:
        await conn.execute(insert(attempts), rows)


async def get(conn: AsyncConnection, job_id: int) -> AnyRow | None:
    return (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()


async def attempts_of(conn: AsyncConnection, job_id: int) -> Sequence[AnyRow]:
    query = select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.attempt, attempts.c.id)
    return (await conn.execute(query)).all()


async def list_jobs(
    conn: AsyncConnection, status: str | None, kind: str | None, before_id: int | None, limit: int
) -> Sequence[AnyRow]:
    query = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
    if status:
        query = query.where(jobs.c.status == status)
    if kind:
        query = query.where(jobs.c.kind == kind)
    if before_id is not None:
        query = query.where(jobs.c.id < before_id)
    return (await conn.execute(query)).all()


async def retry(conn: AsyncConnection, job_id: int, now: datetime) -> bool:
    """Put a dead (or failed) job back in the queue with a fresh set of attempts."""
    result = await conn.execute(
        update(jobs)
        .where((jobs.c.id == job_id) & (jobs.c.status.in_(("dead", "pending"))))
        .values(status="pending", attempts=0, run_at=now, locked_by=None, locked_until=None, updated_at=now)
    )
    return result.rowcount == 1


async def retry_dead(conn: AsyncConnection, kind: str | None, now: datetime) -> int:
    query = update(jobs).where(jobs.c.status == "dead")
    if kind:
        query = query.where(jobs.c.kind == kind)
    result = await conn.execute(
        query.values(
            status="pending", attempts=0, run_at=now, locked_by=None, locked_until=None, updated_at=now
        )
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class ConnectorActivity:
    """A connector's recent deliveries (the workspace's integrations page)."""

    last_success: datetime | None
    failures_since: int  # failed attempts (retry, dead, permanent) since the given time
    dead: int


async def connector_activity(conn: AsyncConnection, connector: str, since: datetime) -> ConnectorActivity:
    """Its ``deliver`` jobs (first deliveries and corrections) by the ``connector`` column: index seeks
    (``idx_jobs_connector``), however many jobs the table holds."""
    mine = jobs.c.connector == connector
    last = select(func.max(jobs.c.finished_at)).where(mine, jobs.c.status == "done")
    dead = select(func.count()).select_from(jobs).where(mine, jobs.c.status == "dead")
    failures = (
        select(func.count())
        .select_from(attempts.join(jobs, attempts.c.job_id == jobs.c.id))
        .where(attempts.c.started_at >= since, attempts.c.outcome != "success", mine)
    )
    return ConnectorActivity(
        last_success=(await conn.execute(last)).scalar(),
        failures_since=int((await conn.execute(failures)).scalar() or 0),
        dead=int((await conn.execute(dead)).scalar() or 0),
    )
