"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from leadflow import __version__
from leadflow.campaigns.analytics import AnalyticsCache
from leadflow.campaigns.api import dashboard_router
from leadflow.campaigns.api import router as campaigns_router
from leadflow.campaigns.service import CampaignCache
from leadflow.config import Settings, load_settings
from leadflow.db import checkpointer, create_engine, point_reader
from leadflow.errors import install_error_handlers
from leadflow.forms.api import router as forms_router
from leadflow.kit.process import settle_gc, settle_threads
from leadflow.kit.state import AppState
from leadflow.kit.state import install as install_state
from leadflow.leads.api import extra_schemas
from leadflow.leads.api import router as leads_router
from leadflow.leads.capture import CaptureWriter, store
from leadflow.leads.capture.http import CAPTURE_PATH, CaptureFastPath, is_capture
from leadflow.observability import metrics
from leadflow.observability.alerts import start_monitor
from leadflow.observability.health import router as health_router
from leadflow.observability.logging import RequestContextMiddleware
from leadflow.pipeline.api import router as jobs_router
from leadflow.privacy.api import public_router as privacy_public_router
from leadflow.privacy.api import router as privacy_router
from leadflow.routing.api import router as routing_router
from leadflow.scoring.rules import normalise_catalog
from leadflow.security.api import router as security_router
from leadflow.security.audit import AuditBuffer
from leadflow.security.clientip import parse_networks
from leadflow.security.crypto import FieldCipher
from leadflow.security.ratelimit import Guard
from leadflow.security.tokens import TokenStore
from leadflow.web import install as install_workspace

log = structlog.get_logger("leadflow.app")

DESCRIPTION = """
Leadflow captures leads from marketing campaigns, scores and grades them, removes duplicates and
reports how each campaign performs.

* **Public**: `POST /v1/api/leads` (campaign forms), `GET /healthz`, the landing-page kit
  (`GET /v1/embed.js`, `POST /v1/forms/{campaign_id}`, `GET /f/{campaign_id}`; see docs/embed.md), the
  unsubscribe links of marketing e-mails (`GET`/`POST /v1/unsubscribe/{token}`, RFC 8058 one-click).
* **Everything else** needs `Authorization: Bearer <token>` (`leadflow tokens create --role ROLE`).
  Roles: admin, manager, sales, analyst (read-only aggregates), ingest (capture only),
  monitoring (`GET /metrics` only).
* **Errors** always use one shape: `{"success": false, "error": "CODE", "message": "...",
  "field": "dotted.path", "code": 400}`.
"""


async def _start_worker(
    engine: AsyncEngine, settings: Settings, stop: asyncio.Event
) -> tuple[asyncio.Task[None], Callable[[], None]]:
    """One worker inside the API process (the embedded default: `make run` needs nothing else)."""
    from leadflow.pipeline.runtime import build_worker, worker_context
    from leadflow.pipeline.scheduler import ensure_periodic

    ready: asyncio.Future[Callable[[], None]] = asyncio.get_running_loop().create_future()

    async def run() -> None:
        try:
            async with worker_context(engine, settings) as ctx:
                await ensure_periodic(engine)
                worker = build_worker(ctx)
                ready.set_result(worker.wake)
                await worker.run(stop)
        except Exception as exc:
            log.error("worker_crashed", exc_type=type(exc).__name__, exc_info=exc)
            if not ready.done():
                ready.set_exception(exc)

    task = asyncio.create_task(run())
    return task, await ready


def _start_spool(
    writer: CaptureWriter, engine: AsyncEngine, settings: Settings, keys: list[bytes], stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """PostgreSQL/MySQL: the capture spool (leads/spool.py) and its replayer; None on SQLite or when off."""
    if settings.is_sqlite or not settings.capture_spool_enabled:
        return None
    from sqlalchemy import text

    from leadflow.leads.spool import CaptureSpool

    spool = CaptureSpool(
        settings.capture_spool_dir, keys, max_bytes=settings.capture_spool_max_mb * 1024 * 1024
    )
    spool.adopt_orphans()  # files left by a process of this host that stopped before replaying them
    writer.spool = spool

    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return asyncio.create_task(spool.run(stop, probe, writer.write_spooled))


def fastapi_telemetry(environ: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for FastAPI's own OpenTelemetry instrumentation (FastAPI >= 0.165).

    FastAPI asks the OpenTelemetry API on every request whether a tracer, meter or logger provider
    is configured (three look-ups that read the environment: ~8 µs per request, 4 % of a capture's
    CPU under load). Leadflow configures none (it exports Prometheus metrics and JSON logs), so the
    instrumentation is switched off unless the environment asks for OpenTelemetry (any ``OTEL_``
    variable, as ``opentelemetry-instrument`` and the OTLP exporters use, or
    ``FASTAPI_OTEL_AUTO_CONFIGURE``); then FastAPI's defaults stay.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    if any(key.startswith(("OTEL_", "FASTAPI_OTEL_")) for key in environ):
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


async def _not_capture(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("LeadflowApp.capture_entry only ever receives capture requests")


class LeadflowApp(FastAPI):
    """FastAPI, with ``POST /v1/api/leads`` answered before the framework's own stack.

    ``capture_entry`` (set by :func:`create_app`) is ``RequestContextMiddleware(CaptureFastPath(...))``:
    a capture request gets its request id, client address, access line and metrics, and its answer,
    without the framework's layers in between (server-error and exception-telemetry middleware, body
    limit, exception middleware, routing), whose per-request cost showed in capture's profile.
    ``CaptureFastPath`` answers every error itself, as the exception handlers do. Every other request
    goes through FastAPI as usual.
    """

    capture_entry: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self.capture_entry
        if entry is not None and is_capture(scope):
            scope["app"] = self  # what Starlette sets: state_of(scope["app"])
            if self.root_path:
                scope["root_path"] = self.root_path
            await entry(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, capture_fast_path: bool = True) -> FastAPI:
    """The application; ``capture_fast_path=False`` routes lead capture through FastAPI (for tests)."""
    settings = settings or load_settings()
    # Fail fast on a missing or weak key (before serving anything).
    keys = settings.encryption_keys

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        reader = point_reader(settings)
        checkpoints = checkpointer(settings)
        if checkpoints is not None:
            checkpoints.start()
        state = AppState(
            settings=settings,
            engine=engine,
            tokens=TokenStore(engine),
            guard=Guard(settings),
            metrics=metrics.Exposition(engine, settings),
            metrics_open_networks=parse_networks(settings.metrics_open_networks),
            metrics_trusted=parse_networks(settings.trusted_proxies),
            cipher=FieldCipher(keys, settings.blind_key),
            catalog=normalise_catalog(settings.service_catalog),
            point_reader=reader,
            campaigns=CampaignCache(
                engine,
                settings.campaign_cache_seconds,
                functools.partial(store.capture_campaign, reader) if reader is not None else None,
            ),
            analytics=AnalyticsCache(settings.analytics_cache_seconds),
            audit=AuditBuffer(),
            writer=CaptureWriter(
                engine,
                dedup_window=timedelta(hours=settings.dedup_window_hours),
                qualifying_grades=settings.qualifying_grades,
                batch_max=settings.capture_batch_max,
                writer_process=settings.capture_writer_process,
                writer_process_gc=(settings.gc_freeze, settings.gc_young_threshold),
            ),
        )
        install_state(app, state)
        metrics.instrument_pool(engine)
        stop = asyncio.Event()
        audit_task = asyncio.create_task(state.audit.run(engine, stop, settings.audit_flush_seconds))
        worker_task: asyncio.Task[None] | None = None
        if settings.run_worker:
            worker_task, state.wake_worker = await _start_worker(engine, settings, stop)
        state.writer.on_commit = lambda: state.wake_worker()
        await state.writer.start()  # SQLite: its writer process starts now, not at the first lead
        monitor = start_monitor(engine, settings, stop)
        spool_task = _start_spool(state.writer, engine, settings, keys, stop)
        settle_gc(freeze=settings.gc_freeze, young_threshold=settings.gc_young_threshold)
        settle_threads(switch_interval_ms=settings.gil_switch_interval_ms)
        log.info(
            "started",
            version=__version__,
            database=engine.dialect.name,
            env=settings.leadflow_env,
            worker=settings.run_worker,
        )
        try:
            yield
        finally:
            await state.writer.close()
            await state.guard.close()
            if spool_task is not None:
                stop.set()
                await asyncio.gather(spool_task, return_exceptions=True)
                if state.writer.spool is not None:
                    state.writer.spool.close()
            stop.set()
            if worker_task is not None:
                await asyncio.gather(worker_task, return_exceptions=True)
            await asyncio.gather(audit_task, return_exceptions=True)  # writes what it still counts
            if monitor is not None:
                await asyncio.gather(monitor, return_exceptions=True)
                from leadflow.integrations.mailer import close_smtp_pools

                close_smtp_pools()  # the alert e-mails' connections
            if reader is not None:
                reader.close()
            if checkpoints is not None:
                checkpoints.stop()
            await engine.dispose()
            metrics.mark_process_dead()
            log.info("stopped")

    app = LeadflowApp(
        title="Leadflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by the workspace from vendored Swagger UI files (web/docs.py): offline
        redoc_url=None,  # ReDoc would load its script from a CDN
        **fastapi_telemetry(os.environ),
    )
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(metrics.router)
    app.include_router(leads_router)
    app.include_router(campaigns_router)
    app.include_router(dashboard_router)
    app.include_router(routing_router)
    app.include_router(jobs_router)
    app.include_router(security_router)
    app.include_router(privacy_router)
    app.include_router(forms_router)
    app.include_router(privacy_public_router)
    install_workspace(app)  # the staff workspace's pages, /static/ and the offline /docs
    proxies = parse_networks(settings.trusted_proxies)
    limits = {"max_header_bytes": settings.max_header_bytes, "max_header_count": settings.max_header_count}
    if capture_fast_path:
        # Capture requests go to the fast path before FastAPI's stack (LeadflowApp), inside their own
        # request-context layer; the route stays for the OpenAPI document.
        route = next(
            r
            for r in leads_router.routes
            if isinstance(r, APIRoute) and r.path == CAPTURE_PATH and "POST" in (r.methods or ())
        )
        fast = CaptureFastPath(_not_capture, route=route)
        app.capture_entry = RequestContextMiddleware(fast, proxies, **limits)
    app.add_middleware(RequestContextMiddleware, trusted_proxies=proxies, **limits)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(extra_schemas())
        # Payload validation answers 400 in the error shape (never FastAPI's 422).
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                answers = operation.get("responses", {})
                if answers.pop("422", None) is not None and "400" not in answers:
                    answers["400"] = {
                        "description": "Invalid input (VALIDATION_ERROR)",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                        },
                    }
        for name in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
