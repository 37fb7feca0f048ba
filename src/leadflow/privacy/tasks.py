"""Privacy jobs at connected tools: erase a person (``privacy.erase``) or stop marketing to them
(``privacy.unsubscribe``, after withdrawn consent, an opt-out of sale/sharing or an unsubscribe link).

Which tools take part is a fact of each connector (the :class:`~leadflow.integrations.base.Erases` and
:class:`~leadflow.integrations.base.Unsubscribes` traits); nothing here names a connector. The e-mail
address travels encrypted in the job payload and is scrubbed from it once the tool confirmed.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update

from leadflow.config import Settings
from leadflow.integrations import registry
from leadflow.integrations.base import (
    DeliveryContext,
    Erases,
    PermanentError,
    PrivacySubject,
    Unsubscribes,
)
from leadflow.kit.models import AnyRow
from leadflow.pipeline import repository as jobs_repo
from leadflow.pipeline.worker import Handler, HandlerResult, WorkerContext
from leadflow.security.crypto import FieldCipher

ERASE_JOB = "privacy.erase"
UNSUBSCRIBE_JOB = "privacy.unsubscribe"
TRAITS: dict[str, type[Any]] = {ERASE_JOB: Erases, UNSUBSCRIBE_JOB: Unsubscribes}
SEALED_FIELD = "erasure_email"  # associated data of the encrypted address in job payloads
MAX_ATTEMPTS = 10


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
) -> tuple[list[str], list[jobs_repo.NewJob]]:
    """One job per configured connector with the trait ``kind`` needs; returns their names too."""
    sealed = cipher.encrypt(email, SEALED_FIELD)
    assert sealed is not None
    names: list[str] = []
    made: list[jobs_repo.NewJob] = []
    for connector in registry.configured_with(settings, TRAITS[kind]):
        names.append(connector.name)
        made.append(
            jobs_repo.NewJob(
                kind=kind,
                payload={
                    "connector": connector.name,
                    "email": base64.b64encode(sealed).decode(),
                    "lead_ids": list(lead_ids),
                    "campaign_ids": sorted(set(campaign_ids)),
                    "request_id": request_id,
                },
                run_at=now,
                dedup_key=f"{kind}:{connector.name}:{digest[:32]}:{int(now.timestamp() * 1000)}",
                max_attempts=MAX_ATTEMPTS,
            )
        )
    return names, made


async def run_remote(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Erase at / unsubscribe from one connected tool, then scrub the address from the job."""
    from leadflow.pipeline.processing import connector_for, loaders

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
    async with ctx.engine.begin() as conn:
        await conn.execute(
            update(jobs_repo.jobs)
            .where(jobs_repo.jobs.c.id == job.id)
            .values(
                payload={"connector": name, "email": None, "lead_ids": [], "campaign_ids": [], "done": True}
            )
        )
    return HandlerResult(status_code=outcome.status_code, connector=name, response_excerpt=outcome.detail)


def handlers() -> dict[str, Handler]:
    return {ERASE_JOB: run_remote, UNSUBSCRIBE_JOB: run_remote}
