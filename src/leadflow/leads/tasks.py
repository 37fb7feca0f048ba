"""Lead jobs: ``lead.process`` (enrich → re-score → route/assign → fan out the deliveries) and the
periodic ``reminders.scan`` (follow-up dates that have come).

``lead.process`` runs once per captured lead. Enrichment happens outside any transaction (DNS may
take a moment); everything it decides — enrichment columns, a new score, the assignment and the
delivery jobs — is written by :func:`commit_routing` in the worker's commit, so a crash leaves either
all or nothing, and a re-run does the same again (delivery jobs carry a dedup key per lead and
connector). Capture creates the job in ``leads.capture.policy.process_job_row`` (through :func:`process_job`, i.e. ``PROCESS.new``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.integrations import registry
from leadflow.integrations.base import Assignee
from leadflow.integrations.tasks import connector_for, delivery, fan_out
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.leads import changes
from leadflow.leads import repository as leads_repo
from leadflow.leads.activities import Activity
from leadflow.leads.models import OPTIONAL_FIELDS
from leadflow.leads.views import build_view, loaders
from leadflow.observability import metrics
from leadflow.pipeline.jobs import JobKind, Task, Tasks
from leadflow.pipeline.repository import NewJob, enqueue
from leadflow.pipeline.worker import HandlerResult, Staged, WorkerContext
from leadflow.privacy.regions import regime
from leadflow.routing import repository as routing_repo
from leadflow.scoring import rules

log = structlog.get_logger("leadflow.pipeline")

PROCESS = JobKind("lead.process")
REMINDERS = JobKind("reminders.scan")
REMINDER_INTERVAL = timedelta(minutes=1)
ROUTE_GROUP = "route"


def process_job(lead_id: int, public_id: str, now: datetime) -> NewJob:
    """The ``lead.process`` job of a captured lead (``.row(now)`` for writers that insert rows)."""
    return PROCESS.new({"lead_id": lead_id, "public_id": public_id}, run_at=now, lead_id=lead_id)


def stored_score_fields(row: AnyRow, email_kind: str, catalog: frozenset[str]) -> dict[str, Any]:
    """The one mapping from a stored lead to every ``ScoreInput`` field (ciphertext presence stands for
    "given"); a test fails when a field is missing, so none falls back to its default at re-score."""
    return {
        "email_kind": email_kind,
        "phone": row.phone is not None,
        "company": row.company is not None,
        "service_interest": row.service_interest,
        "urgency": row.urgency,
        "budget_range": row.budget_range,
        "filled_optional": frozenset(c for c in OPTIONAL_FIELDS if getattr(row, c) is not None),
        "time_on_page_seconds": row.time_on_page_seconds,
        "returning_visitor": bool(row.returning_visitor),
        "channel": row.channel or "Unassigned",
        "service_catalog": catalog,
    }


def score_input(row: AnyRow, email_kind: str, catalog: frozenset[str]) -> rules.ScoreInput:
    """Rebuild the score's inputs from a stored lead."""
    return rules.ScoreInput(**stored_score_fields(row, email_kind, catalog))


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What enrichment decided for one lead; routed and written by :func:`commit_routing`."""

    lead_id: int
    campaign: AnyRow
    values: dict[str, Any]
    activities: list[Activity]
    geo_country: str | None
    geo_region_code: str | None


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
    acts: list[Activity] = []
    geo = enrichment.geo if enrichment else None
    if enrichment is not None:
        # A lead without an e-mail address (a phone caller entered by staff) keeps its stored kind.
        email_kind = enrichment.email_kind if row.email_domain else row.email_kind
        values.update(
            email_kind=email_kind,
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
            Activity(
                lead_id,
                "enriched",
                "; ".join(f"{s.name}: {s.status}" for s in enrichment.steps),
                now,
                details={
                    "steps": [
                        {"name": s.name, "status": s.status, "detail": s.detail} for s in enrichment.steps
                    ]
                },
            )
        )
        # Re-score when enrichment changed an input (an undeliverable domain is not a business address).
        kind = "undeliverable" if row.email_domain and enrichment.mx == "invalid" else email_kind
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
                Activity(
                    lead_id,
                    "scored",
                    f"Score changed from {row.lead_score} to {result.total} after enrichment",
                    now,
                    details={"from": row.lead_score, "to": result.total, "grade": result.grade},
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
            Activity(
                plan.lead_id,
                "assigned",
                decision.reason,
                now,
                details={"to": decision.assignee, "member_id": decision.member_id, "rule": decision.rule},
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
            member_id: Assignee(name=m.name, email=m.email, phone=m.phone)
            for member_id, m in (await routing_repo.get_members(conn, set(member_of.values()))).items()
        }
        assignees = {lead_id: found[m] for lead_id, m in member_of.items() if m in found}
    writes: list[changes.Write] = []
    new_jobs: list[NewJob] = []
    for plan in plans:
        row = current.get(plan.lead_id)
        if row is None:  # erased meanwhile
            continue
        written = values[plan.lead_id]
        writes.append(changes.Write(row, written, acts[plan.lead_id]))
        fresh = SimpleNamespace(**{**row._mapping, **written})
        view = build_view(ctx.cipher, fresh, assignees.get(plan.lead_id), plan.campaign)
        new_jobs += fan_out(ctx, view, now)
        metrics.STAGE_LATENCY.labels("processed").observe((now - row.created_at).total_seconds())
    await changes.apply(conn, writes)  # analytics: only hours that ended (a late run, an old lead)
    await enqueue(conn, new_jobs, now)


async def scan_reminders(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Leads whose follow-up date has come: a ``reminder_due`` activity and an e-mail to the assignee."""
    now = utcnow()
    async with ctx.engine.connect() as conn:
        due = await leads_repo.due_follow_ups(conn, now)
    name = str(registry.ConnectorName.EMAIL)
    email = connector_for(ctx, name)
    reminders = [
        delivery(
            name,
            email,
            row.id,
            run_at=now,
            dedup_key=f"reminder:{row.id}:{row.follow_up_date:%Y%m%dT%H%M%S}",
            extra={"reason": "follow_up_due"},
        )
        for row in due
        if email.configured()
    ]
    return HandlerResult(
        response_excerpt=f"{len(due)} follow-ups due",
        activities=tuple(
            Activity(
                row.id,
                "reminder_due",
                f"Follow-up due since {row.follow_up_date:%Y-%m-%d %H:%M} UTC",
                now,
                details={"follow_up_date": row.follow_up_date.isoformat()},
            ).row()
            for row in due
        ),
        jobs=tuple(reminders),
    )


def note_failure(
    job: AnyRow, connector: str, message: str, ctx: WorkerContext, now: datetime
) -> HandlerResult:
    """Dead-letter hook: a delivery given up on is visible on the lead itself, not only in the job list."""
    if job.lead_id is None or not connector:
        return HandlerResult()
    return HandlerResult(
        activities=(
            Activity(
                job.lead_id,
                "delivery_failed",
                f"{connector} delivery failed after {job.attempts} attempt(s); replay it from the jobs list",
                now,
                details={"connector": connector, "job_id": job.id, "error": message[:300]},
            ).row(),
        )
    )


def register(tasks: Tasks) -> None:
    tasks.add(Task(PROCESS, process_lead), Task(REMINDERS, scan_reminders, every=REMINDER_INTERVAL))
    tasks.commit(ROUTE_GROUP, commit_routing)
    tasks.write_activities_with(leads_repo.insert_activities)
    tasks.on_dead_letter(note_failure)
