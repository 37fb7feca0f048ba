"""/tokens: admins list, create (shown once) and revoke API tokens, audited like the CLI."""

from __future__ import annotations

import re

from sqlalchemy import select

from leadflow.security.repository import audit
from tests.conftest import Harness
from tests.web.conftest import csrf_of
from tests.web.test_page_foundation import signed_in


async def test_tokens_page_is_for_admins_only(harness: Harness) -> None:
    for role in ("manager", "sales", "analyst"):
        async with signed_in(harness, role) as client:
            assert (await client.get("/tokens")).status_code == 403, role
            refused = await client.post("/tokens", data={"name": "x", "role": "admin"})
            assert refused.status_code == 403, role
    assert (await harness.client.get("/tokens")).status_code == 303


async def test_create_use_and_revoke_a_token(harness: Harness) -> None:
    async with signed_in(harness, "admin") as client:
        page = await client.get("/tokens")
        assert page.status_code == 200 and "No API tokens yet." in page.text
        csrf = csrf_of(page.text)
        # Without the CSRF token nothing is created.
        refused = await client.post("/tokens", data={"name": "crm sync", "role": "manager"})
        assert refused.status_code == 403 and "Form expired" in refused.text
        created = await client.post(
            "/tokens",
            data={"name": "crm sync", "role": "manager", "expires_days": "30", "csrf_token": csrf},
        )
        assert created.status_code == 200, created.text
        assert created.headers["cache-control"] == "no-store"
        secret = re.search(r'id="api-token">(lf_[^<]+)<', created.text)
        assert secret, created.text
        token = secret.group(1)
        assert "only time" in created.text and f'data-copy="{token}"' in created.text

        bearer = {"Authorization": f"Bearer {token}"}
        assert (await harness.client.get("/v1/api/campaigns", headers=bearer)).status_code == 200
        assert (await harness.client.get("/v1/api/audit", headers=bearer)).status_code == 403  # a manager

        listing = await client.get("/tokens")
        assert "crm sync" in listing.text and token not in listing.text and token[:10] in listing.text
        token_id = int(re.findall(r'action="/tokens/(\d+)/revoke"', listing.text)[-1])
        assert (
            await client.post(f"/tokens/{token_id}/revoke")
        ).status_code == 403  # CSRF-less revoke refused
        assert (await harness.client.get("/v1/api/campaigns", headers=bearer)).status_code == 200
        revoked = await client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf})
        assert revoked.status_code == 303 and revoked.headers["location"] == f"/tokens?revoked={token_id}"
        after = await client.get(revoked.headers["location"])
        assert f"Token #{token_id} revoked" in after.text and "revoked " in after.text
        again = await client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf})
        assert again.status_code == 404

    assert (await harness.client.get("/v1/api/campaigns", headers=bearer)).status_code == 401
    async with harness.engine.connect() as conn:
        entries = (
            await conn.execute(
                select(audit.c.action, audit.c.channel, audit.c.actor, audit.c.details)
                .where(audit.c.target_type == "token", audit.c.target_id == str(token_id))
                .order_by(audit.c.id)
            )
        ).all()
    assert [(e.action, e.channel, e.actor) for e in entries] == [
        ("token.create", "dashboard", "admin@example.com"),
        ("token.revoke", "dashboard", "admin@example.com"),
    ]
    assert entries[0].details == {"role": "manager", "name": "crm sync"}


async def test_invalid_requests_show_field_errors(harness: Harness) -> None:
    async with signed_in(harness, "admin") as client:
        csrf = csrf_of((await client.get("/tokens")).text)
        bad = await client.post(
            "/tokens",
            data={"name": " ", "role": "root", "expires_days": "never", "csrf_token": csrf},
        )
        assert bad.status_code == 400
        assert 'id="name-error">Give the token a name' in bad.text
        assert 'id="role-error">Choose one of' in bad.text
        assert 'id="expires_days-error">Between 1 and 3650 days' in bad.text
        assert 'aria-invalid="true" aria-describedby="name-error"' in bad.text
        assert "No API tokens yet." in bad.text  # nothing was created
