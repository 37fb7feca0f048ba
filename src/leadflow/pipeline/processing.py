"""What happens after capture: enrich → re-score → route/assign → fan out one job per delivery.

``lead.process`` runs once per captured lead. Enrichment happens outside any transaction (DNS may
take a moment); everything it decides — enrichment columns, a new score, the assignment and the
delivery jobs — is then written in one transaction, so a crash leaves either all or nothing, and a
re-run does the same again (delivery jobs carry a dedup key per lead and connector).
``deliver`` runs one connector for one lead and records the result as an activity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import repository as campaigns_repo
from leadflow.campaigns import rollup
from leadflow.integrations import registry
from leadflow.integrations.base import Assignee, Connector, DeliveryContext, LeadView, PermanentError
from leadflow.kit.cache import BatchLoader
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow, table_of
from leadflow.leads import repository as leads_repo
from leadflow.leads.capture import PROCESS_JOB
from leadflow.leads.models import PII_FIELDS
from leadflow.leads.service import ANALYTICS_INPUTS
from leadflow.observability import metrics
from leadflow.pipeline import repository as jobs_repo
from leadflow.pipeline.worker import Committer, Handler, HandlerResult, Staged, WorkerContext
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


@dataclass(slots=True)
class Loaders:
    """Per-worker batch loaders: the jobs of one claim read their rows with one query per table."""

    leads: BatchLoader[int, AnyRow]
    members: BatchLoader[int, AnyRow]
    campaigns: BatchLoader[str, AnyRow]


def loaders(ctx: WorkerContext) -> Loaders:
    found = ctx.services.get("loaders")
    if isinstance(found, Loaders):
        return found

    async def fetch_leads(ids: list[int]) -> dict[int, AnyRow]:
        async with ctx.engine.connect() as conn:
            return await leads_repo.get_many(conn, ids)

    async def fetch_members(ids: list[int]) -> dict[int, AnyRow]:
        async with ctx.engine.connect() as conn:
            return {int(r.id): r for r in await conn.execute(select(members).where(members.c.id.in_(ids)))}

    async def fetch_campaigns(ids: list[str]) -> dict[str, AnyRow]:
        async with ctx.engine.connect() as conn:
            return {str(r.id): r for r in await campaigns_repo.get_many(conn, ids)}

    made = Loaders(BatchLoader(fetch_leads), BatchLoader(fetch_members), BatchLoader(fetch_campaigns))
    ctx.services["loaders"] = made
    return made


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What enrichment decided for one lead; routed and written by :func:`commit_routing`."""

    lead_id: int
    campaign: AnyRow
    values: dict[str, Any]
    activities: list[dict[str, Any]]
    geo_country: str | None
    geo_region_code: str | None


ROUTE_GROUP = "route"


async def process_lead(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Enrich and re-score (outside any transaction); routing and fan-out are staged for the commit."""
    from leadflow.enrichment.service import Enricher, EnrichmentResult

    lead_id = int(job.payload["lead_id"])
    load = loaders(ctx)
    row = await load.leads.load(lead_id)
    if row is None:  # erased before processing: nothing to do
        return HandlerResult(response_excerpt="lead no longer exists")
    campaign = await load.campaigns.load(row.campaign_id)
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
            enrichment=_keep_capture_facts(row.enrichment, enrichment.as_json()),
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
    plan = RoutePlan(
        lead_id=lead_id,
        campaign=campaign,
        values=values,
        activities=acts,
        geo_country=geo.country_code if geo else None,
        geo_region_code=geo.region_code if geo else None,
    )
    return HandlerResult(
        response_excerpt="enriched; routed with the job's commit", staged=Staged(ROUTE_GROUP, plan)
    )


def _keep_capture_facts(stored: Any, found: dict[str, Any]) -> dict[str, Any]:
    """The enrichment JSON to write: what the worker found, plus what capture put there (first touch)."""
    kept = (
        {"first_touch": stored["first_touch"]} if isinstance(stored, dict) and "first_touch" in stored else {}
    )
    return {**found, **kept}


async def commit_routing(conn: AsyncConnection, plans: list[RoutePlan], ctx: WorkerContext) -> None:
    """Route a batch of enriched leads and fan out their deliveries, inside the worker's commit.

    The leads are re-read under a row lock (a salesperson may have assigned or changed one meanwhile);
    unassigned new leads are assigned in order with one team lock (:func:`assign_many`); then each
    lead's enrichment, score and assignment is written, with its activities and one delivery job per
    connector that wants it (dedup key per lead and connector, so a re-run adds nothing).
    """
    from leadflow.routing.rules import CampaignRouting, RoutingLead
    from leadflow.routing.service import assign_many

    now = utcnow()
    current = await leads_repo.get_many(conn, [p.lead_id for p in plans], lock=True)
    routable = [
        p
        for p in plans
        if (row := current.get(p.lead_id)) is not None and row.assigned_to is None and row.status == "new"
    ]
    decisions = await assign_many(
        conn,
        [
            (
                RoutingLead(
                    lead_id=p.lead_id,
                    campaign_id=current[p.lead_id].campaign_id,
                    service_interest=current[p.lead_id].service_interest,
                    lead_score=int(p.values.get("lead_score", current[p.lead_id].lead_score)),
                    lead_grade=str(p.values.get("lead_grade", current[p.lead_id].lead_grade)),
                    geo_country=p.geo_country,
                    geo_region_code=p.geo_region_code,
                    urgency_level=rules.urgency_level(current[p.lead_id].urgency),
                ),
                CampaignRouting(auto_assign=bool(p.campaign.auto_assign), assigned_to=p.campaign.assigned_to),
            )
            for p in routable
        ],
        ctx.settings,
        now,
    )
    # The plans stay untouched (a batch that fails is committed again job by job with the same plans):
    # this attempt's writes are built in copies.
    values = {p.lead_id: dict(p.values) for p in plans}
    acts = {p.lead_id: list(p.activities) for p in plans}
    for plan in plans:
        row = current.get(plan.lead_id)
        if row is not None and row.qualification_status not in ("unqualified", "marketing_qualified"):
            # Qualified by a salesperson since enrichment read the lead: the re-score does not undo it.
            values[plan.lead_id].pop("qualification_status", None)
    for plan, decision in zip(routable, decisions, strict=True):
        if decision.assignee is not None:
            values[plan.lead_id].update(assigned_to=decision.assignee, assigned_member_id=decision.member_id)
        acts[plan.lead_id].append(
            _activity(
                plan.lead_id,
                "assigned",
                decision.reason,
                {"to": decision.assignee, "member_id": decision.member_id, "rule": decision.rule},
                now,
            )
        )
    member_of = {
        lead_id: int(member_id)
        for lead_id, row in current.items()
        if (member_id := values[lead_id].get("assigned_member_id", row.assigned_member_id)) is not None
    }
    assignees: dict[int, Assignee] = {}
    if member_of:
        found = {
            int(m.id): Assignee(name=m.name, email=m.email, phone=m.phone)
            for m in await conn.execute(select(members).where(members.c.id.in_(set(member_of.values()))))
        }
        assignees = {lead_id: found[m] for lead_id, m in member_of.items() if m in found}
    activities: list[dict[str, Any]] = []
    new_jobs: list[jobs_repo.NewJob] = []
    rescored: dict[str, list[datetime]] = {}
    for plan in plans:
        row = current.get(plan.lead_id)
        if row is None:  # erased meanwhile
            continue
        written = values[plan.lead_id]
        await leads_repo.update_lead(conn, plan.lead_id, written)
        activities.extend(acts[plan.lead_id])
        if ANALYTICS_INPUTS & written.keys():
            rescored.setdefault(row.campaign_id, []).append(row.created_at)
        fresh = SimpleNamespace(**{**row._mapping, **written})
        view = build_view(ctx, fresh, assignees.get(plan.lead_id), plan.campaign)
        for name in registry.all_names():
            connector = connector_for(ctx, name)
            if connector.configured() and privacy_allows(connector, view) and connector.wants(view):
                new_jobs.append(
                    jobs_repo.NewJob(
                        kind=DELIVER_JOB,
                        payload={"connector": str(name), "lead_id": plan.lead_id},
                        run_at=now,
                        lead_id=plan.lead_id,
                        dedup_key=f"deliver:{name}:{plan.lead_id}",
                        max_attempts=connector.max_attempts,
                    )
                )
        metrics.STAGE_LATENCY.labels("processed").observe((now - row.created_at).total_seconds())
    await leads_repo.insert_activities(conn, activities)
    await jobs_repo.enqueue(conn, new_jobs, now)
    await rollup.invalidate(conn, rescored)  # only days before today: a re-run on an old lead


def build_view(ctx: WorkerContext, row: Any, assignee: Assignee | None, campaign: AnyRow | None) -> LeadView:
    """The decrypted lead as connectors see it, with its assignee and the campaign's settings."""
    data = {name: ctx.cipher.decrypt(getattr(row, name), name) for name in PII_FIELDS}
    if assignee is None and row.assigned_to:
        assignee = Assignee(name=row.assigned_to, email=row.assigned_to)
    return LeadView(
        id=row.id,
        lead_id=row.public_id,
        uuid=row.uuid,
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


async def lead_view(ctx: WorkerContext, row: AnyRow) -> LeadView:
    """:func:`build_view` with the assignee and campaign read through the worker's batch loaders."""
    load = loaders(ctx)
    assignee = None
    if row.assigned_member_id is not None:
        member = await load.members.load(int(row.assigned_member_id))
        if member is not None:
            assignee = Assignee(name=member.name, email=member.email, phone=member.phone)
    return build_view(ctx, row, assignee, await load.campaigns.load(row.campaign_id))


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
    kind = "synced" if connector.counts_as_sync else "notification_sent"
    follow_ups: tuple[jobs_repo.NewJob, ...] = ()
    if outcome.follow_up is not None:
        follow = outcome.follow_up
        follow_ups = (
            jobs_repo.NewJob(
                kind=DELIVER_JOB,
                payload={"connector": name, "lead_id": lead_id, **follow.payload},
                run_at=now + timedelta(seconds=follow.delay_seconds),
                lead_id=lead_id,
                dedup_key=f"{dedup_key}:{follow.key}",
                max_attempts=connector.max_attempts,
            ),
        )
    metrics.STAGE_LATENCY.labels(f"delivered:{name}").observe((now - row.created_at).total_seconds())
    return HandlerResult(
        status_code=outcome.status_code,
        response_excerpt=outcome.response_excerpt,
        connector=name,
        activities=(
            _activity(
                lead_id,
                kind,
                outcome.detail or f"Delivered by {name}",
                {"connector": name, "status_code": outcome.status_code, "external_id": outcome.external_id},
                now,
            ),
        ),
        jobs=follow_ups,
    )


def committers() -> dict[str, Committer]:
    return {ROUTE_GROUP: commit_routing}


def handlers() -> dict[str, Handler]:
    from leadflow.privacy import tasks as privacy_tasks

    return {PROCESS_JOB: process_lead, DELIVER_JOB: deliver, **privacy_tasks.handlers()}
