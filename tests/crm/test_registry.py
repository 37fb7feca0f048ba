"""The registry builds each of these connectors from settings, and each satisfies the Protocol."""

from __future__ import annotations

import pytest

from leadflow.integrations.base import Connector
from leadflow.integrations.registry import build, configured
from tests.crm.conftest import vendor_settings

NAMES = ["hubspot", "salesforce", "mailchimp", "sendgrid", "ga4", "webhook"]
CREDENTIALS = {
    "hubspot_api_key": "pat",
    "salesforce_client_id": "id",
    "salesforce_client_secret": "secret",
    "mailchimp_api_key": "key-us21",
    "sendgrid_api_key": "SG.key",
    "sendgrid_list_ids": ["list-1"],
    "ga4_measurement_id": "G-X",
    "ga4_api_secret": "secret",
    "webhook_url": "https://hooks.example/leadflow",
    "webhook_secret": "whsec",
}


@pytest.mark.parametrize("name", NAMES)
def test_registry_builds_a_connector(name: str) -> None:
    connector = build(name, vendor_settings())
    assert isinstance(connector, Connector)
    assert connector.name == name
    assert connector.max_attempts >= 3
    assert not connector.configured()  # no credentials: off, never a silent success


def test_configured_lists_them_once_credentials_are_set() -> None:
    names = {c.name for c in configured(vendor_settings(**CREDENTIALS))}
    assert set(NAMES) <= names


def test_sendgrid_key_for_mail_alone_does_not_start_the_marketing_sync() -> None:
    names = {c.name for c in configured(vendor_settings(sendgrid_api_key="SG.key"))}
    assert "sendgrid" not in names
