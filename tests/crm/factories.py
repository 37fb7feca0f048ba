"""Leads for the CRM / marketing / analytics / webhook connector tests.

Built with the shared connector-test factory (``tests.integrations.factories``), with the few values
these tests assert on pinned here, so a change of the shared defaults cannot silently change them: a
recent ``created_at`` (GA4 drops events backdated beyond 72 hours), no deal value, score 85.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow.integrations.base import Assignee, LeadView
from tests.integrations.factories import make_lead as shared_make_lead
from tests.integrations.factories import with_campaign_integration


def make_lead(**overrides: Any) -> LeadView:
    """The spec's example lead, processed; any LeadView field can be overridden."""
    values: dict[str, Any] = {
        "created_at": datetime.now(UTC) - timedelta(minutes=5),
        "deal_value": None,
        "lead_score": 85,
        "lead_grade": "A",
        "qualification_status": "marketing_qualified",
        "channel": "paid_search",
        "geo_region": "California",
        "consent_given": True,
        "do_not_sell": False,
        "privacy_regime": None,
        "assignee": Assignee(name="Sam Seller", email="sam@nexlink.website", phone="+15550001111"),
    }
    values.update(overrides)
    return shared_make_lead(**values)


def with_integration(name: str, **settings: Any) -> dict[str, Any]:
    """``campaign_settings`` holding one connector's override, e.g. ``with_integration("ga4", enabled=False)``."""
    return with_campaign_integration(name, **settings)
