"""Realistic demo data: one campaign and a few hundred leads through the real capture path."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.campaigns import repository as campaigns_repo
from leadflow.campaigns import rollup
from leadflow.campaigns import service as campaigns
from leadflow.campaigns.schemas import CampaignCreate
from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.leads import service as leads
from leadflow.leads.capture import CaptureOutcome, CaptureWriter, prepare
from leadflow.leads.schemas import CaptureRequest, LeadUpdate
from leadflow.scoring.rules import normalise_catalog
from leadflow.security.audit import Actor
from leadflow.security.crypto import FieldCipher

FIRST = [
    "Ava",
    "Ben",
    "Chloe",
    "Daniel",
    "Emma",
    "Farah",
    "Gabriel",
    "Hana",
    "Ivan",
    "Julia",
    "Kenji",
    "Lena",
    "Marco",
    "Nora",
    "Omar",
    "Priya",
]
LAST = [
    "Anders",
    "Brown",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jones",
    "Khan",
    "Lopez",
    "Meyer",
    "Novak",
    "Okafor",
    "Patel",
]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Dental", "Wayne Logistics", None]
DOMAINS = ["acme.com", "globex.io", "initech.net", "umbrella-health.org", "gmail.com", "outlook.com"]
SOURCES = ["landing-page"] * 8 + ["modal"] * 2 + ["contact-form"]
TRAFFIC = [
    ("google", "cpc", "https://www.google.com/"),
    ("google", "organic", "https://www.google.com/"),
    (None, None, None),
    ("facebook", "paid_social", "https://facebook.com/"),
    ("linkedin", "social", "https://www.linkedin.com/"),
    ("newsletter", "email", None),
    (None, None, "https://partner-blog.example.org/review"),
]
URGENCY = ["High (Same day)", "Medium", "Low", None]
SERVICES = ["Nextcloud Installation", "Nextcloud Installation", "Managed IT Services", "Something else", None]
# The demo's workflow changes are made (and audited) as this salesperson, through the CLI.
DEMO_ACTOR = Actor(name="demo@nexlink.website", role="sales", channel="cli")
CONTENT = ["ad-variant-a", "ad-variant-b", "ad-variant-c", None]


def demo_payload(rng: random.Random, campaign_id: str, n: int) -> dict[str, object]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    source, medium, referrer = rng.choice(TRAFFIC)
    return {
        "campaign_id": campaign_id,
        "source": rng.choice(SOURCES),
        "contact": {
            "firstName": first,
            "lastName": last,
            "email": f"{first}.{last}.{n}@{rng.choice(DOMAINS)}".lower(),
            "phone": f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
            if rng.random() < 0.7
            else None,
            "company": rng.choice(COMPANIES),
        },
        "lead_details": {
            "service_interest": rng.choice(SERVICES),
            "urgency": rng.choice(URGENCY),
            "message": "Looking for help with our file sharing set-up." if rng.random() < 0.6 else None,
            "budget_range": rng.choice(["$5000-$10000", "$1000-$5000", "Not sure", None]),
            "timeline": rng.choice(["Within 2 weeks", "This quarter", None]),
        },
        "tracking": {
            "visitor_id": f"vis_{rng.randint(1, 10**9)}",
            "utm_source": source,
            "utm_medium": medium,
            "utm_content": rng.choice(CONTENT) if source else None,
            "referrer_url": referrer,
            "time_on_page_seconds": rng.choice([20, 75, 150, 240]),
            "ip_address": f"203.0.113.{rng.randint(1, 254)}",
        },
        "form_metadata": {"form_type": "campaign_landing", "form_version": "v2.1", "consent_given": True},
    }


async def seed(
    engine: AsyncEngine, settings: Settings, campaign_id: str, count: int, *, workflow: bool = True
) -> int:
    """Create the demo campaign if missing and add ``count`` leads (only when the campaign is new)."""
    async with engine.begin() as conn:
        if await campaigns_repo.get(conn, campaign_id) is not None:
            return 0
        await campaigns.create(
            conn,
            CampaignCreate(
                id=campaign_id,
                name="Nextcloud Installation 2025",
                campaign_type="service",
                budget=Decimal("1147.50"),
                target_leads=500,
                services=["Nextcloud Installation"],
                landing_page_url="https://nexlink.website/campaigns/nextcloud-installation.html",
            ),
        )
        campaign_row = await campaigns.get_or_404(conn, campaign_id)
    campaign = campaigns.to_capture(campaign_row)
    cipher = FieldCipher(settings.encryption_keys, settings.blind_key)
    catalog = normalise_catalog(settings.service_catalog)
    writer = CaptureWriter(
        engine, dedup_window=timedelta(hours=24), qualifying_grades=settings.qualifying_grades
    )
    rng = random.Random(2025)
    now = utcnow()
    public_ids: list[str] = []
    pending: list[Coroutine[Any, Any, CaptureOutcome]] = []
    for n in range(count):
        body = CaptureRequest.model_validate(demo_payload(rng, campaign_id, n))
        item = prepare(body, campaign, cipher, catalog, None, None)
        item.created_at = now - timedelta(days=rng.uniform(0, 30))
        pending.append(writer.submit(item))
        if len(pending) >= 500:
            public_ids += [o.public_id for o in await _gather(pending)]
            pending = []
    public_ids += [o.public_id for o in await _gather(pending)]
    await writer.close()
    async with engine.begin() as conn:  # back-dated leads: stored analytics sums are out of date
        await rollup.invalidate_campaign(conn, campaign_id)
    if workflow:
        for public_id in public_ids[: max(1, len(public_ids) // 4)]:
            path = rng.choice(
                [["contacted"], ["contacted", "qualified"], ["contacted", "proposal", "closed_won"]]
            )
            for step in path:
                deal = Decimal(rng.choice([2500, 5000, 7500])) if step == "closed_won" else None
                async with engine.begin() as conn:
                    await leads.update(
                        conn,
                        cipher,
                        public_id,
                        LeadUpdate(status=step, deal_value=deal),
                        DEMO_ACTOR,
                    )
    return len(public_ids)


async def _gather(items: list[Coroutine[Any, Any, CaptureOutcome]]) -> list[CaptureOutcome]:
    return list(await asyncio.gather(*items))
