"""Privacy jobs: at connected tools, erase a person (``privacy.erase``) or stop marketing to them
(``privacy.unsubscribe``, after withdrawn consent, an opt-out of sale/sharing or an unsubscribe link);
and the daily ``privacy.retention`` run.

Which tools take part is a fact of each connector (the :class:`~leadflow.integrations.base.Erases` and
:class:`~leadflow.integrations.base.Unsubscribes` traits); nothing here names a connector. The e-mail
address travels encrypted in the job payload and is scrubbed from it once the tool confirmed.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.config import Settings
from leadflow.integrations import registry
from leadflow.integrations.base import (
    DeliveryContext,
    Erases,
    PermanentError,
    PrivacySubject,
    Unsubscribes,
)
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.pipeline.jobs import JobKind, Task, Tasks
from leadflow.pipeline.repository import NewJob
from leadflow.pipeline.worker import HandlerResult, WorkerContext
from leadflow.security.crypto import FieldCipher

MAX_ATTEMPTS = 10
ERASE = JobKind("privacy.erase", MAX_ATTEMPTS)
UNSUBSCRIBE = JobKind("privacy.unsubscribe", MAX_ATTEMPTS)
RETENTION = JobKind("privacy.retention")
ERASE_JOB = ERASE.name
UNSUBSCRIBE_JOB = UNSUBSCRIBE.name
KINDS = {ERASE_JOB: ERASE, UNSUBSCRIBE_JOB: UNSUBSCRIBE}
TRAITS: dict[str, type[Any]] = {ERASE_JOB: Erases, UNSUBSCRIBE_JOB: Unsubscribes}
SEALED_FIELD = "erasure_email"  # associated data of the encrypted address in job payloads
RETENTION_EVERY = timedelta(days=1)
RETENTION_BATCHES = 100  # of 1000 leads: at most 100 000 leads a day, the rest tomorrow


def remote_jobs(
    kind: str,
    settings: Settings,
    cipher: FieldCipher,
    *,
    email: str,
    digest: str,
    lead_ids: Sequence[str],
    request_id: str | None,
    now: datetime,
    campaign_ids: Sequence[str] = (),
) -> tuple[list[str], list[NewJob]]:
    """One job per configured connector with the trait ``kind`` needs; returns their names too."""
    sealed = cipher.encrypt(email, SEALED_FIELD)
    assert sealed is not None
    names: list[str] = []
    made: list[NewJob] = []
    for connector in registry.configured_with(settings, TRAITS[kind]):
        names.append(connector.name)
        made.append(
            KINDS[kind].new(
                {
                    "connector": connector.name,
                    "email": base64.b64encode(sealed).decode(),
                    "lead_ids": list(lead_ids),
                    "campaign_ids": sorted(set(campaign_ids)),
                    "request_id": request_id,
                },
                run_at=now,
                dedup_key=f"{kind}:{connector.name}:{digest[:32]}:{int(now.timestamp() * 1000)}",
            )
        )
    return names, made


async def run_remote(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Erase at / unsubscribe from one connected tool, then scrub the address from the job."""
    from leadflow.integrations.tasks import connector_for
    from leadflow.leads.views import loaders

    name = str(job.payload["connector"])
    sealed = job.payload.get("email")
    if not sealed:
        return HandlerResult(connector=name, response_excerpt="already done")
    email = ctx.cipher.decrypt(base64.b64decode(sealed), SEALED_FIELD)
    assert email is not None
    connector = connector_for(ctx, name)
    if not connector.configured():
        raise PermanentError(f"the {name} connector is not configured")
    campaign_settings = []
    for campaign_id in job.payload.get("campaign_ids") or ():
        campaign = await loaders(ctx).campaigns.load(str(campaign_id))
        if campaign is not None and campaign.settings:
            campaign_settings.append(dict(campaign.settings))
    subject = PrivacySubject(
        email=email,
        lead_ids=tuple(str(i) for i in job.payload.get("lead_ids") or ()),
        request_id=job.payload.get("request_id"),
        campaign_settings=tuple(campaign_settings),
    )
    dctx = DeliveryContext(
        settings=ctx.settings,
        http=ctx.http,
        job_id=job.id,
        attempt=job.attempts,
        dedup_key=job.dedup_key or f"job:{job.id}",
        payload={},
    )
    if job.kind == ERASE_JOB and isinstance(connector, Erases):
        outcome = await connector.erase(subject, dctx)
    elif job.kind == UNSUBSCRIBE_JOB and isinstance(connector, Unsubscribes):
        outcome = await connector.unsubscribe(subject, dctx)
    else:
        raise PermanentError(f"{name} cannot do {job.kind}")
    return HandlerResult(
        status_code=outcome.status_code,
        connector=name,
        response_excerpt=outcome.detail,
        # Stored with the job's completion: the address leaves the outbox once the tool confirmed.
        payload={"connector": name, "email": None, "lead_ids": [], "campaign_ids": [], "done": True},
    )


async def retention(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Daily: anonymise or delete leads older than the retention period, one batch per job.

    The scheduled run and each continuation write one batch in the worker's commit and enqueue the
    next step: another batch while the last one changed anything (at most ``RETENTION_BATCHES``),
    then the reclaim step (:func:`_reclaim`), whose record says how many leads went.
    """
    from leadflow.privacy.service import enforce_retention

    payload = job.payload or {}
    if payload.get("step") == "reclaim":
        return await _reclaim(job, ctx)
    root = int(payload.get("root") or job.id)  # the scheduled run this continues
    batch = int(payload.get("batch", 0))
    done = int(payload.get("done", 0))
    since = str(payload.get("since") or utcnow().isoformat())  # when the day's run started

    async def write(conn: AsyncConnection) -> list[NewJob]:
        report = await enforce_retention(conn, ctx.cipher, ctx.settings, dry_run=False)
        more = report.progressed and batch + 1 < RETENTION_BATCHES
        after = {"batch": batch + 1} if more else {"step": "reclaim"}
        step = {"root": root, "since": since, "done": done + report.done, **after}
        key = f"retention:{root}:{batch + 1 if more else 'reclaim'}"
        return [RETENTION.new(step, run_at=utcnow(), dedup_key=key)]

    return HandlerResult(response_excerpt=f"batch {batch + 1}: counted in the reclaim step", write=write)


async def _reclaim(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """The last step of a retention run: reclaim the space of what went, and audit the run."""
    from leadflow.db import reclaim_space
    from leadflow.privacy.repository import erased_since
    from leadflow.security.audit import Actor, record

    total = int(job.payload.get("done", 0))
    started = datetime.fromisoformat(str(job.payload["since"]))
    async with ctx.engine.connect() as conn:
        erased = await erased_since(conn, started - RETENTION_EVERY - timedelta(hours=1))
    # Deleted or anonymised rows leave their bytes in the database files until the space is
    # reclaimed: vacuum (PostgreSQL), rebuild (MySQL) or checkpoint (SQLite) when anything went.
    # (Maintenance outside any transaction: VACUUM cannot run in one, and repeating it is harmless.)
    reclaimed = await reclaim_space(ctx.engine) if total or erased else "nothing to reclaim"
    action = ctx.settings.retention_action

    async def audit(conn: AsyncConnection) -> list[NewJob]:
        if total:
            actor = Actor("retention", None, "worker")
            await record(conn, actor, "privacy.retention", None, None, {"done": total, "action": action})
        return []

    return HandlerResult(response_excerpt=f"{total} leads {action}d; {reclaimed}", write=audit)


def register(tasks: Tasks) -> None:
    tasks.add(
        Task(ERASE, run_remote),
        Task(UNSUBSCRIBE, run_remote),
        Task(RETENTION, retention, every=RETENTION_EVERY),
    )
