"""``leadflow jobs`` and ``leadflow worker``."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

jobs_app = typer.Typer(help="Inspect and replay background jobs.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="pending | running | done | dead")] = None,
    kind: Annotated[str | None, typer.Option(help="Job kind, e.g. deliver")] = None,
    limit: Annotated[int, typer.Option(help="At most this many")] = 50,
) -> None:
    """List jobs, newest first, as JSON lines."""
    from leadflow.cli import _run, _settings
    from leadflow.pipeline import service

    settings = _settings()

    async def work(engine: AsyncEngine) -> Any:
        async with engine.connect() as conn:
            return await service.page(conn, status, kind, None, limit)

    for job in _run(settings, work).items:
        typer.echo(job.model_dump_json(exclude={"payload"}))


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[int, typer.Argument(help="Job id")]) -> None:
    """Put one dead job back in the queue."""
    from leadflow.cli import _run, _settings
    from leadflow.pipeline import service

    settings = _settings()

    async def work(engine: AsyncEngine) -> Any:
        from leadflow.security.audit import CLI, record

        async with engine.begin() as conn:
            result = await service.retry(conn, job_id)
            await record(conn, CLI, "job.retry", "job", str(job_id))
            return result

    job = _run(settings, work)
    typer.echo(f"job {job.id} requeued ({job.kind})")


@jobs_app.command("retry-dead")
def jobs_retry_dead(kind: Annotated[str | None, typer.Option(help="Only this kind")] = None) -> None:
    """Put every dead job back in the queue."""
    from leadflow.cli import _run, _settings
    from leadflow.kit.clock import utcnow
    from leadflow.pipeline import repository

    settings = _settings()

    async def work(engine: AsyncEngine) -> int:
        from leadflow.security.audit import CLI, record

        async with engine.begin() as conn:
            count = await repository.retry_dead(conn, kind, utcnow())
            await record(conn, CLI, "job.retry_dead", "job", None, {"kind": kind, "count": count})
            return count

    typer.echo(f"{_run(settings, work)} dead jobs requeued")


def worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once (WORKER_CONCURRENCY)")] = None,
    once: Annotated[bool, typer.Option("--once", help="Process what is due, then exit")] = False,
    lease: Annotated[float | None, typer.Option(help="Lease seconds (WORKER_LEASE_SECONDS)")] = None,
) -> None:
    """Run a background worker: enrichment, routing, notifications and integrations."""
    from leadflow.cli import _settings
    from leadflow.db import create_engine
    from leadflow.kit.process import settle_gc, settle_threads
    from leadflow.observability import metrics
    from leadflow.observability.alerts import start_monitor
    from leadflow.observability.health import preflight
    from leadflow.observability.logging import configure_logging
    from leadflow.pipeline.runtime import build_worker, run_worker, worker_context
    from leadflow.pipeline.scheduler import ensure_periodic

    settings = _settings()
    sock = None
    if settings.metrics_port is not None and not once:
        try:
            sock = metrics.bind(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            typer.echo(
                f"error: cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
                f"{exc.strerror or exc}",
                err=True,
            )
            raise typer.Exit(2) from exc

    async def main() -> None:
        engine = create_engine(settings)
        try:
            await preflight(engine, settings)  # one line on stderr if it fails (see cli.OneLineErrors)
            configure_logging(settings.log_level)
            if once:
                async with worker_context(engine, settings) as ctx:
                    done = await build_worker(
                        ctx, concurrency=concurrency, lease_seconds=lease
                    ).run_until_idle(300)
                typer.echo(f"{done} jobs processed")
                return
            await ensure_periodic(engine)
            settle_gc(freeze=settings.gc_freeze, young_threshold=settings.gc_young_threshold)  # as serve
            settle_threads(switch_interval_ms=settings.gil_switch_interval_ms)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            extras: list[asyncio.Task[None]] = []
            metrics.instrument_pool(engine)
            if sock is not None:
                extras.append(asyncio.create_task(metrics.serve_metrics(engine, settings, stop, sock)))
            monitor = start_monitor(engine, settings, stop)
            if monitor is not None:
                extras.append(monitor)
            try:
                await run_worker(engine, settings, stop, concurrency=concurrency, lease_seconds=lease)
            finally:
                stop.set()
                await asyncio.gather(*extras, return_exceptions=True)
        finally:
            await engine.dispose()
            metrics.mark_process_dead()

    # uvloop (installed with uvicorn[standard]) as under `leadflow serve`: the worker is CPU-bound.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(main())
    else:
        uvloop.run(main())
