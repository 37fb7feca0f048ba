"""Mailchimp connector through real HTTP to the local Mailchimp fake (contract-validated bodies)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from leadflow.config import MailchimpSettings
from leadflow.integrations.base import DeliveryContext, PermanentError, PrivacySubject, RetriableError
from leadflow.integrations.mailchimp import MailchimpConnector, api_base, subscriber_hash
from tests.crm.conftest import vendor_settings
from tests.crm.factories import make_lead, with_integration
from tests.fakes import mailchimp as fake_mc
from tests.fakes.mailchimp import FakeMailchimp
from tests.fakes.server import Reply

Ctx = Callable[..., DeliveryContext]
KEY = "0123456789abcdef0123456789abcdef-us21"
HASH = hashlib.md5(b"john.doe@company.com", usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def server(contracts: Path) -> Iterator[FakeMailchimp]:
    running = FakeMailchimp(contracts / "mailchimp/marketing-v3-list-members.subset.json", api_key=KEY)
    with running:
        yield running


@pytest.fixture
def fake(server: FakeMailchimp) -> FakeMailchimp:
    server.reset()
    return server


def connector(fake: FakeMailchimp, key: str = KEY, list_id: str | None = "list-main") -> MailchimpConnector:
    return MailchimpConnector(
        vendor_settings(mailchimp_api_key=key, mailchimp_list_id=list_id, mailchimp_base_url=fake.base_url)
    )


def active_tags(member: dict[str, object]) -> set[str]:
    tags = member["tags"]
    assert isinstance(tags, dict)
    return {name for name, on in tags.items() if on}


async def test_subscribes_and_tags_the_member(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    outcome = await connector(fake).deliver(make_lead(email="John.Doe@Company.com"), make_ctx())

    member = fake.member("list-main", "john.doe@company.com")
    assert member is not None
    assert member["status"] == "subscribed"
    assert member["merge_fields"] == {"FNAME": "John", "LNAME": "Doe"}
    assert active_tags(member) == {
        "campaign:nextcloud-installation-2025",
        "service:Nextcloud Installation",
        "grade:A",
    }
    assert outcome.status_code == 200
    assert outcome.external_id == member["contact_id"]
    assert outcome.detail == "Mailchimp member subscribed on list list-main (3 tags)"

    put, tags = fake.accepted
    assert (put.method, put.path) == ("PUT", f"/3.0/lists/list-main/members/{HASH}")
    assert (tags.method, tags.path) == ("POST", f"/3.0/lists/list-main/members/{HASH}/tags")
    assert put.headers["authorization"] == "Basic " + base64.b64encode(f"anystring:{KEY}".encode()).decode()
    assert "status" not in put.json()  # never overrides an existing member's choice
    assert {"name": "grade:B", "status": "inactive"} in tags.json()["tags"]


async def test_gdpr_leads_get_double_opt_in(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    await connector(fake).deliver(make_lead(privacy_regime="gdpr"), make_ctx())
    member = fake.member("list-main", "john.doe@company.com")
    assert member is not None and member["status"] == "pending"


async def test_a_retry_updates_one_member_and_never_resubscribes(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    mc = connector(fake)
    await mc.deliver(make_lead(), make_ctx())
    member = fake.member("list-main", "john.doe@company.com")
    assert member is not None
    member["status"] = "unsubscribed"  # the person unsubscribed in between

    outcome = await mc.deliver(make_lead(lead_grade="B", email="JOHN.DOE@company.com"), make_ctx())
    assert len(fake.lists["list-main"]) == 1
    assert member["status"] == "unsubscribed"
    assert "grade:A" not in active_tags(member) and "grade:B" in active_tags(member)
    assert outcome.detail is not None and "unsubscribed" in outcome.detail


async def test_campaign_list_override(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    lead = make_lead(campaign_settings=with_integration("mailchimp", list_id="list-campaign"))
    await connector(fake).deliver(lead, make_ctx())
    assert fake.member("list-campaign", "john.doe@company.com") is not None
    assert fake.lists["list-main"] == {}


def test_wants_only_consenting_leads_that_did_not_opt_out() -> None:
    mc = MailchimpConnector(vendor_settings(mailchimp_api_key=KEY, mailchimp_list_id="list-main"))
    assert mc.wants(make_lead())
    assert not mc.wants(make_lead(consent_given=False))
    assert not mc.wants(make_lead(do_not_sell=True))
    assert not mc.wants(make_lead(campaign_settings=with_integration("mailchimp", enabled=False)))
    # a campaign cannot switch consent off
    forced = with_integration("mailchimp", enabled=True)
    assert not mc.wants(make_lead(consent_given=False, campaign_settings=forced))
    # no list anywhere: nothing to add the lead to
    no_list = MailchimpConnector(vendor_settings(mailchimp_api_key=KEY))
    assert not no_list.wants(make_lead())
    assert no_list.wants(make_lead(campaign_settings=with_integration("mailchimp", list_id="list-campaign")))


async def test_no_consent_is_refused_without_a_request(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    with pytest.raises(PermanentError, match="consent"):
        await connector(fake).deliver(make_lead(consent_given=False), make_ctx())
    assert fake.requests == []


def test_configured_and_data_centre() -> None:
    assert api_base(MailchimpSettings(api_key=KEY)) == "https://us21.api.mailchimp.com"
    assert api_base(MailchimpSettings(api_key="abc-US3")) == "https://us3.api.mailchimp.com"
    assert api_base(MailchimpSettings(api_key=KEY, base_url="http://127.0.0.1:9/")) == "http://127.0.0.1:9"
    assert MailchimpConnector(vendor_settings(mailchimp_api_key=KEY)).configured()
    assert not MailchimpConnector(vendor_settings()).configured()
    assert not MailchimpConnector(vendor_settings(mailchimp_api_key="nodatacentre")).configured()
    assert not MailchimpConnector(vendor_settings(mailchimp_api_key="key-us1/evil.com")).configured()
    assert MailchimpConnector(
        vendor_settings(mailchimp_api_key="nodatacentre", mailchimp_base_url="http://127.0.0.1:9")
    ).configured()


def test_subscriber_hash_is_md5_of_the_lower_cased_address() -> None:
    assert subscriber_hash(" John.Doe@Company.COM ") == HASH


async def test_rate_limit_is_retriable_with_retry_after(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    fake.fail_next(fake_mc.too_many_requests("3"))
    with pytest.raises(RetriableError) as caught:
        await connector(fake).deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 3.0


async def test_server_error_is_retriable_even_on_the_tags_call(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    fake.fail_next(fake_mc.server_error(500))
    with pytest.raises(RetriableError):
        await connector(fake).deliver(make_lead(), make_ctx())
    # the member was saved but tagging failed: the retry repeats both, idempotently
    mc = connector(fake)
    await mc.deliver(make_lead(), make_ctx())
    fake.requests.clear()
    fake.scripted.clear()
    member = Reply(200, {"status": "subscribed", "contact_id": "c-1"})
    fake.fail_next(member, fake_mc.server_error(503))  # the PUT succeeds, the tags call fails
    with pytest.raises(RetriableError) as caught:
        await mc.deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 503


async def test_client_errors_are_permanent(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    with pytest.raises(PermanentError) as caught:
        await connector(fake, key="ffffffffffffffffffffffffffffffff-us21").deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 401
    with pytest.raises(PermanentError) as caught:
        await connector(fake, list_id="no-such-list").deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 404


async def test_permanent_delete_then_redelivery_is_refused(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    mc = connector(fake)
    await mc.deliver(make_lead(), make_ctx())
    outcome = await mc.permanent_delete("John.Doe@company.com", make_ctx())
    assert outcome.status_code == 204
    assert fake.lists["list-main"] == {}
    assert fake.accepted[-1].path == f"/3.0/lists/list-main/members/{HASH}/actions/delete-permanent"

    again = await mc.permanent_delete("john.doe@company.com", make_ctx())
    assert again.status_code == 404  # already gone: success for an erasure

    with pytest.raises(PermanentError) as caught:
        await mc.deliver(make_lead(), make_ctx())
    assert caught.value.status_code == 400
    excerpt = caught.value.response_excerpt or ""
    assert excerpt.startswith("Forgotten Email Not Subscribed")
    assert "john.doe" not in excerpt


async def test_the_fake_enforces_the_contract(fake: FakeMailchimp, http: httpx.AsyncClient) -> None:
    """Both status fields at once break the contract's oneOf; a tag needs a status."""
    url = f"{fake.base_url}/3.0/lists/list-main/members/{HASH}"
    body = {"email_address": "john.doe@company.com", "status_if_new": "subscribed", "status": "subscribed"}
    response = await http.put(url, json=body, auth=("anystring", KEY))
    assert response.status_code == 400
    assert response.json()["title"] == "Invalid Resource"
    response = await http.put(
        url, json={"email_address": "john.doe@company.com", "status_if_new": "maybe"}, auth=("x", KEY)
    )
    assert response.status_code == 400
    response = await http.post(f"{url}/tags", json={"tags": [{"name": "x"}]}, auth=("x", KEY))
    assert response.status_code == 400
    assert fake.lists["list-main"] == {}


async def test_unsubscribe_existing_new_and_forgotten_addresses(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    mc = connector(fake)
    await mc.deliver(make_lead(), make_ctx())
    assert fake.member("list-main", "john.doe@company.com")["status"] == "subscribed"  # type: ignore[index]
    outcome = await mc.unsubscribe(PrivacySubject("John.Doe@company.com"), make_ctx())
    assert outcome.detail == "Mailchimp member unsubscribed on list list-main"
    assert fake.member("list-main", "john.doe@company.com")["status"] == "unsubscribed"  # type: ignore[index]
    # A later form does not subscribe the person again (status_if_new only).
    await mc.deliver(make_lead(), make_ctx())
    assert fake.member("list-main", "john.doe@company.com")["status"] == "unsubscribed"  # type: ignore[index]

    # Unknown to Mailchimp: kept as unsubscribed (suppressed), in one request.
    before = len(fake.requests)
    await mc.unsubscribe(PrivacySubject("new.person@company.com"), make_ctx())
    assert fake.member("list-main", "new.person@company.com")["status"] == "unsubscribed"  # type: ignore[index]
    assert len(fake.requests) == before + 1

    # Permanently deleted before: nothing left to unsubscribe.
    await mc.permanent_delete("john.doe@company.com", make_ctx())
    gone = await mc.unsubscribe(PrivacySubject("john.doe@company.com"), make_ctx())
    assert gone.status_code == 400 and "permanently deleted" in (gone.detail or "")


async def test_privacy_requests_cover_the_lists_campaigns_set(fake: FakeMailchimp, make_ctx: Ctx) -> None:
    mc = connector(fake)
    settings = with_integration("mailchimp", list_id="list-campaign")
    await mc.deliver(make_lead(campaign_settings=settings), make_ctx())
    await mc.deliver(make_lead(), make_ctx())
    subject = PrivacySubject("john.doe@company.com", campaign_settings=(settings, {}, settings))
    assert mc.subject_lists(subject) == ["list-main", "list-campaign"]
    await mc.unsubscribe(subject, make_ctx())
    for list_id in ("list-main", "list-campaign"):
        assert fake.member(list_id, "john.doe@company.com")["status"] == "unsubscribed"  # type: ignore[index]
    outcome = await mc.erase(subject, make_ctx())
    assert fake.lists["list-main"] == {} and fake.lists["list-campaign"] == {}
    assert outcome.detail == (
        "Mailchimp member deleted from list list-main; Mailchimp member deleted from list list-campaign"
    )
    with pytest.raises(PermanentError):
        connector(fake, list_id=None).subject_lists(PrivacySubject("john.doe@company.com"))
