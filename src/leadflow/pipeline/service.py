"""Job administration: list, inspect, replay."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.kit.pagination import encode_cursor
from leadflow.leads import repository as leads_repo
from leadflow.pipeline import repository as repo
from leadflow.pipeline.schemas import JobAttemptOut, JobDetail, JobOut, JobPage


async def _out(conn: AsyncConnection, row: AnyRow) -> JobOut:
    payload = dict(row.payload or {})
    return JobOut(
        id=row.id,
        kind=row.kind,
        connector=payload.get("connector"),
        lead_id=await leads_repo.public_id_of(conn, row.lead_id),
        status=row.status,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        run_at=row.run_at,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        payload=payload,
    )


async def page(
    conn: AsyncConnection, status: str | None, kind: str | None, before: int | None, limit: int
) -> JobPage:
    rows = await repo.list_jobs(conn, status, kind, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return JobPage(
        items=[await _out(conn, r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


async def detail(conn: AsyncConnection, job_id: int) -> JobDetail:
    row = await repo.get(conn, job_id)
    if row is None:
        raise ApiError(404, "JOB_NOT_FOUND", "Job not found", field="job_id")
    history = [JobAttemptOut.model_validate(dict(a._mapping)) for a in await repo.attempts_of(conn, job_id)]
    return JobDetail(**(await _out(conn, row)).model_dump(), history=history)


async def retry(conn: AsyncConnection, job_id: int) -> JobDetail:
    row = await repo.get(conn, job_id)
    if row is None:
        raise ApiError(404, "JOB_NOT_FOUND", "Job not found", field="job_id")
    if not await repo.retry(conn, job_id, utcnow()):
        raise ApiError(409, "JOB_NOT_RETRYABLE", f"A {row.status} job cannot be retried", field="job_id")
    return await detail(conn, job_id)
