"""The staff workspace: server-rendered pages over the same services and permissions as the API.

``install(app)`` mounts every page router, ``/static/`` and the offline ``/docs``. A page module adds
its router to ``ROUTERS`` (one line) — see docs/workspace.md.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from leadflow.web import (
    account,
    analytics,
    assets,
    audit,
    campaigns,
    docs,
    imports,
    inbox,
    integrations,
    lead,
    leads,
    new_lead,
    team,
    tokens,
)
from leadflow.web.auth import PageAnswer, answer_page

ROUTERS: tuple[APIRouter, ...] = (
    account.router,
    inbox.router,
    leads.router,
    new_lead.router,
    imports.router,
    lead.router,  # after /leads/new, /leads/import, /leads/export.csv: its /leads/{lead_id} matches them
    campaigns.router,
    analytics.router,
    team.router,
    integrations.router,
    audit.router,
    tokens.router,
)


def install(app: FastAPI) -> None:
    app.add_exception_handler(PageAnswer, answer_page)
    app.router.routes.append(assets.route)
    app.router.routes.append(docs.route)
    for router in ROUTERS:
        app.include_router(router)
