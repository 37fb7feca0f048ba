"""What happens after capture: enrich → re-score → route/assign → fan out one job per delivery.

``lead.process`` runs once per captured lead. Enrichment happens outside any transaction (DNS may
take a moment); everything it decides — enrichment columns, a new score, the assignment and the
delivery jobs — is then written in one transaction, so a crash leaves either all or nothing, and a
re-run does the same again (delivery jobs carry a dedup key per lead and connector).
``deliver`` runs one connector for one lead and records the result as an activity.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import repository as campaigns_repo
from leadflow.integrations import registry
from leadflow.integrations.base import Assignee, Connector, DeliveryContext, LeadView, PermanentError
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow, table_of
from leadflow.leads import repository as leads_repo
from leadflow.leads.capture import PROCESS_JOB
from leadflow.leads.models import PII_FIELDS
from leadflow.observability import metrics
from leadflow.pipeline import repository as jobs_repo
from leadflow.pipeline.worker import Handler, HandlerResult, WorkerContext
from leadflow.privacy.policy import allowed as privacy_allows
from leadflow.privacy.regions import regime
from leadflow.routing.models import TeamMember
from leadflow.scoring import rules

log = structlog.get_logger("leadflow.pipeline")

DELIVER_JOB = "deliver"
OPTIONAL_COLUMNS = ("phone", "company", "service_interest", "urgency", "message", "budget_range", "timeline")
members = table_of(TeamMember)


def _activity(
    lead_id: int, kind: str, description: str, meta: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "activity_type": kind,
        "description": description,
        "performed_by": "system",
        "metadata": meta,
        "created_at": now,
    }


def score_input(row: AnyRow, email_kind: str, catalog: frozenset[str]) -> rules.ScoreInput:
    """Rebuild the score's inputs from a stored lead (ciphertext presence stands for "given")."""
    return rules.ScoreInput(
        email_kind=email_kind,
        phone=row.phone is not None,
        company=row.company is not None,
        service_interest=row.service_interest,
        urgency=row.urgency,
        budget_range=row.budget_range,
        filled_optional=frozenset(c for c in OPTIONAL_COLUMNS if getattr(row, c) is not None),
        time_on_page_seconds=row.time_on_page_seconds,
        returning_visitor=bool(row.returning_visitor),
        channel=row.channel or "Unassigned",
        service_catalog=catalog,
    )


async def process_lead(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    from leadflow.enrichment.service import Enricher, EnrichmentResult
    from leadflow.routing.rules import CampaignRouting, RoutingLead
    from leadflow.routing.service import assign

    lead_id = int(job.payload["lead_id"])
    async with ctx.engine.connect() as conn:
        row = await leads_repo.get_by_id(conn, lead_id)
        if row is None:  # erased before processing: nothing to do
            return HandlerResult()
        campaign = await campaigns_repo.get(conn, row.campaign_id)
    assert campaign is not None

    enricher: Enricher = ctx.services["enricher"]
    enrichment: EnrichmentResult | None = None
    try:
        ip = ctx.cipher.decrypt(row.ip_address, "ip_address")
        enrichment = await enricher.enrich(email_domain=row.email_domain or "", ip=ip)
    except Exception as exc:  # enrichment never blocks routing
        log.warning("enrichment_failed", lead_id=lead_id, exc_type=type(exc).__name__)

    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    acts: list[dict[str, Any]] = []
    geo = enrichment.geo if enrichment else None
    if enrichment is not None:
        values.update(
            email_kind=enrichment.email_kind,
            company_domain=enrichment.company_domain,
            geo_country=geo.country_code if geo else None,
            geo_region=geo.region_name if geo else None,
            geo_city=geo.city if geo else None,
            enrichment=enrichment.as_json(),
            enriched_at=now,
        )
        if row.privacy_regime is None and geo is not None:
            values["privacy_regime"] = regime(geo.country_code, geo.region_code, geo.in_eu)
        acts.append(
            _activity(
                lead_id,
                "enriched",
                "; ".join(f"{s.name}: {s.status}" for s in enrichment.steps),
                {
                    "steps": [
                        {"name": s.name, "status": s.status, "detail": s.detail} for s in enrichment.steps
                    ]
                },
                now,
            )
        )
        # Re-score when enrichment changed an input (an undeliverable domain is not a business address).
        kind = "undeliverable" if enrichment.mx == "invalid" else enrichment.email_kind
        catalog = ctx.services["catalog"] | rules.normalise_catalog(campaign.services or ())
        result = rules.score(score_input(row, kind, catalog))
        if result.total != row.lead_score:
            values.update(
                lead_score=result.total, lead_grade=result.grade, score_breakdown=result.breakdown()
            )
            if row.qualification_status in ("unqualified", "marketing_qualified"):
                qualifying = result.grade in ctx.settings.qualifying_grades
                values["qualification_status"] = "marketing_qualified" if qualifying else "unqualified"
            acts.append(
                _activity(
                    lead_id,
                    "scored",
                    f"Score changed from {row.lead_score} to {result.total} after enrichment",
                    {"from": row.lead_score, "to": result.total, "grade": result.grade},
                    now,
                )
            )

    async with ctx.engine.begin() as conn:
        # Re-read under a row lock: a salesperson may have assigned or changed the lead meanwhile.
        current = await leads_repo.lock_for_update(conn, row.public_id)
        if current is None:
            return HandlerResult(response_excerpt="lead erased during processing")
        if current.assigned_to is None and current.status == "new":
            decision = await assign(
                conn,
                RoutingLead(
                    lead_id=lead_id,
                    campaign_id=row.campaign_id,
                    service_interest=row.service_interest,
                    lead_score=int(values.get("lead_score", row.lead_score)),
                    lead_grade=str(values.get("lead_grade", row.lead_grade)),
                    geo_country=geo.country_code if geo else None,
                    geo_region_code=geo.region_code if geo else None,
                    urgency_level=rules.urgency_level(row.urgency),
                ),
                CampaignRouting(auto_assign=bool(campaign.auto_assign), assigned_to=campaign.assigned_to),
                ctx.settings,
                now,
            )
            if decision.assignee is not None:
                values.update(assigned_to=decision.assignee, assigned_member_id=decision.member_id)
            acts.append(
                _activity(
                    lead_id,
                    "assigned",
                    decision.reason,
                    {"to": decision.assignee, "member_id": decision.member_id, "rule": decision.rule},
                    now,
                )
            )
        await leads_repo.update_lead(conn, lead_id, values)
        await leads_repo.insert_activities(conn, acts)
        fresh = await leads_repo.get_by_id(conn, lead_id)
        assert fresh is not None
        view = await lead_view(conn, ctx, fresh)
        new_jobs = []
        for name in registry.all_names():
            connector = registry.build(name, ctx.settings)
            if connector.configured() and privacy_allows(str(name), view) and connector.wants(view):
                new_jobs.append(
                    jobs_repo.NewJob(
                        kind=DELIVER_JOB,
                        payload={"connector": str(name), "lead_id": lead_id},
                        run_at=now,
                        lead_id=lead_id,
                        dedup_key=f"deliver:{name}:{lead_id}",
                        max_attempts=connector.max_attempts,
                    )
                )
        await jobs_repo.enqueue(conn, new_jobs, now)
    metrics.STAGE_LATENCY.labels("processed").observe((utcnow() - row.created_at).total_seconds())
    return HandlerResult(response_excerpt=f"{len(new_jobs)} deliveries queued")


async def lead_view(conn: AsyncConnection, ctx: WorkerContext, row: AnyRow) -> LeadView:
    """The decrypted lead as connectors see it, with its assignee and the campaign's settings."""
    data = {name: ctx.cipher.decrypt(getattr(row, name), name) for name in PII_FIELDS}
    assignee = None
    if row.assigned_member_id is not None:
        member = (await conn.execute(select(members).where(members.c.id == row.assigned_member_id))).first()
        if member is not None:
            assignee = Assignee(name=member.name, email=member.email, phone=member.phone)
    if assignee is None and row.assigned_to:
        assignee = Assignee(name=row.assigned_to, email=row.assigned_to)
    campaign = await campaigns_repo.get(conn, row.campaign_id)
    return LeadView(
        id=row.id,
        lead_id=row.public_id,
        first_name=data["first_name"] or "",
        last_name=data["last_name"] or "",
        email=data["email"] or "",
        phone=data["phone"],
        company=data["company"],
        campaign_id=row.campaign_id,
        campaign_name=row.campaign_name,
        source=row.source,
        channel=row.channel,
        medium=row.medium,
        utm_source=row.utm_source,
        utm_medium=row.utm_medium,
        utm_campaign=row.utm_campaign,
        utm_term=row.utm_term,
        utm_content=row.utm_content,
        service_interest=row.service_interest,
        urgency=row.urgency,
        urgency_level=rules.urgency_level(row.urgency),
        message=data["message"],
        budget_range=row.budget_range,
        timeline=row.timeline,
        visitor_id=row.visitor_id,
        session_id=row.session_id,
        lead_score=row.lead_score,
        lead_grade=row.lead_grade,
        qualification_status=row.qualification_status,
        status=row.status,
        consent_given=bool(row.consent_given),
        do_not_sell=bool(row.do_not_sell),
        privacy_regime=row.privacy_regime,
        geo_country=row.geo_country,
        geo_region=row.geo_region,
        geo_city=row.geo_city,
        company_domain=row.company_domain,
        email_kind=row.email_kind,
        deal_value=row.deal_value,
        created_at=row.created_at,
        assignee=assignee,
        campaign_settings=(campaign.settings if campaign is not None and campaign.settings else {}),
    )


def connector_for(ctx: WorkerContext, name: str) -> Connector:
    """One connector instance per worker (so e.g. an OAuth token cache is reused across deliveries)."""
    cache: dict[str, Connector] = ctx.services.setdefault("connectors", {})
    if name not in cache:
        cache[name] = registry.build(name, ctx.settings)
    return cache[name]


async def deliver(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    name = str(job.payload["connector"])
    lead_id = int(job.payload["lead_id"])
    connector = connector_for(ctx, name)
    if not connector.configured():
        raise PermanentError(f"the {name} connector is not configured (credentials were removed)")
    async with ctx.engine.connect() as conn:
        row = await leads_repo.get_by_id(conn, lead_id)
        if row is None:
            return HandlerResult(connector=name, response_excerpt="lead no longer exists")
        view = await lead_view(conn, ctx, row)
    if row.anonymized_at is not None or not privacy_allows(name, view):
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
    kind = (
        "synced"
        if name in ("hubspot", "salesforce", "mailchimp", "sendgrid", "ga4", "webhook")
        else "notification_sent"
    )
    async with ctx.engine.begin() as conn:
        await leads_repo.insert_activities(
            conn,
            [
                _activity(
                    lead_id,
                    kind,
                    outcome.detail or f"Delivered by {name}",
                    {
                        "connector": name,
                        "status_code": outcome.status_code,
                        "external_id": outcome.external_id,
                    },
                    now,
                )
            ],
        )
        if outcome.follow_up is not None:
            follow = outcome.follow_up
            await jobs_repo.enqueue(
                conn,
                [
                    jobs_repo.NewJob(
                        kind=DELIVER_JOB,
                        payload={"connector": name, "lead_id": lead_id, **follow.payload},
                        run_at=now + timedelta(seconds=follow.delay_seconds),
                        lead_id=lead_id,
                        dedup_key=f"{dedup_key}:{follow.key}",
                        max_attempts=connector.max_attempts,
                    )
                ],
                now,
            )
    metrics.STAGE_LATENCY.labels(f"delivered:{name}").observe((now - row.created_at).total_seconds())
    return HandlerResult(
        status_code=outcome.status_code, response_excerpt=outcome.response_excerpt, connector=name
    )


async def erase_remote(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Delete an erased person at a connected tool, then scrub the (encrypted) address from the job."""
    from sqlalchemy import update

    name = str(job.payload["connector"])
    sealed = job.payload.get("email")
    if not sealed:
        return HandlerResult(connector=name, response_excerpt="already done")
    email = ctx.cipher.decrypt(base64.b64decode(sealed), "erasure_email")
    assert email is not None
    connector: Any = connector_for(ctx, name)
    if not connector.configured():
        raise PermanentError(f"the {name} connector is not configured")
    dctx = DeliveryContext(
        settings=ctx.settings,
        http=ctx.http,
        job_id=job.id,
        attempt=job.attempts,
        dedup_key=job.dedup_key or f"job:{job.id}",
        payload={},
    )
    if name == "hubspot":
        outcome = await connector.gdpr_delete(email, dctx)
    elif name == "mailchimp":
        outcome = await connector.permanent_delete(email, dctx)
    elif name == "sendgrid":
        outcome = await connector.delete_contact(email, dctx)
    else:
        raise PermanentError(f"{name} has no deletion")
    async with ctx.engine.begin() as conn:
        await conn.execute(
            update(jobs_repo.jobs)
            .where(jobs_repo.jobs.c.id == job.id)
            .values(payload={"connector": name, "email": None, "erased": True})
        )
    return HandlerResult(status_code=outcome.status_code, connector=name, response_excerpt=outcome.detail)


def handlers() -> dict[str, Handler]:
    from leadflow.privacy.service import ERASE_JOB

    return {PROCESS_JOB: process_lead, DELIVER_JOB: deliver, ERASE_JOB: erase_remote}
