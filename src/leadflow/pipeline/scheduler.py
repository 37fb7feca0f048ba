"""Periodic work on the same outbox: one pending run per periodic kind, one per-minute slot each.

A domain declares a periodic job with ``Task(kind, handler, every=...)``. :func:`ensure_periodic`
(called when a worker starts) seeds a run for each periodic kind that has none; when a slot's run
succeeds, the worker enqueues the next slot (``every`` later) in the transaction that records it, so
no handler schedules itself. The dedup key names the kind and the minute: two workers finishing the
same slot enqueue one next run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.kit.clock import utcnow
from leadflow.pipeline import repository as jobs_repo
from leadflow.pipeline.jobs import JobKind

SLOT_PREFIX = "periodic:"


def slot(kind: JobKind | str, when: datetime) -> jobs_repo.NewJob:
    """The run of a periodic ``kind`` in the minute ``when`` falls in."""
    kind = kind if isinstance(kind, JobKind) else JobKind(kind)
    at = when.replace(second=0, microsecond=0)
    return kind.new({}, run_at=at, dedup_key=f"{SLOT_PREFIX}{kind.name}:{at:%Y%m%dT%H%M}")


def is_slot(kind: str, dedup_key: str | None) -> bool:
    """Whether a job is a scheduled run of a periodic kind (not e.g. a continuation it enqueued)."""
    return dedup_key is not None and dedup_key.startswith(f"{SLOT_PREFIX}{kind}:")


def next_slot(
    kind: str, dedup_key: str | None, periodic: Mapping[str, timedelta], now: datetime
) -> list[jobs_repo.NewJob]:
    """The next run to enqueue when a job finished: one slot ``every`` later for a periodic run."""
    every = periodic.get(kind)
    if every is None or not is_slot(kind, dedup_key):
        return []
    return [slot(kind, now + every)]


async def ensure_periodic(engine: AsyncEngine, periodic: Mapping[str, timedelta] | None = None) -> None:
    """Make sure each periodic job has a pending run (called when a worker starts).

    ``periodic``: kind → interval; by default every domain's periodic tasks (``leadflow.tasks``).
    """
    if periodic is None:
        from leadflow.tasks import registry

        periodic = registry().periodic()
    now = utcnow()
    async with engine.begin() as conn:
        scheduled = await jobs_repo.pending_kinds(conn, sorted(periodic))
        await jobs_repo.enqueue(
            conn, [slot(kind, now) for kind in sorted(periodic) if kind not in scheduled], now
        )
