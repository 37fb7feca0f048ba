"""HubSpot connector through real HTTP to the local HubSpot fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from leadflow.integrations.base import DeliveryContext, PermanentError, RetriableError
from leadflow.integrations.hubspot import CUSTOM_PROPERTIES, HubSpotConnector, contact_properties
from leadflow.integrations.registry import build
from tests.crm.conftest import vendor_settings
from tests.crm.factories import make_lead, with_integration
from tests.fakes import hubspot as fake_hubspot
from tests.fakes.hubspot import FakeHubSpot

Ctx = Callable[..., DeliveryContext]
TOKEN = "pat-na1-secret"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHubSpot]:
    running = FakeHubSpot(token=TOKEN)
    with running:
        yield running


@pytest.fixture
def fake(server: FakeHubSpot) -> FakeHubSpot:
    server.reset()
    return server


def connector(fake: FakeHubSpot, token: str = TOKEN) -> HubSpotConnector:
    return HubSpotConnector(vendor_settings(hubspot_api_key=token, hubspot_base_url=fake.base_url))


async def test_upsert_creates_the_contact_with_lead_properties(fake: FakeHubSpot, make_ctx: Ctx) -> None:
    hub = connector(fake)
    lead = make_lead(email="John.Doe@Company.com")
    outcome = await hub.deliver(lead, make_ctx())

    assert len(fake.contacts) == 1
    contact = fake.contacts["john.doe@company.com"]
    assert contact["properties"] == {
        "email": "john.doe@company.com",
        "firstname": "John",
        "lastname": "Doe",
        "phone": "+15551234567",
        "company": "Acme Corp",
        "message": "Need Nextcloud setup for 50 users ASAP",
        "leadflow_lead_id": "lead_0123456789ab",
        "leadflow_lead_source": "landing-page",
        "leadflow_lead_score": "85",
        "leadflow_lead_grade": "A",
        "leadflow_campaign_id": "nextcloud-installation-2025",
        "leadflow_service": "Nextcloud Installation",
    }
    assert outcome.status_code == 200
    assert outcome.external_id == contact["id"]
    assert outcome.detail == f"HubSpot contact {contact['id']} created"
    # the job record keeps no personal data, although HubSpot echoed the properties
    assert outcome.response_excerpt is not None
    assert "john" not in outcome.response_excerpt.lower()

    request = fake.accepted[0]
    assert request.method == "POST"
    assert request.path == "/crm/v3/objects/contacts/batch/upsert"
    assert request.headers["authorization"] == "Bearer pat-na1-secret"
    (item,) = request.json()["inputs"]
    assert item["id"] == "john.doe@company.com"
    assert item["idProperty"] == "email"


async def test_a_retry_updates_the_same_contact(fake: FakeHubSpot, make_ctx: Ctx) -> None:
    hub = connector(fake)
    first = await hub.deliver(make_lead(), make_ctx())
    second = await hub.deliver(make_lead(lead_score=91, email="JOHN.DOE@company.com"), make_ctx())

    assert len(fake.contacts) == 1
    assert second.external_id == first.external_id
    assert second.detail is not None and second.detail.endswith("updated")
    assert fake.contacts["john.doe@company.com"]["properties"]["leadflow_lead_score"] == "91"


async def test_missing_values_never_clear_what_is_in_hubspot(fake: FakeHubSpot, make_ctx: Ctx) -> None:
    hub = connector(fake)
    await hub.deliver(make_lead(), make_ctx())
    bare = make_lead(phone=None, company=None, message=None, service_interest=None)
    assert {"phone", "company", "message", "leadflow_service"}.isdisjoint(contact_properties(bare))

    await hub.deliver(bare, make_ctx())
    properties = fake.contacts["john.doe@company.com"]["properties"]
    assert properties["phone"] == "+15551234567"
    assert properties["company"] == "Acme Corp"


def test_documented_custom_properties_are_the_ones_sent() -> None:
    sent = {name for name in contact_properties(make_lead()) if name.startswith("leadflow_")}
    assert sent == {p["name"] for p in CUSTOM_PROPERTIES}
    assert all(p["groupName"] == "leadflow" for p in CUSTOM_PROPERTIES)


def test_wants_every_lead_unless_the_campaign_turns_it_off() -> None:
    hub = HubSpotConnector(vendor_settings(hubspot_api_key="pat"))
    assert hub.wants(make_lead())
    assert hub.wants(make_lead(consent_given=False, do_not_sell=True))  # sales follow-up, not marketing
    assert hub.wants(make_lead(campaign_settings=with_integration("hubspot", enabled=True)))
    assert not hub.wants(make_lead(campaign_settings=with_integration("hubspot", enabled=False)))
    assert hub.wants(make_lead(campaign_settings=with_integration("mailchimp", enabled=False)))


async def test_not_configured(make_ctx: Ctx) -> None:
    assert not HubSpotConnector(vendor_settings()).configured()
    assert not HubSpotConnector(vendor_settings(hubspot_api_key="   ")).configured()
    assert HubSpotConnector(vendor_settings(hubspot_api_key="pat")).configured()
    assert isinstance(build("hubspot", vendor_settings()), HubSpotConnector)
    with pytest.raises(PermanentError, match="not configured"):
        await HubSpotConnector(vendor_settings()).deliver(make_lead(), make_ctx())


async def test_rate_limit_is_retriable_with_retry_after(fake: FakeHubSpot, make_ctx: Ctx) -> None:
    fake.fail_next(fake_hubspot.too_many_requests("7"))
    with pytest.raises(RetriableError) as caught:
        await connector(fake).deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 7.0
    assert caught.value.response_excerpt is not None and "RATE_LIMIT" in caught.value.response_excerpt

    # HubSpot often sends no Retry-After: wait out the ten-second window its policy names
    fake.fail_next(fake_hubspot.too_many_requests(None))
    with pytest.raises(RetriableError) as caught:
        await connector(fake).deliver(make_lead(), make_ctx())
    assert caught.value.retry_after == 10.0
    assert fake.contacts == {}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retriable(fake: FakeHubSpot, make_ctx: Ctx, status: int) -> None:
    fake.fail_next(fake_hubspot.server_error(status))
    with pytest.raises(RetriableError) as caught:
        await connector(fake).deliver(make_lead(), make_ctx())
    assert caught.value.status_code == status


async def test_network_failure_is_retriable(make_ctx: Ctx) -> None:
    with FakeHubSpot() as gone:
        url = gone.base_url
    hub = HubSpotConnector(vendor_settings(hubspot_api_key="pat", hubspot_base_url=url))
    with pytest.raises(RetriableError, match="network error"):
        await hub.deliver(make_lead(), make_ctx())


async def test_bad_token_is_permanent(fake: FakeHubSpot, make_ctx: Ctx) -> None:
    with pytest.raises(PermanentError) as caught:
        await connector(fake, token="pat-na1-wrong").deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 401
    assert caught.value.response_excerpt is not None
    assert caught.value.response_excerpt.startswith("INVALID_AUTHENTICATION")


async def test_validation_error_is_permanent_and_keeps_the_address_out(
    fake: FakeHubSpot, make_ctx: Ctx
) -> None:
    with pytest.raises(PermanentError) as caught:
        await connector(fake).deliver(make_lead(email="john.doe@localhost"), make_ctx())
    assert caught.value.status_code == 400
    assert caught.value.response_excerpt is not None
    assert "VALIDATION_ERROR" in caught.value.response_excerpt
    assert "john.doe" not in caught.value.response_excerpt
    assert fake.contacts == {}


async def test_gdpr_delete_removes_the_contact(fake: FakeHubSpot, make_ctx: Ctx) -> None:
    hub = connector(fake)
    await hub.deliver(make_lead(), make_ctx())
    outcome = await hub.gdpr_delete("John.Doe@company.com", make_ctx())
    assert outcome.status_code == 204
    assert fake.contacts == {}
    assert fake.accepted[-1].json() == {"objectId": "john.doe@company.com", "idProperty": "email"}

    # an address HubSpot does not know is blocklisted, still 204
    await hub.gdpr_delete("someone@else.com", make_ctx())
    assert "someone@else.com" in fake.blocklist


async def test_gdpr_delete_errors_are_mapped(fake: FakeHubSpot, make_ctx: Ctx) -> None:
    fake.fail_next(fake_hubspot.server_error(503))
    with pytest.raises(RetriableError):
        await connector(fake).gdpr_delete("john.doe@company.com", make_ctx())
    with pytest.raises(PermanentError):
        await connector(fake, token="wrong").gdpr_delete("john.doe@company.com", make_ctx())
