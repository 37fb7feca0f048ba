"""Delivery jobs: ``deliver`` runs one connector for one lead and records the result as an activity.

:func:`fan_out` decides which connectors get a lead (configured, allowed by the lead's privacy
choices, wanted by the connector): one ``deliver`` job each, with a dedup key per lead and connector
so a re-run adds nothing. A connector's follow-up step (e.g. a sequence's next e-mail) is another
``deliver`` job, enqueued with the attempt's commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from leadflow.integrations import registry
from leadflow.integrations.base import Connector, DeliveryContext, LeadView, PermanentError
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.leads.activities import Activity
from leadflow.leads.models import ActivityType
from leadflow.leads.views import lead_view, loaders
from leadflow.observability import metrics
from leadflow.pipeline.jobs import JobKind, Task, Tasks
from leadflow.pipeline.repository import NewJob
from leadflow.pipeline.worker import HandlerResult, WorkerContext
from leadflow.privacy.policy import allowed as privacy_allows

DELIVER = JobKind("deliver")
DELIVER_JOB = DELIVER.name


def connector_for(ctx: WorkerContext, name: str) -> Connector:
    """One connector instance per worker (so e.g. an OAuth token cache is reused across deliveries)."""
    cache: dict[str, Connector] = ctx.services.setdefault("connectors", {})
    if name not in cache:
        cache[name] = registry.build(name, ctx.settings)
    return cache[name]


def delivery(
    name: str,
    connector: Connector,
    lead_id: int,
    *,
    run_at: datetime,
    dedup_key: str,
    extra: dict[str, Any] | None = None,
) -> NewJob:
    """The ``deliver`` job of one connector for one lead (``extra``: more payload, e.g. a reason)."""
    return DELIVER.new(
        {"connector": name, "lead_id": lead_id, **(extra or {})},
        run_at=run_at,
        lead_id=lead_id,
        dedup_key=dedup_key,
        max_attempts=connector.max_attempts,
        connector=name,
    )


def fan_out(ctx: WorkerContext, view: LeadView, now: datetime) -> list[NewJob]:
    """One ``deliver`` job per connector that is configured, allowed and wants this lead."""
    made: list[NewJob] = []
    for name in registry.all_names():
        connector = connector_for(ctx, name)
        if connector.configured() and privacy_allows(connector, view) and connector.wants(view):
            made.append(
                delivery(str(name), connector, view.id, run_at=now, dedup_key=f"deliver:{name}:{view.id}")
            )
    return made


async def deliver(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    name = str(job.payload["connector"])
    lead_id = int(job.payload["lead_id"])
    connector = connector_for(ctx, name)
    if not connector.configured():
        raise PermanentError(f"the {name} connector is not configured (credentials were removed)")
    row = await loaders(ctx).leads.load(lead_id)
    if row is None:
        return HandlerResult(connector=name, response_excerpt="lead no longer exists")
    view = await lead_view(ctx, row)
    if row.anonymized_at is not None or not privacy_allows(connector, view):
        return HandlerResult(
            connector=name, response_excerpt="not allowed by the lead's privacy choices; nothing sent"
        )
    dedup_key = job.dedup_key or f"job:{job.id}"
    outcome = await connector.deliver(
        view,
        DeliveryContext(
            settings=ctx.settings,
            http=ctx.http,
            job_id=job.id,
            attempt=job.attempts,
            dedup_key=dedup_key,
            payload=dict(job.payload),
        ),
    )
    now = utcnow()
    kind: ActivityType = "synced" if connector.counts_as_sync else "notification_sent"
    follow_ups: tuple[NewJob, ...] = ()
    if outcome.follow_up is not None:
        follow = outcome.follow_up
        follow_ups = (
            delivery(
                name,
                connector,
                lead_id,
                run_at=now + timedelta(seconds=follow.delay_seconds),
                dedup_key=f"{dedup_key}:{follow.key}",
                extra=follow.payload,
            ),
        )
    metrics.STAGE_LATENCY.labels(f"delivered:{name}").observe((now - row.created_at).total_seconds())
    return HandlerResult(
        status_code=outcome.status_code,
        response_excerpt=outcome.response_excerpt,
        connector=name,
        activities=(
            Activity(
                lead_id,
                kind,
                outcome.detail or f"Delivered by {name}",
                now,
                details={
                    "connector": name,
                    "status_code": outcome.status_code,
                    "external_id": outcome.external_id,
                },
            ).row(),
        ),
        jobs=follow_ups,
    )


def register(tasks: Tasks) -> None:
    tasks.add(Task(DELIVER, deliver))
