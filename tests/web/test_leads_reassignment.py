"""Reassigning a lead from its page notifies the new owner like a fresh assignment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from leadflow.config import Settings
from tests.conftest import Harness
from tests.web.conftest import csrf_of, make_user
from tests.web.test_lead_pages import _lead, _member, _signed_in


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    """Slack configured (a notifier of the owner); nothing is sent: the worker does not run here."""
    return settings_factory(slack_webhook_url="https://hooks.example.test/services/T/B/x")


async def test_reassignment_queues_the_owner_notifications(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    member = await _member(harness, "rep@example.com", "Rep One")
    lead_id = await _lead(harness)  # grade A: Slack wants it
    client = await _signed_in(harness, await make_user(harness, "manager"))
    token = csrf_of((await client.get(f"/leads/{lead_id}")).text)
    done = await client.post(f"/leads/{lead_id}/assign", data={"csrf_token": token, "member_id": str(member)})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=assigned")
    queued = await harness.scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'deliver' AND dedup_key LIKE 'reassign:slack:%'"
    )
    assert queued == 1
    others = await harness.scalar(
        "SELECT count(*) FROM jobs WHERE dedup_key LIKE 'reassign:%' AND dedup_key NOT LIKE 'reassign:slack:%'"
    )
    assert others == 0  # e-mail and SMS are not configured
    assert (
        await harness.scalar("SELECT assigned_member_id FROM leads WHERE public_id = :p", p=lead_id) == member
    )
    unassigned = await client.post(f"/leads/{lead_id}/assign", data={"csrf_token": token, "member_id": ""})
    assert unassigned.headers["location"].endswith("?done=unassigned")
    assert await harness.scalar("SELECT count(*) FROM jobs WHERE dedup_key LIKE 'reassign:%'") == 1
    assert (
        await harness.scalar("SELECT assigned_member_id FROM leads WHERE public_id = :p", p=lead_id) is None
    )
