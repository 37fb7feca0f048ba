"""SendGrid marketing-contacts connector through real HTTP to the local SendGrid fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.integrations.base import DeliveryContext, PermanentError, PrivacySubject, RetriableError
from leadflow.integrations.sendgrid import SendGridContactsConnector
from tests.crm.conftest import vendor_settings
from tests.crm.factories import make_lead, with_integration
from tests.fakes import sendgrid_contacts as fake_sg
from tests.fakes.sendgrid_contacts import FakeSendGridContacts

Ctx = Callable[..., DeliveryContext]
KEY = "SG.abc.def"
LIST_A = "ca7a3796-e8a8-4029-9ccb-df8937940562"
LIST_B = "6b0a9d5f-0ae4-4d0e-9e0b-8b7ad5c1e3f1"


@pytest.fixture(scope="module")
def server(contracts: Path) -> Iterator[FakeSendGridContacts]:
    running = FakeSendGridContacts(contracts / "sendgrid/marketing-contacts-v3.subset.json", api_key=KEY)
    with running:
        yield running


@pytest.fixture
def fake(server: FakeSendGridContacts) -> FakeSendGridContacts:
    server.reset()
    return server


def connector(fake: FakeSendGridContacts, key: str = KEY, lists: str = LIST_A) -> SendGridContactsConnector:
    return SendGridContactsConnector(
        vendor_settings(sendgrid_api_key=key, sendgrid_base_url=fake.base_url, sendgrid_list_ids=lists)
    )


async def test_upserts_the_contact_on_the_lists(fake: FakeSendGridContacts, make_ctx: Ctx) -> None:
    outcome = await connector(fake).deliver(make_lead(email="John.Doe@Company.com"), make_ctx())

    contact = fake.contacts["john.doe@company.com"]
    assert {k: v for k, v in contact.items() if k != "id"} == {
        "email": "john.doe@company.com",
        "first_name": "John",
        "last_name": "Doe",
        "city": "San Francisco",
        "state_province_region": "California",
        "country": "US",
        "list_ids": [LIST_A],
    }
    assert outcome.status_code == 202
    assert outcome.detail == f"SendGrid contact upsert queued (job {fake.jobs[0]}, 1 lists)"
    request = fake.accepted[0]
    assert (request.method, request.path) == ("PUT", "/v3/marketing/contacts")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert "phone" not in request.body.decode() and "Acme" not in request.body.decode()


async def test_a_retry_updates_one_contact(fake: FakeSendGridContacts, make_ctx: Ctx) -> None:
    sg = connector(fake)
    await sg.deliver(make_lead(), make_ctx())
    await sg.deliver(make_lead(first_name="Johnny", email="JOHN.DOE@COMPANY.COM"), make_ctx())
    assert list(fake.contacts) == ["john.doe@company.com"]
    assert fake.contacts["john.doe@company.com"]["first_name"] == "Johnny"


async def test_campaign_lists_and_field_lengths(fake: FakeSendGridContacts, make_ctx: Ctx) -> None:
    lead = make_lead(first_name="J" * 80, campaign_settings=with_integration("sendgrid", list_ids=[LIST_B]))
    await connector(fake).deliver(lead, make_ctx())
    contact = fake.contacts["john.doe@company.com"]
    assert contact["list_ids"] == [LIST_B]
    assert contact["first_name"] == "J" * 50  # the contract's maxLength


async def test_no_lists_configured_adds_to_all_contacts(fake: FakeSendGridContacts, make_ctx: Ctx) -> None:
    await connector(fake, lists="").deliver(make_lead(), make_ctx())
    assert "list_ids" not in fake.accepted[0].json()


def test_wants_only_consenting_leads_that_did_not_opt_out() -> None:
    sg = SendGridContactsConnector(vendor_settings(sendgrid_api_key=KEY))
    assert sg.wants(make_lead())
    assert not sg.wants(make_lead(consent_given=False))
    assert not sg.wants(make_lead(do_not_sell=True))
    assert not sg.wants(make_lead(campaign_settings=with_integration("sendgrid", enabled=False)))
    assert not sg.wants(
        make_lead(consent_given=False, campaign_settings=with_integration("sendgrid", enabled=True))
    )


async def test_not_configured(make_ctx: Ctx) -> None:
    assert not SendGridContactsConnector(vendor_settings()).configured()
    assert not SendGridContactsConnector(vendor_settings(sendgrid_api_key=" ")).configured()
    with pytest.raises(PermanentError, match="not configured"):
        await SendGridContactsConnector(vendor_settings()).deliver(make_lead(), make_ctx())


async def test_no_consent_is_refused_without_a_request(fake: FakeSendGridContacts, make_ctx: Ctx) -> None:
    with pytest.raises(PermanentError, match="consent"):
        await connector(fake).deliver(make_lead(do_not_sell=True), make_ctx())
    assert fake.requests == []


async def test_rate_limit_uses_retry_after_or_the_reset_header(
    fake: FakeSendGridContacts, make_ctx: Ctx
) -> None:
    fake.fail_next(fake_sg.too_many_requests(retry_after="9"))
    with pytest.raises(RetriableError) as caught:
        await connector(fake).deliver(make_lead(), make_ctx())
    assert caught.value.retry_after == 9.0

    fake.fail_next(fake_sg.too_many_requests(reset_in=4))  # SendGrid's own headers only
    with pytest.raises(RetriableError) as caught:
        await connector(fake).deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 429
    assert caught.value.retry_after is not None and 2.0 <= caught.value.retry_after <= 4.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retriable(fake: FakeSendGridContacts, make_ctx: Ctx, status: int) -> None:
    fake.fail_next(fake_sg.server_error(status))
    with pytest.raises(RetriableError):
        await connector(fake).deliver(make_lead(), make_ctx())


async def test_client_errors_are_permanent(fake: FakeSendGridContacts, make_ctx: Ctx) -> None:
    with pytest.raises(PermanentError) as caught:
        await connector(fake, key="SG.wrong").deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 401
    # list ids must be UUIDs (format-checked against the contract)
    with pytest.raises(PermanentError) as caught:
        await connector(fake, lists="newsletter").deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 400
    assert caught.value.response_excerpt is not None and "list_ids" in caught.value.response_excerpt
    # an invalid address: refused, and the address stays out of the job record
    with pytest.raises(PermanentError) as caught:
        await connector(fake).deliver(make_lead(email="john.doe@localhost"), make_ctx())
    assert caught.value.response_excerpt is not None and "john.doe" not in caught.value.response_excerpt
    assert fake.contacts == {}


async def test_delete_contact(fake: FakeSendGridContacts, make_ctx: Ctx) -> None:
    sg = connector(fake)
    await sg.deliver(make_lead(), make_ctx())
    contact_id = fake.contacts["john.doe@company.com"]["id"]

    outcome = await sg.delete_contact("John.Doe@company.com", make_ctx())
    assert outcome.status_code == 202
    assert outcome.external_id == contact_id
    assert fake.contacts == {}
    search, delete = fake.accepted[-2:]
    assert (search.method, search.path, search.json()) == (
        "POST",
        "/v3/marketing/contacts/search/emails",
        {"emails": ["john.doe@company.com"]},
    )
    assert (delete.method, delete.path, delete.query) == (
        "DELETE",
        "/v3/marketing/contacts",
        {"ids": [contact_id]},
    )

    missing = await sg.delete_contact("john.doe@company.com", make_ctx())
    assert missing.status_code == 404
    assert missing.detail == "no SendGrid contact with that address"


async def test_delete_contact_errors_are_mapped(fake: FakeSendGridContacts, make_ctx: Ctx) -> None:
    fake.fail_next(fake_sg.server_error(503))
    with pytest.raises(RetriableError):
        await connector(fake).delete_contact("john.doe@company.com", make_ctx())
    with pytest.raises(PermanentError):
        await connector(fake, key="SG.wrong").delete_contact("john.doe@company.com", make_ctx())


async def test_the_fake_enforces_the_contract(fake: FakeSendGridContacts, http: httpx.AsyncClient) -> None:
    url = f"{fake.base_url}/v3/marketing/contacts"
    auth = {"Authorization": f"Bearer {KEY}"}
    bodies: list[dict[str, Any]] = [
        {"contacts": []},
        {"list_ids": [LIST_A]},
        {"contacts": [{"email": "a@b.co", "first_name": "x" * 51}]},
    ]
    for body in bodies:
        response = await http.put(url, json=body, headers=auth)
        assert response.status_code == 400, body
        assert response.json()["errors"][0]["message"]
    assert fake.contacts == {}


async def test_unsubscribe_suppresses_and_removes_the_contact(
    fake: FakeSendGridContacts, make_ctx: Ctx
) -> None:
    sg = connector(fake)
    await sg.deliver(make_lead(), make_ctx())
    assert "john.doe@company.com" in fake.contacts
    outcome = await sg.unsubscribe(PrivacySubject("John.Doe@company.com"), make_ctx())
    assert fake.suppressed == {"john.doe@company.com"}
    assert "john.doe@company.com" not in fake.contacts
    assert outcome.status_code == 201 and "suppressed" in (outcome.detail or "")
    # An address SendGrid never had is still suppressed.
    await sg.unsubscribe(PrivacySubject("other@company.com"), make_ctx())
    assert "other@company.com" in fake.suppressed
