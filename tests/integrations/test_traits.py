"""Facts about a connector live on its class: every registered connector declares them, and the code
that applies them (privacy policy, fan-out, activities, erasure answers) reads nothing else."""

from __future__ import annotations

from typing import ClassVar

import pytest

from leadflow.integrations.base import Connector, DeliveryContext, Erases, LeadView, Outcome, Unsubscribes
from leadflow.integrations.registry import ConnectorName, build, connector_class, resyncing
from leadflow.privacy.policy import allowed
from tests.integrations.factories import make_lead, make_settings

CLASSES = {name: connector_class(name) for name in ConnectorName}

# What the connectors declare today (before: three string sets in privacy/ and pipeline/).
FACTS = {
    "needs_consent": {"mailchimp", "sendgrid", "sequence"},
    "shares_data": {"mailchimp", "sendgrid", "ga4", "webhook"},
    "counts_as_sync": {"hubspot", "salesforce", "mailchimp", "sendgrid", "ga4", "webhook"},
    "resyncs_corrections": {"hubspot", "salesforce"},
}


@pytest.mark.parametrize("name", list(ConnectorName))
def test_every_registered_connector_declares_its_facts(name: ConnectorName) -> None:
    cls = CLASSES[name]
    assert issubclass(cls, Connector)
    assert cls.name == str(name)
    assert cls.max_attempts >= 3
    for fact in FACTS:
        assert isinstance(getattr(cls, fact), bool), fact
    # Erasure is decided for every connector: it deletes its copy, or says what it keeps.
    erases = isinstance(build(name, make_settings()), Erases)
    assert erases != (cls.erasure_note is not None), "implement Erases or set erasure_note"
    if cls.erasure_note is not None:
        assert cls.erasure_note.strip()


@pytest.mark.parametrize("fact", list(FACTS))
def test_the_facts_are_the_ones_the_spec_asks_for(fact: str) -> None:
    assert {str(n) for n, cls in CLASSES.items() if getattr(cls, fact)} == FACTS[fact]


def test_capabilities_of_privacy_requests() -> None:
    settings = make_settings()
    made = {str(n): build(n, settings) for n in ConnectorName}
    assert {n for n, c in made.items() if isinstance(c, Erases)} == {
        "hubspot",
        "salesforce",
        "mailchimp",
        "sendgrid",
        "webhook",
    }
    assert {n for n, c in made.items() if isinstance(c, Unsubscribes)} == {"mailchimp", "sendgrid"}
    # Marketing that can be stopped needs consent to start.
    assert all(c.needs_consent for c in made.values() if isinstance(c, Unsubscribes))


def test_resyncing_lists_configured_connectors_that_take_corrections() -> None:
    assert resyncing(make_settings()) == []
    names = {c.name for c in resyncing(make_settings(hubspot_api_key="pat", slack_webhook_url="https://x"))}
    assert names == {"hubspot"}


class _Probe(Connector):
    """A connector declared only by its facts (the policy must read them, not a name)."""

    name: ClassVar[str] = "probe"
    max_attempts: ClassVar[int] = 3

    def configured(self) -> bool:
        return True

    def wants(self, lead: LeadView) -> bool:
        return True

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        return Outcome()


def _probe(*, consent: bool, shares: bool) -> type[Connector]:
    return type("Probe", (_Probe,), {"needs_consent": consent, "shares_data": shares})


@pytest.mark.parametrize(
    ("needs_consent", "shares_data", "consent_given", "do_not_sell", "expected"),
    [
        (False, False, False, True, True),
        (True, False, False, False, False),
        (True, False, True, True, True),
        (False, True, False, True, False),
        (False, True, False, False, True),
        (True, True, True, False, True),
        (True, True, True, True, False),
    ],
)
def test_policy_reads_the_declared_facts(
    needs_consent: bool, shares_data: bool, consent_given: bool, do_not_sell: bool, expected: bool
) -> None:
    lead = make_lead(consent_given=consent_given, do_not_sell=do_not_sell)
    connector = _probe(consent=needs_consent, shares=shares_data)
    assert allowed(connector, lead) is expected
    assert allowed(connector(make_settings()), lead) is expected


def test_an_anonymised_lead_gets_nothing() -> None:
    lead = make_lead(consent_given=True, email_kind="anonymized")
    assert not allowed(_probe(consent=False, shares=False), lead)


def test_base_defaults_are_the_safe_ones() -> None:
    # A connector that declares nothing gets only consenting leads that did not opt out of sharing.
    assert (_Probe.needs_consent, _Probe.shares_data) == (True, True)
    assert not allowed(_Probe, make_lead(consent_given=False))
    assert not allowed(_Probe, make_lead(consent_given=True, do_not_sell=True))
    assert allowed(_Probe, make_lead(consent_given=True, do_not_sell=False))
    assert (_Probe.counts_as_sync, _Probe.resyncs_corrections, _Probe.erasure_note) == (False, False, None)
