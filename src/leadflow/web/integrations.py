"""Integrations (``/integrations``, admins): each connector's state — configured, last success, failed
attempts in 24 h, dead jobs — and retrying dead deliveries through the jobs service, audited like
``POST /v1/api/jobs/{id}/retry`` and ``/v1/api/jobs/retry-dead``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.responses import RedirectResponse, Response

from leadflow.integrations import registry
from leadflow.kit.clock import utcnow
from leadflow.kit.state import AfterCommitDep, AppStateDep, ReadConn, WriteConn
from leadflow.pipeline import repository as jobs_repo
from leadflow.pipeline import service as jobs
from leadflow.security.audit import record
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import actor, count_view, page_router, require_page
from leadflow.web.render import render

router = page_router()
# The signed-in user with the API scope the page needs (web/auth.py PageUser, typed for mypy).
Admin = Annotated[SessionPrincipal, Depends(require_page("admin"))]
DELIVER = "deliver"


@router.get("/integrations")
async def integrations_page(request: Request, user: Admin, state: AppStateDep, conn: ReadConn) -> Response:
    count_view(request, user, "integrations.read", "job")
    since = utcnow() - timedelta(hours=24)
    configured = {c.name for c in registry.configured(state.settings)}
    connectors = []
    for name in registry.all_names():
        activity = await jobs_repo.connector_activity(conn, str(name), since)
        connectors.append({"name": str(name), "configured": name in configured, "activity": activity})
    dead = await jobs.page(conn, "dead", DELIVER, None, 50)
    retried = request.query_params.get("retried")
    return render(
        request,
        "integrations.html",
        {"title": "Integrations", "connectors": connectors, "dead": dead.items, "retried": retried},
    )


@router.post("/integrations/jobs/{job_id}/retry")
async def retry_job(
    request: Request,
    user: Admin,
    conn: WriteConn,
    after: AfterCommitDep,
    state: AppStateDep,
    job_id: int = Path(ge=1, le=2**62),
) -> Response:
    await jobs.retry(conn, job_id)
    await record(conn, actor(request, user), "job.retry", "job", str(job_id))
    after.add(state.wake_worker)
    return RedirectResponse("/integrations?retried=1", status_code=303)


@router.post("/integrations/jobs/retry-dead")
async def retry_dead(
    request: Request, user: Admin, conn: WriteConn, after: AfterCommitDep, state: AppStateDep
) -> Response:
    count = await jobs_repo.retry_dead(conn, DELIVER, utcnow())
    await record(conn, actor(request, user), "job.retry_dead", "job", None, {"kind": DELIVER, "count": count})
    after.add(state.wake_worker)
    return RedirectResponse(f"/integrations?retried={count}", status_code=303)
