"""Every domain's jobs, registered with the worker (the worker's composition root, as app.py is the API's).

Each domain owns its job kinds and handlers in its ``tasks.py`` and registers them here with one
``register(tasks)`` call; the outbox engine (``pipeline/``) runs whatever this registry holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

from leadflow.config import Settings
from leadflow.pipeline.jobs import Tasks


@cache
def registry() -> Tasks:
    from leadflow.campaigns import tasks as campaigns
    from leadflow.integrations import tasks as integrations
    from leadflow.leads import tasks as leads
    from leadflow.observability import tasks as observability
    from leadflow.privacy import tasks as privacy
    from leadflow.reports import tasks as reports

    tasks = Tasks()
    for domain in (leads, integrations, privacy, reports, observability, campaigns):
        domain.register(tasks)
    return tasks


@asynccontextmanager
async def worker_services(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """What the handlers share within one worker (``WorkerContext.services``), closed when it stops."""
    from leadflow.enrichment.service import Enricher
    from leadflow.integrations.mailer import close_smtp_pools
    from leadflow.scoring.rules import normalise_catalog

    enricher = Enricher(settings)
    try:
        yield {"enricher": enricher, "catalog": normalise_catalog(settings.service_catalog)}
    finally:
        enricher.close()
        close_smtp_pools()
