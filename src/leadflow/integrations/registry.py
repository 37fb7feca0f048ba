"""Maps connector names to classes. Each module holds one connector class built from settings.

Adding a connector is its module (the class declares its facts, see ``base.Connector``), one line in
:class:`ConnectorName` and :data:`_CLASSES`, its settings group in ``config.py`` (if it has
settings), and its tests (docs/architecture.md §2).
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Any

from leadflow.config import Settings
from leadflow.integrations.base import Connector


class ConnectorName(StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    EMAIL = "email"  # notification to the assigned member (SMTP or SendGrid mail send)
    SMS = "sms"  # Twilio
    HUBSPOT = "hubspot"
    SALESFORCE = "salesforce"
    MAILCHIMP = "mailchimp"
    SENDGRID = "sendgrid"  # marketing contacts upsert
    GA4 = "ga4"
    WEBHOOK = "webhook"
    SEQUENCE = "sequence"  # automated e-mail sequence to the lead


# name -> "module:Class"; imported on first use.
_CLASSES: dict[ConnectorName, str] = {
    ConnectorName.SLACK: "leadflow.integrations.slack:SlackConnector",
    ConnectorName.TEAMS: "leadflow.integrations.teams:TeamsConnector",
    ConnectorName.EMAIL: "leadflow.integrations.smtp:EmailNotificationConnector",
    ConnectorName.SMS: "leadflow.integrations.twilio:TwilioSmsConnector",
    ConnectorName.HUBSPOT: "leadflow.integrations.hubspot:HubSpotConnector",
    ConnectorName.SALESFORCE: "leadflow.integrations.salesforce:SalesforceConnector",
    ConnectorName.MAILCHIMP: "leadflow.integrations.mailchimp:MailchimpConnector",
    ConnectorName.SENDGRID: "leadflow.integrations.sendgrid:SendGridContactsConnector",
    ConnectorName.GA4: "leadflow.integrations.ga4:Ga4Connector",
    ConnectorName.WEBHOOK: "leadflow.integrations.webhook:WebhookConnector",
    ConnectorName.SEQUENCE: "leadflow.integrations.sequence:EmailSequenceConnector",
}


def connector_class(name: ConnectorName | str) -> type[Connector]:
    module_name, _, class_name = _CLASSES[ConnectorName(name)].partition(":")
    cls: type[Connector] = getattr(importlib.import_module(module_name), class_name)
    return cls


def build(name: ConnectorName | str, settings: Settings) -> Connector:
    """A connector instance for ``name`` configured from ``settings``."""
    return connector_class(name)(settings)


def all_names() -> list[ConnectorName]:
    return list(ConnectorName)


def configured(settings: Settings) -> list[Connector]:
    """Every connector whose credentials are present."""
    return [c for c in (build(n, settings) for n in all_names()) if c.configured()]


def configured_with(settings: Settings, trait: type[Any]) -> list[Connector]:
    """Configured connectors that declare ``trait`` (a runtime-checkable Protocol from ``base``)."""
    return [c for c in configured(settings) if isinstance(c, trait)]


def resyncing(settings: Settings) -> list[Connector]:
    """Configured connectors that take a corrected lead again (``resyncs_corrections``)."""
    return [c for c in configured(settings) if c.resyncs_corrections]
