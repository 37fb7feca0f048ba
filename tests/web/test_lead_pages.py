"""The lead pages over HTTP: inbox (and its live poll), list with filters/search/export, the lead page
and its actions; scoping (a sales user cannot open another rep's lead by URL) and CSRF."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import httpx
import pytest

from leadflow.leads.service import INBOX_COUNT_CAP, INBOX_PAGE, InboxList
from leadflow.pipeline.runtime import build_worker, worker_context
from tests.conftest import Harness, example_lead
from tests.web.conftest import Staff, csrf_of, make_user, sign_in


async def _lead(harness: Harness, **contact: Any) -> str:
    answer = await harness.client.post("/v1/api/leads", json=example_lead(**contact))
    assert answer.status_code == 201, answer.text
    return str(answer.json()["lead_id"])


async def _member(harness: Harness, email: str, name: str) -> int:
    admin = await harness.token("admin")
    answer = await harness.client.post(
        "/v1/api/team-members", headers=admin, json={"name": name, "email": email}
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


async def _assign(harness: Harness, lead_id: str, email: str) -> None:
    admin = await harness.token("admin")
    answer = await harness.client.patch(
        f"/v1/api/leads/{lead_id}", headers=admin, json={"assigned_to": email}
    )
    assert answer.status_code == 200, answer.text


async def _signed_in(harness: Harness, staff: Staff) -> httpx.AsyncClient:
    done = await sign_in(harness.client, staff)
    assert done.status_code == 303, done.text
    return harness.client


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_inbox_lists_open_leads_by_grade_and_polls(harness: Harness, campaign: dict[str, Any]) -> None:
    manager = await make_user(harness, "manager")
    lead_id = await _lead(harness)
    client = await _signed_in(harness, manager)
    page = await client.get("/?view=all")
    assert page.status_code == 200, page.text
    assert lead_id in page.text and "John Doe" in page.text
    assert 'hx-trigger="every 5s"' in page.text
    mark = page.text.split("mark=", 1)[1].split('"', 1)[0]
    same = await client.get(f"/inbox/poll?view=all&mark={mark}")
    assert same.status_code == 200 and "HX-Trigger" not in same.headers
    other = await _lead(harness, email="ann.other@example.org")
    moved = await client.get(f"/inbox/poll?view=all&mark={mark}")
    assert moved.headers.get("HX-Trigger") == "inbox-changed"
    assert "John" not in moved.text  # the poll carries no personal data
    fragment = await client.get("/inbox/list?view=all")
    assert other in fragment.text and "<html" not in fragment.text
    reads = await harness.scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'lead.list' AND channel = 'dashboard'"
    )
    assert reads >= 2


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_inbox_shows_one_screen_at_a_time(harness: Harness, campaign: dict[str, Any]) -> None:
    """INBOX_PAGE leads per list, oldest first across the open statuses, a "Next" link with a cursor
    for the rest; follow-ups due page the same way; the poll and the fragment keep the screen."""
    admin = await harness.token("admin")
    ids = [await _lead(harness, email=f"page{n}@example.org") for n in range(INBOX_PAGE + 2)]
    closed, contacted, due = ids[0], ids[1], ids[2:]
    for lead_id, body in [(closed, {"status": "closed_lost"}), (contacted, {"status": "contacted"})]:
        answer = await harness.client.patch(f"/v1/api/leads/{lead_id}", headers=admin, json=body)
        assert answer.status_code == 200, answer.text
    for n, lead_id in enumerate(due):  # every open lead but one has a follow-up, overdue
        when = f"2025-01-{1 + n % 28:02d}T{n // 28:02d}:00:00Z"
        answer = await harness.client.patch(
            f"/v1/api/leads/{lead_id}", headers=admin, json={"follow_up_date": when}
        )
        assert answer.status_code == 200, answer.text
    client = await _signed_in(harness, await make_user(harness, "manager"))
    page = await client.get("/?view=all")
    assert page.status_code == 200, page.text

    def shown(html: str, heading: str) -> list[str]:
        section = html.split(f'id="{heading}"', 1)[1].split("</section>", 1)[0]
        return [i for i in re.findall(r'href="/leads/(lead_[0-9a-f]+)"', section)]

    open_leads = ids[1:]  # the closed one is not in the inbox; the contacted one is, in age order
    assert shown(page.text, "open-heading") == open_leads[:INBOX_PAGE]
    assert shown(page.text, "due-heading") == due[:INBOX_PAGE]
    assert f'<span class="count">{len(open_leads)}</span>' in page.text
    assert f'<span class="count">{len(due)}</span>' in page.text
    assert "Best and oldest open leads" not in page.text  # the first screen
    more = re.search(r'href="/\?(view=all&amp;open=[^"]+)">Next \d+ open leads', page.text)
    assert more, page.text
    second = await client.get("/?" + more.group(1).replace("&amp;", "&"))
    assert shown(second.text, "open-heading") == open_leads[INBOX_PAGE:]
    assert shown(second.text, "due-heading") == due[:INBOX_PAGE]  # the other list stays where it was
    assert "Best and oldest open leads" in second.text and "Next" not in second.text.split("open-heading")[1]
    query = more.group(1).replace("&amp;", "&")
    fragment = await client.get(f"/inbox/list?{query}")
    assert shown(fragment.text, "open-heading") == open_leads[INBOX_PAGE:]
    mark = second.text.split("mark=", 1)[1].split('"', 1)[0]
    assert "HX-Trigger" not in (await client.get(f"/inbox/poll?{query}&mark={mark}")).headers
    changed = await harness.client.patch(
        f"/v1/api/leads/{ids[-1]}", headers=admin, json={"status": "contacted"}
    )
    assert changed.status_code == 200, changed.text
    moved = await client.get(f"/inbox/poll?{query}&mark={mark}")  # a lead on this screen changed
    assert moved.headers.get("HX-Trigger") == "inbox-changed"
    bad = await client.get("/?view=all&open=not-a-cursor")
    assert bad.status_code == 400 and "<html" in bad.text


def test_inbox_counts_above_the_cap_read_as_a_floor() -> None:
    capped = InboxList([], INBOX_COUNT_CAP, True, None)
    assert capped.total_text == f"{INBOX_COUNT_CAP:,}+" == "1,000+"
    assert InboxList([], 999, False, None).total_text == "999"


async def test_sales_inbox_and_lead_page_are_scoped(harness: Harness, campaign: dict[str, Any]) -> None:
    member = await _member(harness, "rep@example.com", "Rep One")
    await _member(harness, "other@example.com", "Rep Two")
    sales = await make_user(harness, "sales", "rep.user@example.com", member_email="rep@example.com")
    mine = await _lead(harness)
    theirs = await _lead(harness, email="someone@example.org")
    await _assign(harness, mine, "rep@example.com")
    await _assign(harness, theirs, "other@example.com")
    assert member
    client = await _signed_in(harness, sales)
    inbox = await client.get("/")
    assert mine in inbox.text and theirs not in inbox.text
    assert (await client.get(f"/leads/{mine}")).status_code == 200
    refused = await client.get(f"/leads/{theirs}")
    assert refused.status_code == 404 and "Lead not found" in refused.text
    listed = await client.get("/leads")
    assert mine in listed.text and theirs not in listed.text
    token = csrf_of(inbox.text)
    change = await client.post(f"/leads/{theirs}/note", data={"csrf_token": token, "note": "hi"})
    assert change.status_code == 404
    reads = await harness.scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'lead.read' AND target_id = :id", id=mine
    )
    assert reads == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_lead_page_actions(harness: Harness, campaign: dict[str, Any]) -> None:
    member = await _member(harness, "rep@example.com", "Rep One")
    manager = await make_user(harness, "manager")
    lead_id = await _lead(harness)
    client = await _signed_in(harness, manager)
    page = await client.get(f"/leads/{lead_id}")
    assert page.status_code == 200
    for text in ("john.doe@company.com", "Score", "Campaign and source", "Enrichment", "Deliveries"):
        assert text in page.text
    token = csrf_of(page.text)
    refused = await client.post(f"/leads/{lead_id}/status", data={"status": "contacted"})
    assert refused.status_code == 403 and "Form expired" in refused.text
    steps: list[tuple[str, dict[str, str]]] = [
        ("status", {"status": "contacted"}),
        ("note", {"note": "Asked for a quote"}),
        ("activity", {"activity_type": "call_made", "note": ""}),
        ("follow-up", {"follow_up": "2030-01-02T09:30", "tz_offset": "-60"}),
        ("assign", {"member_id": str(member)}),  # ids are not 1 on a shared PostgreSQL/MariaDB
        ("status", {"status": "closed_won", "deal_value": "7500"}),
    ]
    for action, data in steps:
        done = await client.post(f"/leads/{lead_id}/{action}", data={"csrf_token": token, **data})
        assert done.status_code == 303, (action, done.text)
    detail = (await client.get(f"/v1/api/leads/{lead_id}", headers=await harness.token("admin"))).json()
    assert detail["status"] == "closed_won" and detail["deal_value"] == "7500.00"
    assert detail["follow_up_date"].startswith("2030-01-02T08:30")
    assert detail["assigned_to"] == "rep@example.com"
    kinds = [a["activity_type"] for a in detail["activities"]]
    assert {"status_changed", "note_added", "call_made", "follow_up_scheduled", "assigned"} <= set(kinds)
    assert any(a["description"] == "Asked for a quote" for a in detail["activities"])
    bad = await client.post(f"/leads/{lead_id}/status", data={"csrf_token": token, "status": "new"})
    assert bad.status_code == 409 and "cannot move" in bad.text
    updates = await harness.scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'lead.update' AND channel = 'dashboard'"
    )
    assert updates == 6


async def test_a_logged_call_counts_as_first_contact(harness: Harness, campaign: dict[str, Any]) -> None:
    """Speed to lead: a call logged without a status change is the lead's first contact."""
    manager = await make_user(harness, "manager")
    lead_id = await _lead(harness)
    client = await _signed_in(harness, manager)
    token = csrf_of((await client.get(f"/leads/{lead_id}")).text)
    admin = await harness.token("admin")
    before = (await client.get("/v1/api/analytics", headers=admin)).json()["speed_to_lead"]
    assert (before["contacted"], before["waiting"]) == (0, 1)
    logged = await client.post(
        f"/leads/{lead_id}/activity", data={"csrf_token": token, "activity_type": "call_made", "note": ""}
    )
    assert logged.status_code == 303, logged.text
    detail = (await client.get(f"/v1/api/leads/{lead_id}", headers=admin)).json()
    assert detail["status"] == "new" and detail["contacted_at"] is not None
    after = (await client.get("/v1/api/analytics", headers=admin)).json()["speed_to_lead"]
    assert (after["contacted"], after["waiting"], after["median_minutes"]) == (1, 0, 0)


async def test_list_filters_search_and_export(harness: Harness, campaign: dict[str, Any]) -> None:
    manager = await make_user(harness, "manager")
    first = await _lead(harness)
    second = await _lead(harness, email="=cmd@example.org", firstName="=HYPERLINK(1)")
    client = await _signed_in(harness, manager)
    found = await client.get("/leads", params={"q": "JOHN.DOE@company.com"})
    assert first in found.text and second not in found.text
    assert "Names are encrypted" in found.text
    by_id = await client.get("/leads", params={"q": second})
    assert second in by_id.text and first not in by_id.text
    bad = await client.get("/leads", params={"q": "John", "grade": "Z"})
    assert bad.status_code == 400 and "whole e-mail address" in bad.text and "Not one of" in bad.text
    oldest = await client.get("/leads", params={"sort": "oldest"})
    assert oldest.text.index(first) < oldest.text.index(second)
    export = await client.get("/leads/export.csv", params={"campaign": campaign["id"]})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["lead_id"] for r in rows} == {first, second}
    assert any(r["first_name"] == "'=HYPERLINK(1)" for r in rows)
    exports = await harness.scalar("SELECT count(*) FROM audit_log WHERE action = 'leads.export'")
    assert exports == 1


def _form(page: str) -> dict[str, str]:
    return {"csrf_token": csrf_of(page)}


async def test_manual_entry_and_duplicate(harness: Harness, campaign: dict[str, Any]) -> None:
    manager = await make_user(harness, "manager")
    client = await _signed_in(harness, manager)
    page = await client.get("/leads/new")
    assert page.status_code == 200 and "New lead" in page.text
    base = {**_form(page.text), "campaign_id": campaign["id"], "source": "phone"}
    missing = await client.post("/leads/new", data={**base, "first_name": "Ann", "last_name": ""})
    assert missing.status_code == 400
    assert 'id="e-last_name"' in missing.text and 'id="e-email"' in missing.text  # next to the fields
    caller = {**base, "first_name": "Ann", "last_name": "Caller", "phone": "+1 415 555 0100"}
    made = await client.post("/leads/new", data=caller)
    assert made.status_code == 303, made.text
    lead_id = made.headers["location"].split("/leads/")[1].split("?")[0]
    row = await harness.scalar(
        "SELECT source || '|' || email_kind FROM leads WHERE public_id = :p", p=lead_id
    )
    assert row == "phone|none"
    shown = await client.get(made.headers["location"])
    assert "Ann Caller" in shown.text and "manager@example.com" in shown.text  # who entered it
    again = await client.post("/leads/new", data=caller)
    assert again.status_code == 409 and f'href="/leads/{lead_id}"' in again.text
    with_email = {
        **base,
        "first_name": "Bo",
        "last_name": "Mail",
        "email": "bo@example.org",
        "source": "event",
    }
    assert (await client.post("/leads/new", data=with_email)).status_code == 303
    dup = await client.post("/leads/new", data=with_email)
    assert dup.status_code == 409 and "open the existing lead" in dup.text
    created = await harness.scalar("SELECT count(*) FROM audit_log WHERE action = 'lead.create'")
    assert created == 2
    sales = await make_user(harness, "sales", "s@example.com")
    await sign_in(client, sales)
    assert (await client.get("/leads/new")).status_code == 403


async def test_a_phone_only_lead_keeps_its_email_kind_when_processed(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    """Enrichment of a lead without an e-mail address must not classify an empty domain."""
    manager = await make_user(harness, "manager")
    client = await _signed_in(harness, manager)
    page = await client.get("/leads/new")
    caller = {
        **_form(page.text),
        "campaign_id": campaign["id"],
        "source": "phone",
        "first_name": "Pat",
        "last_name": "Phone",
        "phone": "+1 415 555 0107",
    }
    made = await client.post("/leads/new", data=caller)
    assert made.status_code == 303, made.text
    lead_id = made.headers["location"].split("/leads/")[1].split("?")[0]
    async with worker_context(harness.engine, harness.settings) as ctx:
        assert await build_worker(ctx).run_until_idle(60) >= 1
    row = await harness.scalar(
        "SELECT email_kind || '|' || (enriched_at IS NOT NULL) FROM leads WHERE public_id = :p", p=lead_id
    )
    assert row == "none|1"


CSV = (
    b"First name;Last name;E-mail;Phone;Company\n"
    b"Ann;One;ann.one@example.org;;Acme\n"
    b"Bad;Row;not-an-address;;\n"
    b";Nameless;x@example.org;;\n"
    b"Cy;Phone;;+1 415 555 0101;\n"
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_csv_import_with_a_bad_row_and_reimport(harness: Harness, campaign: dict[str, Any]) -> None:
    manager = await make_user(harness, "manager")
    client = await _signed_in(harness, manager)
    page = await client.get("/leads/import")
    token = csrf_of(page.text)
    preview = await client.post(
        "/leads/import",
        data={"csrf_token": token, "campaign_id": campaign["id"], "step": "upload"},
        files={"file": ("leads.csv", CSV, "text/csv")},
    )
    assert preview.status_code == 200, preview.text
    assert "4 rows; 2 can be imported, 2 have errors" in preview.text
    assert "Invalid email" in preview.text or "email" in preview.text.lower()
    content = preview.text.split('name="content" value="', 1)[1].split('"', 1)[0]
    mapping = {
        "map_first_name": "0",
        "map_last_name": "1",
        "map_email": "2",
        "map_phone": "3",
        "map_company": "4",
    }
    run = {"csrf_token": token, "campaign_id": campaign["id"], "content": content, "step": "run", **mapping}
    done = await client.post("/leads/import", data=run)
    assert done.status_code == 200, done.text
    assert "2 created, 0 already imported, 0 duplicates, 2 not imported" in done.text
    assert await harness.scalar("SELECT count(*) FROM leads WHERE source = 'import'") == 2
    again = await client.post("/leads/import", data=run)
    assert "0 created, 2 already imported" in again.text
    assert await harness.scalar("SELECT count(*) FROM leads WHERE source = 'import'") == 2
    assert await harness.scalar("SELECT count(*) FROM audit_log WHERE action = 'leads.import'") == 2


async def test_admin_privacy_actions_and_dead_delivery_retry(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    admin = await make_user(harness, "admin")
    manager = await make_user(harness, "manager")
    lead_id = await _lead(harness)
    other = await _lead(harness, email="keep.me@example.org")
    await harness.execute(
        "UPDATE jobs SET status = 'dead', last_error = 'boom' WHERE lead_id = "
        "(SELECT id FROM leads WHERE public_id = :p)",
        p=lead_id,
    )
    job_id = await harness.scalar(
        "SELECT id FROM jobs WHERE lead_id = (SELECT id FROM leads WHERE public_id = :p)", p=lead_id
    )
    client = await _signed_in(harness, manager)
    page = await client.get(f"/leads/{lead_id}")
    assert "Erase person" not in page.text and "Retry" not in page.text  # admins only
    token = csrf_of(page.text)
    refused = await client.post(f"/leads/{lead_id}/erase", data={"csrf_token": token})
    assert refused.status_code == 403
    await sign_in(client, admin)
    page = await client.get(f"/leads/{lead_id}")
    token = csrf_of(page.text)
    assert f"/deliveries/{job_id}/retry" in page.text
    retried = await client.post(f"/leads/{lead_id}/deliveries/{job_id}/retry", data={"csrf_token": token})
    assert retried.status_code == 303
    assert await harness.scalar("SELECT status FROM jobs WHERE id = :j", j=job_id) == "pending"
    exported = await client.get(f"/leads/{lead_id}/export.json")
    assert exported.status_code == 200 and exported.json()["leads"][0]["lead_id"] == lead_id
    anonymised = await client.post(f"/leads/{other}/anonymise", data={"csrf_token": token})
    assert anonymised.status_code == 303
    assert "Anonymised Lead" in (await client.get(f"/leads/{other}")).text
    erased = await client.post(f"/leads/{lead_id}/erase", data={"csrf_token": token})
    assert erased.status_code == 303 and erased.headers["location"] == "/leads?erased=1"
    assert (await client.get(f"/leads/{lead_id}")).status_code == 404
    actions = await harness.scalar(
        "SELECT count(*) FROM audit_log WHERE action IN "
        "('job.retry', 'privacy.export', 'lead.anonymize', 'privacy.erase') AND channel = 'dashboard'"
    )
    assert actions == 4


async def test_search_by_phone_through_its_blind_index(harness: Harness, campaign: dict[str, Any]) -> None:
    manager = await make_user(harness, "manager")
    first = await _lead(harness)  # +1-555-123-4567
    second = await _lead(harness, email="other.phone@example.org", phone="+1 415 555 0142")
    stored = await harness.scalar("SELECT phone_hash FROM leads WHERE public_id = :p", p=second)
    assert stored and "555" not in stored
    client = await _signed_in(harness, manager)
    found = await client.get("/leads", params={"q": "(415) 555-0142"})
    assert second in found.text and first not in found.text
    admin = await harness.token("admin")
    fixed = await client.patch(f"/v1/api/leads/{second}", headers=admin, json={"phone": "+1 415 555 0199"})
    assert fixed.status_code == 200
    assert second not in (await client.get("/leads", params={"q": "+14155550142"})).text
    assert second in (await client.get("/leads", params={"q": "+14155550199"})).text
