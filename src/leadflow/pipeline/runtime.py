"""Building and running a worker (``leadflow worker`` and the one inside ``leadflow serve``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from httpx_aiohttp import AiohttpTransport
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.config import Settings
from leadflow.pipeline.jobs import Tasks
from leadflow.pipeline.worker import Worker, WorkerContext, default_worker_id
from leadflow.security.crypto import FieldCipher


@asynccontextmanager
async def worker_context(
    engine: AsyncEngine, settings: Settings, worker_id: str | None = None
) -> AsyncIterator[WorkerContext]:
    from leadflow.tasks import worker_services

    timeout = httpx.Timeout(settings.http_timeout_seconds)
    # httpx's API for the connectors, aiohttp underneath: a third of httpcore's CPU per request
    # (bench/pipeline.py), and the worker's throughput is CPU-bound.
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=100, max_keepalive_connections=50))
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport) as http,
        worker_services(settings) as services,
    ):
        yield WorkerContext(
            engine=engine,
            settings=settings,
            cipher=FieldCipher(settings.encryption_keys, settings.blind_key),
            http=http,
            worker_id=worker_id or default_worker_id(),
            services=services,
        )


def build_worker(ctx: WorkerContext, **options: float | int | None) -> Worker:
    """A worker for every domain's registered tasks (``leadflow.tasks.registry``)."""
    from leadflow.tasks import registry

    return for_tasks(ctx, registry(), **options)


def for_tasks(ctx: WorkerContext, tasks: Tasks, **options: float | int | None) -> Worker:
    """A worker for the job kinds, committers, periodic runs and dead-letter hooks of ``tasks``."""
    return Worker(
        ctx,
        tasks.handlers(),
        committers=tasks.committers,
        periodic=tasks.periodic(),
        dead_letter_hooks=tasks.dead_letter_hooks,
        activity_writer=tasks.activity_writer,
        **options,  # type: ignore[arg-type]
    )


async def run_worker(
    engine: AsyncEngine, settings: Settings, stop: asyncio.Event, **options: float | int | None
) -> None:
    from leadflow.pipeline.scheduler import ensure_periodic

    async with worker_context(engine, settings) as ctx:
        await ensure_periodic(engine)
        await build_worker(ctx, **options).run(stop)
