"""Salesforce connector through real HTTP to the local Salesforce fake (token + Lead upsert)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leadflow.integrations.base import DeliveryContext, PermanentError, PrivacySubject, RetriableError
from leadflow.integrations.salesforce import SalesforceConnector
from tests.crm.conftest import vendor_settings
from tests.crm.factories import make_lead, with_integration
from tests.fakes import salesforce as fake_sf
from tests.fakes.salesforce import FakeSalesforce

Ctx = Callable[..., DeliveryContext]
ITEMS = "salesforce/postman-rest-sobject-composite.items.json"
SECRET = "sf-secret"


@pytest.fixture(scope="module")
def server(contracts: Path) -> Iterator[FakeSalesforce]:
    running = FakeSalesforce(contracts / ITEMS, client_id="3MVG9-client", client_secret=SECRET)
    with running:
        yield running


@pytest.fixture
def fake(server: FakeSalesforce) -> FakeSalesforce:
    server.reset()
    server.client_secret = SECRET
    return server


def connector(fake: FakeSalesforce, secret: str = SECRET, **extra: str) -> SalesforceConnector:
    return SalesforceConnector(
        vendor_settings(
            salesforce_token_url=f"{fake.base_url}/services/oauth2/token",
            salesforce_client_id="3MVG9-client",
            salesforce_client_secret=secret,
            **extra,
        )
    )


async def test_upsert_creates_a_lead_by_external_id(fake: FakeSalesforce, make_ctx: Ctx) -> None:
    sf = connector(fake)
    outcome = await sf.deliver(make_lead(email="John.Doe@Company.com"), make_ctx())

    (record,) = fake.leads.values()
    assert record == {
        "FirstName": "John",
        "LastName": "Doe",
        "Email": "john.doe@company.com",
        "Phone": "+15551234567",
        "Company": "Acme Corp",
        "LeadSource": "Web",
        "Rating": "Hot",
        "Description": "Need Nextcloud setup for 50 users ASAP",
        "Website": "company.com",
        "Leadflow_Id__c": "lead_0123456789ab",
        "Leadflow_Score__c": 85,
        "Leadflow_Grade__c": "A",
        "Leadflow_Campaign__c": "nextcloud-installation-2025",
        "Leadflow_Source__c": "landing-page",
    }
    assert outcome.status_code == 201
    assert outcome.external_id is not None and outcome.external_id.startswith("00Q")
    assert outcome.detail == f"Salesforce Lead {outcome.external_id} created"
    assert outcome.response_excerpt is not None and "john" not in outcome.response_excerpt.lower()

    token_request, upsert = fake.accepted
    assert token_request.form()["grant_type"] == ["client_credentials"]
    assert upsert.method == "PATCH"
    assert upsert.path == "/services/data/v60.0/sobjects/Lead/Leadflow_Id__c/lead_0123456789ab"
    assert upsert.headers["authorization"].startswith("Bearer 00D5e000000TEST!")
    assert "Leadflow_Id__c" not in upsert.json()  # the external id travels in the URL


async def test_a_retry_updates_the_same_lead_and_reuses_the_token(
    fake: FakeSalesforce, make_ctx: Ctx
) -> None:
    sf = connector(fake)
    first = await sf.deliver(make_lead(), make_ctx())
    second = await sf.deliver(make_lead(lead_score=40, lead_grade="C"), make_ctx())

    assert len(fake.leads) == 1
    assert second.status_code == 200
    assert second.external_id == first.external_id
    assert second.detail is not None and second.detail.endswith("updated")
    record = fake.leads[str(first.external_id)]
    assert (record["Leadflow_Score__c"], record["Rating"]) == (40, "Cold")
    assert fake.tokens_issued == 1


async def test_required_fields_and_lengths(fake: FakeSalesforce, make_ctx: Ctx) -> None:
    sf = connector(fake)
    lead = make_lead(company=None, first_name="F" * 60, message=None, source="import", company_domain=None)
    await sf.deliver(lead, make_ctx())
    (record,) = fake.leads.values()
    assert record["Company"] == "Unknown"
    assert record["FirstName"] == "F" * 40
    assert record["LeadSource"] == "Other"
    assert "Description" not in record and "Website" not in record


async def test_expired_session_refreshes_the_token_once(fake: FakeSalesforce, make_ctx: Ctx) -> None:
    sf = connector(fake)
    await sf.deliver(make_lead(), make_ctx())
    fake.expire_tokens()
    outcome = await sf.deliver(make_lead(lead_score=70), make_ctx())
    assert outcome.status_code == 200
    assert fake.tokens_issued == 2
    assert [r.path.rsplit("/", 1)[-1] for r in fake.requests] == [
        "token",
        "lead_0123456789ab",
        "lead_0123456789ab",  # 401: session expired
        "token",
        "lead_0123456789ab",
    ]


async def test_revoked_credentials_are_permanent(fake: FakeSalesforce, make_ctx: Ctx) -> None:
    sf = connector(fake)
    await sf.deliver(make_lead(), make_ctx())
    fake.expire_tokens()
    fake.client_secret = "rotated"
    with pytest.raises(PermanentError) as caught:
        await sf.deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 400
    assert caught.value.response_excerpt == "invalid_client: invalid client credentials"


async def test_wrong_secret_is_permanent(fake: FakeSalesforce, make_ctx: Ctx) -> None:
    with pytest.raises(PermanentError, match="token request failed"):
        await connector(fake, secret="nope").deliver(make_lead(), make_ctx())
    assert fake.leads == {}


async def test_instance_url_setting_wins(fake: FakeSalesforce, contracts: Path, make_ctx: Ctx) -> None:
    instance = FakeSalesforce(contracts / ITEMS)
    with instance:
        instance.tokens = fake.tokens  # one org: the token from the login host works on the instance
        sf = connector(fake, salesforce_instance_url=instance.base_url + "/")
        await sf.deliver(make_lead(), make_ctx())
        assert len(instance.leads) == 1
    assert fake.leads == {}


async def test_rate_limit_is_retriable_with_retry_after(fake: FakeSalesforce, make_ctx: Ctx) -> None:
    sf = connector(fake)
    await sf.deliver(make_lead(), make_ctx())  # token cached; the next request is the upsert
    fake.fail_next(fake_sf.too_many_requests("5"))
    with pytest.raises(RetriableError) as caught:
        await sf.deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 5.0


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retriable(fake: FakeSalesforce, make_ctx: Ctx, status: int) -> None:
    fake.fail_next(fake_sf.server_error(status))  # the token endpoint is down
    with pytest.raises(RetriableError):
        await connector(fake).deliver(make_lead(), make_ctx())
    sf = connector(fake)
    await sf.deliver(make_lead(), make_ctx())
    fake.fail_next(fake_sf.server_error(status))  # the data API is down
    with pytest.raises(RetriableError) as caught:
        await sf.deliver(make_lead(), make_ctx())
    assert caught.value.status_code == status


async def test_transient_salesforce_codes_are_retriable(fake: FakeSalesforce, make_ctx: Ctx) -> None:
    sf = connector(fake)
    await sf.deliver(make_lead(), make_ctx())
    fake.fail_next(fake_sf.sf_error(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access"))
    with pytest.raises(RetriableError, match="UNABLE_TO_LOCK_ROW"):
        await sf.deliver(make_lead(), make_ctx())
    fake.fail_next(fake_sf.sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
    with pytest.raises(RetriableError):
        await sf.deliver(make_lead(), make_ctx())


async def test_invalid_field_is_permanent_and_keeps_the_address_out(
    fake: FakeSalesforce, make_ctx: Ctx
) -> None:
    with pytest.raises(PermanentError) as caught:
        await connector(fake).deliver(make_lead(email="john.doe@localhost"), make_ctx())
    assert caught.value.status_code == 400
    assert caught.value.response_excerpt is not None
    assert caught.value.response_excerpt.startswith("INVALID_EMAIL_ADDRESS")
    assert "john.doe" not in caught.value.response_excerpt
    assert fake.leads == {}


def test_wants_and_configured() -> None:
    full = {"salesforce_client_id": "id", "salesforce_client_secret": "secret"}
    sf = SalesforceConnector(vendor_settings(**full))
    assert sf.configured()
    assert sf.wants(make_lead(consent_given=False))
    assert not sf.wants(make_lead(campaign_settings=with_integration("salesforce", enabled=False)))
    assert not SalesforceConnector(vendor_settings()).configured()
    assert not SalesforceConnector(vendor_settings(salesforce_client_id="id")).configured()
    assert not SalesforceConnector(vendor_settings(salesforce_client_secret="secret")).configured()
    assert not SalesforceConnector(
        vendor_settings(salesforce_client_id="id", salesforce_client_secret=" ")
    ).configured()


async def test_not_configured_deliver_is_permanent(make_ctx: Ctx) -> None:
    with pytest.raises(PermanentError, match="not configured"):
        await SalesforceConnector(vendor_settings()).deliver(make_lead(), make_ctx())


async def test_erase_deletes_each_lead_and_tolerates_missing_ones(
    fake: FakeSalesforce, make_ctx: Ctx
) -> None:
    sf = connector(fake)
    lead = make_lead()
    await sf.deliver(lead, make_ctx())
    [record_id] = list(fake.leads)
    outcome = await sf.erase(PrivacySubject(lead.email, (lead.lead_id, "lead_000000000000")), make_ctx())
    assert fake.leads == {} and fake.deleted == [record_id]
    assert outcome.detail == "Salesforce Leads deleted: 1, not found: 1"
    deletes = [r for r in fake.accepted if r.method == "DELETE"]
    assert deletes[0].path.endswith(f"/sobjects/Lead/Leadflow_Id__c/{lead.lead_id}")
    fake.fail_next(fake_sf.server_error(503))
    with pytest.raises(RetriableError):
        await sf.erase(PrivacySubject(lead.email, (lead.lead_id,)), make_ctx())
