"""Campaign jobs: ``analytics.rollup``, every few minutes, stores the closed analytics slots that are
missing (``campaigns.rollup``): yesterday once it closes, each hour of today once it closes, and any
day or hour a write invalidated, over the last ``rollup.JOB_DAYS`` days of every campaign. So the
analytics pages and API find their closed days stored and scan only the open hour(s) live.

The sums are computed on a read connection; they are stored in the worker's transaction that records
the job, under each campaign's version claim (``rollup.store``), so sums computed from rows that
changed meanwhile are never kept. When nothing is missing the run reads the stored slot rows of the
period (a few thousand small rows) and scans nothing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import repository as repo
from leadflow.campaigns import rollup
from leadflow.kit.models import AnyRow
from leadflow.pipeline.jobs import JobKind, Task, Tasks
from leadflow.pipeline.repository import NewJob
from leadflow.pipeline.worker import HandlerResult, WorkerContext

ROLLUP = JobKind("analytics.rollup")
ROLLUP_EVERY = timedelta(minutes=5)


async def materialise(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Compute the missing closed slots of every campaign; store them with the job's completion."""
    async with ctx.engine.connect() as conn:
        campaign_ids = [c.id for c in await repo.list_all(conn)]
        versions, computed = await rollup.materialise(conn, campaign_ids)
    missing = sum(len(slots) for slots in computed.values())
    if not missing:
        return HandlerResult(response_excerpt="nothing missing")

    async def write(conn: AsyncConnection) -> list[NewJob]:
        await rollup.store(conn, versions, computed)
        return []

    return HandlerResult(
        response_excerpt=f"{missing} slots of {len(computed)} campaigns computed", write=write
    )


def register(tasks: Tasks) -> None:
    tasks.add(Task(ROLLUP, materialise, every=ROLLUP_EVERY))
