"""Which deliveries the privacy rules allow for a lead (enforced centrally, before any connector runs)."""

from __future__ import annotations

from leadflow.integrations.base import LeadView

# E-mail marketing and the automated sequence need the person's consent.
NEEDS_CONSENT = frozenset({"mailchimp", "sendgrid", "sequence"})
# Handing data to third parties for their own use ("sell or share" under the CCPA).
SHARING = frozenset({"mailchimp", "sendgrid", "ga4", "webhook"})


def allowed(connector: str, lead: LeadView) -> bool:
    if lead.email_kind == "anonymized":
        return False
    if connector in NEEDS_CONSENT and not lead.consent_given:
        return False
    return not (connector in SHARING and lead.do_not_sell)
