"""Test data for connector tests: leads as connectors see them, settings, delivery contexts.

``make_lead(**overrides)`` gives a processed A-grade, high-urgency, consenting lead with an assignee;
override any :class:`LeadView` field. ``make_settings(**overrides)`` gives settings with *every*
connector switched off (so credentials in the developer's environment never leak into a test), then
applies the overrides. ``make_context(settings, http, **overrides)`` builds a :class:`DeliveryContext`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from leadflow.config import Settings
from leadflow.integrations.base import Assignee, DeliveryContext, LeadView
from tests.conftest import TEST_KEY

LEAD_EMAIL = "john.doe@company.com"
LEAD_PHONE = "+15551234567"


def make_assignee(**overrides: Any) -> Assignee:
    values: dict[str, Any] = {
        "name": "Alice Seller",
        "email": "alice@nexlink.website",
        "phone": "+15557654321",
    }
    values.update(overrides)
    return Assignee(**values)


def make_lead(**overrides: Any) -> LeadView:
    """The spec's example lead after processing; any field can be overridden."""
    values: dict[str, Any] = {
        "id": 1,
        "lead_id": "lead_0123456789ab",
        "uuid": "5f0c3f4e-8a5b-4c1e-9d2a-0b6f7e1c2d3a",
        "first_name": "John",
        "last_name": "Doe",
        "email": LEAD_EMAIL,
        "phone": LEAD_PHONE,
        "company": "Acme Corp",
        "campaign_id": "nextcloud-installation-2025",
        "campaign_name": "Nextcloud Installation 2025",
        "source": "landing-page",
        "channel": "Paid Search",
        "medium": "cpc",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "nextcloud-q4-2025",
        "utm_term": "nextcloud installation",
        "utm_content": "ad-variant-a",
        "service_interest": "Nextcloud Installation",
        "urgency": "High (Same day)",
        "urgency_level": "high",
        "message": "Need Nextcloud setup for 50 users ASAP",
        "budget_range": "$5000-$10000",
        "timeline": "Within 2 weeks",
        "visitor_id": "vis_123456789",
        "session_id": "sess_987654321",
        "lead_score": 87,
        "lead_grade": "A",
        "qualification_status": "sales_qualified",
        "status": "new",
        "consent_given": True,
        "do_not_sell": False,
        "privacy_regime": None,
        "geo_country": "US",
        "geo_region": "CA",
        "geo_city": "San Francisco",
        "company_domain": "company.com",
        "email_kind": "business",
        "deal_value": Decimal("7500.00"),
        "created_at": datetime(2025, 10, 3, 10, 30, tzinfo=UTC),
        "assignee": make_assignee(),
        "campaign_settings": {},
    }
    values.update(overrides)
    return LeadView(**values)


def with_campaign_integration(name: str, **settings: Any) -> dict[str, Any]:
    """``campaign_settings`` holding one connector's overrides, e.g. ``("slack", enabled=False)``."""
    return {"integrations": {name: settings}}


# Every connector credential, off. Explicit values beat environment variables in pydantic-settings.
CONNECTORS_OFF: dict[str, Any] = {
    "slack_webhook_url": None,
    "teams_webhook_url": None,
    "smtp_host": None,
    "smtp_user": None,
    "smtp_password": None,
    "email_transport": "smtp",
    "twilio_account_sid": None,
    "twilio_auth_token": None,
    "twilio_from_number": None,
    "sms_alert_to": None,
    "hubspot_api_key": None,
    "salesforce_instance_url": None,
    "salesforce_client_id": None,
    "salesforce_client_secret": None,
    "mailchimp_api_key": None,
    "mailchimp_list_id": None,
    "mailchimp_base_url": None,
    "sendgrid_api_key": None,
    "sendgrid_list_ids": [],
    "ga4_measurement_id": None,
    "ga4_api_secret": None,
    "webhook_url": None,
    "webhook_secret": None,
}


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "leadflow_env": "test",
        "database_url": "sqlite:///:memory:",
        "public_base_url": "https://leads.example.test",
        "http_timeout_seconds": 5.0,
        "default_phone_region": "US",
        "smtp_from": "Leadflow <noreply@nexlink.website>",
        "sequence_enabled": True,
        "encryption_key": TEST_KEY,  # signs the sequence's unsubscribe links
        **CONNECTORS_OFF,
    }
    values.update(overrides)
    return Settings(**values)


def make_context(settings: Settings, http: httpx.AsyncClient, **overrides: Any) -> DeliveryContext:
    values: dict[str, Any] = {
        "settings": settings,
        "http": http,
        "job_id": 1,
        "attempt": 1,
        "dedup_key": "deliver:test:1",
        "payload": {},
    }
    values.update(overrides)
    return DeliveryContext(**values)


@asynccontextmanager
async def http_client(timeout: float = 5.0) -> AsyncIterator[httpx.AsyncClient]:
    """One client per test, as the worker has one per process (no redirects followed)."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False) as client:
        yield client
