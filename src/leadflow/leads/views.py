"""The lead as the worker's jobs see it: rows read in batches, decrypted into a connector's ``LeadView``.

Used by every domain's job handlers (processing, deliveries, privacy requests at connected tools,
alert digests). Reads only: writes go through the worker's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leadflow.campaigns import repository as campaigns_repo
from leadflow.integrations.base import Assignee, LeadView
from leadflow.kit.cache import BatchLoader
from leadflow.kit.models import AnyRow
from leadflow.leads import repository as leads_repo
from leadflow.leads.models import PII_FIELDS
from leadflow.pipeline.worker import WorkerContext
from leadflow.routing import repository as routing_repo
from leadflow.scoring import rules
from leadflow.security.crypto import FieldCipher


@dataclass(slots=True)
class Loaders:
    """Per-worker batch loaders: the jobs of one claim read their rows with one query per table."""

    leads: BatchLoader[int, AnyRow]
    members: BatchLoader[int, routing_repo.MemberRow]
    campaigns: BatchLoader[str, AnyRow]


def loaders(ctx: WorkerContext) -> Loaders:
    found = ctx.services.get("loaders")
    if isinstance(found, Loaders):
        return found

    async def fetch_leads(ids: list[int]) -> dict[int, AnyRow]:
        async with ctx.engine.connect() as conn:
            return await leads_repo.get_many(conn, ids)

    async def fetch_members(ids: list[int]) -> dict[int, routing_repo.MemberRow]:
        async with ctx.engine.connect() as conn:
            return await routing_repo.get_members(conn, ids)

    async def fetch_campaigns(ids: list[str]) -> dict[str, AnyRow]:
        async with ctx.engine.connect() as conn:
            return {str(r.id): r for r in await campaigns_repo.get_many(conn, ids)}

    made = Loaders(BatchLoader(fetch_leads), BatchLoader(fetch_members), BatchLoader(fetch_campaigns))
    ctx.services["loaders"] = made
    return made


def build_view(cipher: FieldCipher, row: Any, assignee: Assignee | None, campaign: AnyRow | None) -> LeadView:
    """The decrypted lead as connectors see it, with its assignee and the campaign's settings."""
    data = {name: cipher.decrypt(getattr(row, name), name) for name in PII_FIELDS}
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
    return build_view(ctx.cipher, row, assignee, await load.campaigns.load(row.campaign_id))
