"""Which deliveries the privacy rules allow for a lead (enforced centrally, before any connector runs).

The rules read the connector's declared facts (``needs_consent``, ``shares_data`` on
:class:`~leadflow.integrations.base.Connector`); no connector is named here.
"""

from __future__ import annotations

from leadflow.integrations.base import Connector, LeadView


def allowed(connector: Connector | type[Connector], lead: LeadView) -> bool:
    if lead.email_kind == "anonymized":
        return False
    if connector.needs_consent and not lead.consent_given:
        return False
    return not (connector.shares_data and lead.do_not_sell)
