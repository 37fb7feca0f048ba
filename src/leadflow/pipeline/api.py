"""Admin API over the outbox: see dead jobs and replay them."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from leadflow.errors import responses
from leadflow.kit.clock import utcnow
from leadflow.kit.pagination import CursorParam, decode_cursor
from leadflow.kit.state import ReadConn
from leadflow.pipeline import repository as repo
from leadflow.pipeline import service
from leadflow.pipeline.schemas import JobDetail, JobPage, RetryResult
from leadflow.security.audit import AdminChange
from leadflow.security.auth import require
from leadflow.security.tokens import Principal

router = APIRouter(prefix="/v1/api/jobs", tags=["jobs"])
JobId = Annotated[int, Path(ge=1, le=2**62, description="Job id")]


@router.get(
    "",
    response_model=JobPage,
    summary="List jobs",
    description="Newest first. `status=dead` lists dead-lettered deliveries with their last error. Scope `admin`.",
    responses=responses(400, 401, 403),
)
async def list_jobs(
    _: Annotated[Principal, Depends(require("admin"))],
    conn: ReadConn,
    status: Literal["pending", "running", "done", "dead"] | None = None,
    kind: Annotated[str | None, Query(max_length=50, examples=["deliver"])] = None,
    cursor: CursorParam = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobPage:
    before = decode_cursor(cursor)
    return await service.page(conn, status, kind, before, limit)


@router.get(
    "/{job_id}",
    response_model=JobDetail,
    summary="Job detail",
    description="The job with every attempt (status code, trimmed response, duration). Scope `admin`.",
    responses=responses(401, 403, 404),
)
async def get_job(
    _: Annotated[Principal, Depends(require("admin"))], job_id: JobId, conn: ReadConn
) -> JobDetail:
    return await service.detail(conn, job_id)


@router.post(
    "/{job_id}/retry",
    response_model=JobDetail,
    summary="Retry a job",
    description="Puts a dead job back in the queue with a fresh set of attempts. Scope `admin`.",
    responses=responses(401, 403, 404, 409),
)
async def retry_job(job_id: JobId, change: AdminChange) -> JobDetail:
    result = await service.retry(change.conn, job_id)
    await change.record("job.retry", "job", str(job_id))
    change.after.add(change.state.wake_worker)
    return result


@router.post(
    "/retry-dead",
    response_model=RetryResult,
    summary="Retry every dead job",
    description="Optionally only one kind. Scope `admin`.",
    responses=responses(400, 401, 403),
)
async def retry_dead(
    change: AdminChange, kind: Annotated[str | None, Query(max_length=50)] = None
) -> RetryResult:
    count = await repo.retry_dead(change.conn, kind, utcnow())
    await change.record(
        "job.retry_dead",
        "job",
        None,
        {"kind": kind, "count": count},
    )
    change.after.add(change.state.wake_worker)
    return RetryResult(requeued=count)
