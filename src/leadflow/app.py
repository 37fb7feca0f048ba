"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from leadflow import __version__
from leadflow.campaigns.api import router as campaigns_router
from leadflow.campaigns.service import CampaignCache
from leadflow.config import Settings, load_settings
from leadflow.db import create_engine
from leadflow.errors import install_error_handlers
from leadflow.leads.api import extra_schemas
from leadflow.leads.api import router as leads_router
from leadflow.leads.capture import CaptureWriter
from leadflow.observability.health import router as health_router
from leadflow.observability.logging import RequestContextMiddleware
from leadflow.routing.api import router as routing_router
from leadflow.scoring.rules import normalise_catalog
from leadflow.security.crypto import FieldCipher
from leadflow.security.tokens import TokenStore

log = structlog.get_logger("leadflow.app")

DESCRIPTION = """
Leadflow captures leads from marketing campaigns, scores and grades them, removes duplicates and
reports how each campaign performs.

* **Public**: `POST /v1/api/leads` (campaign forms), `GET /healthz`.
* **Everything else** needs `Authorization: Bearer <token>` (`leadflow tokens create --role ROLE`).
  Roles: admin, manager, sales, analyst (read-only aggregates), ingest (capture only).
* **Errors** always use one shape: `{"success": false, "error": "CODE", "message": "...",
  "field": "dotted.path", "code": 400}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    # Fail fast on a missing or weak key (before serving anything).
    keys = settings.encryption_keys

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.cipher = FieldCipher(keys, settings.blind_key)
        app.state.catalog = normalise_catalog(settings.service_catalog)
        app.state.campaigns = CampaignCache(engine, settings.campaign_cache_seconds)
        app.state.tokens = TokenStore(engine)
        app.state.writer = CaptureWriter(
            engine,
            dedup_window=timedelta(hours=settings.dedup_window_hours),
            qualifying_grades=settings.qualifying_grades,
            batch_max=settings.capture_batch_max,
        )
        log.info("started", version=__version__, database=engine.dialect.name, env=settings.leadflow_env)
        try:
            yield
        finally:
            await app.state.writer.close()
            await engine.dispose()
            log.info("stopped")

    app = FastAPI(
        title="Leadflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
    app.include_router(leads_router)
    app.include_router(campaigns_router)
    app.include_router(routing_router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(extra_schemas())
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
