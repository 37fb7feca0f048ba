"""Privacy rights through HTTP and the CLI: consent, export, erase, anonymise, retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from leadflow.kit.clock import utcnow
from tests.cli import CliResult, run_cli
from tests.conftest import TEST_KEY, Harness, example_lead

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


async def _capture(h: Harness, **contact: Any) -> str:
    body = example_lead(**contact)
    body["form_metadata"]["consent_notice_version"] = "2025-09"
    response = await h.client.post("/v1/api/leads", json=body)
    assert response.status_code == 201, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def test_consent_and_regime_are_recorded(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    await _capture(harness, email="eu.person@company.com", country="DE")
    body = example_lead(email="ca.person@company.com", country="US", region="CA")
    body["form_metadata"].update(do_not_sell=True, consent_given=False)
    assert (await harness.client.post("/v1/api/leads", json=body)).status_code == 201
    eu = (
        await harness.client.get(
            "/v1/api/privacy/export", headers=admin, params={"email": "eu.person@company.com"}
        )
    ).json()
    lead = eu["leads"][0]
    assert lead["consent"]["given"] is True
    assert lead["consent"]["notice_version"] == "2025-09"
    assert lead["consent"]["form_version"] == "v2.1"
    assert lead["consent"]["at"] is not None
    assert lead["consent"]["ip_address"] == "192.168.1.1"
    assert lead["privacy"] == {"regime": "gdpr", "do_not_sell": False}
    ca = (
        await harness.client.get(
            "/v1/api/privacy/export", headers=admin, params={"email": "CA.Person@company.com"}
        )
    ).json()
    assert ca["leads"][0]["privacy"] == {"regime": "ccpa", "do_not_sell": True}
    assert ca["leads"][0]["consent"]["given"] is False


async def test_export_returns_every_record_and_is_audited(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    first = await _capture(harness, email="person@company.com")
    await harness.execute(
        "UPDATE leads SET created_at = :t WHERE public_id = :p", t=utcnow() - timedelta(days=2), p=first
    )
    second = await _capture(harness, email="person@company.com")
    await _capture(harness, email="someone.else@company.com")
    await harness.client.patch(f"/v1/api/leads/{second}", headers=admin, json={"note": "Prefers calls"})
    response = await harness.client.get(
        "/v1/api/privacy/export", headers=admin, params={"email": "person@company.com"}
    )
    assert response.status_code == 200
    data = response.json()
    assert [lead["lead_id"] for lead in data["leads"]] == [first, second]
    assert data["leads"][1]["email"] == "person@company.com"
    assert any(a["description"] == "Prefers calls" for a in data["leads"][1]["activities"])
    assert data["erased_before"] is None
    audit = (
        await harness.client.get("/v1/api/audit", headers=admin, params={"action": "privacy.export"})
    ).json()
    assert audit["items"][0]["details"] == {"lead_ids": [first, second]}
    bad = await harness.client.get("/v1/api/privacy/export", headers=admin, params={"email": "nope"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "email"
    manager = await harness.token("manager")
    assert (
        await harness.client.get("/v1/api/privacy/export", headers=manager, params={"email": "a@b.co"})
    ).status_code == 403


async def test_erase_deletes_leaves_tombstone_and_flags_reimport(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    lead_id = await _capture(harness, email="forget.me@company.com")
    keep = await _capture(harness, email="keep.me@company.com")
    response = await harness.client.post(
        "/v1/api/privacy/erase",
        headers=admin,
        json={"email": "Forget.Me@company.com", "reason": "gdpr_art17"},
    )
    assert response.status_code == 200
    assert response.json()["leads_deleted"] == 1
    assert await harness.scalar("SELECT count(*) FROM leads WHERE public_id = :p", p=lead_id) == 0
    assert await harness.scalar("SELECT count(*) FROM leads WHERE public_id = :p", p=keep) == 1
    assert (
        await harness.scalar("SELECT count(*) FROM lead_activities a JOIN leads l ON l.id = a.lead_id") >= 1
    )
    assert await harness.scalar("SELECT count(*) FROM privacy_tombstones") == 1
    assert (await harness.client.get(f"/v1/api/leads/{lead_id}", headers=admin)).status_code == 404
    export = (
        await harness.client.get(
            "/v1/api/privacy/export", headers=admin, params={"email": "forget.me@company.com"}
        )
    ).json()
    assert export["leads"] == []
    assert export["erased_before"] is not None
    # A later submission of the same person is stored but flagged.
    again = await _capture(harness, email="forget.me@company.com")
    lead = (await harness.client.get(f"/v1/api/leads/{again}", headers=admin)).json()
    assert "previously_erased" in [a["activity_type"] for a in lead["activities"]]


async def test_anonymize_keeps_analytics(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    lead_id = await _capture(harness, email="anon@company.com")
    await harness.client.patch(
        f"/v1/api/leads/{lead_id}", headers=admin, json={"note": "Jane's mobile is 0171-5550199"}
    )
    url = f"/v1/api/campaigns/{campaign['id']}/analytics"
    before = (await harness.client.get(url, headers=admin)).json()
    response = await harness.client.post(f"/v1/api/leads/{lead_id}/anonymize", headers=admin)
    assert response.status_code == 200, response.text
    lead = response.json()
    assert lead["first_name"] == "Anonymised"
    assert "anon@" not in lead["email"]
    assert (
        lead["phone"] is None
        and lead["company"] is None
        and lead["message"] is None
        and lead["ip_address"] is None
    )
    assert lead["lead_score"] == 85 and lead["lead_grade"] == "A" and lead["status"] == "new"
    assert lead["campaign_id"] == campaign["id"]
    assert "0171-5550199" not in response.text  # long enough not to occur in a random id
    assert (await harness.client.get(url, headers=admin)).json() == before
    assert (await harness.client.post(f"/v1/api/leads/{lead_id}/anonymize", headers=admin)).status_code == 409
    export = (
        await harness.client.get(
            "/v1/api/privacy/export", headers=admin, params={"email": "anon@company.com"}
        )
    ).json()
    assert export["leads"] == []


def _cli(args: list[str], database_url: str, env_extra: dict[str, str]) -> CliResult:
    """``leadflow ARGS`` in-process (tests/cli.py) against the test's database."""
    env = {"DATABASE_URL": database_url, "ENCRYPTION_KEY": TEST_KEY, **env_extra}
    return run_cli(args, extra_env=env, code=None)


async def test_retention_purge_dry_run_and_anonymise(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], database_url: str
) -> None:
    old = await _capture(harness, email="old@company.com")
    fresh = await _capture(harness, email="fresh@company.com")
    await harness.execute(
        "UPDATE leads SET created_at = :t WHERE public_id = :p", t=utcnow() - timedelta(days=40), p=old
    )
    await harness.engine.dispose()
    dry = _cli(["privacy", "purge", "--dry-run"], database_url, {"RETENTION_DAYS": "30"})
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("1 leads created before") and "would be anonymized" in dry.stdout
    assert (await harness.client.get(f"/v1/api/leads/{old}", headers=admin)).json()["first_name"] == "John"
    real = _cli(["privacy", "purge"], database_url, {"RETENTION_DAYS": "30"})
    assert real.returncode == 0, real.stderr
    assert "1 leads" in real.stdout and "were anonymized" in real.stdout
    # Then the space of the overwritten data is reclaimed the way the database needs.
    expected = {"sqlite": "checkpoint", "postgresql": "vacuum", "mysql": "optimize"}
    assert f"space reclaimed: {expected[database_url.split('+')[0]]}" in real.stdout, real.stdout
    assert (await harness.client.get(f"/v1/api/leads/{old}", headers=admin)).json()[
        "first_name"
    ] == "Anonymised"
    assert (await harness.client.get(f"/v1/api/leads/{fresh}", headers=admin)).json()["first_name"] == "John"
    too_long = _cli(["privacy", "purge", "--dry-run"], database_url, {"RETENTION_DAYS": "4000"})
    assert too_long.returncode == 2  # more than the spec's 7 years is refused


async def test_erase_from_the_cli(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], database_url: str
) -> None:
    lead_id = await _capture(harness, email="cli.erase@company.com")
    await harness.engine.dispose()
    result = _cli(["privacy", "erase", "--email", "cli.erase@company.com"], database_url, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 leads deleted; deletion queued at: none configured"
    assert (await harness.client.get(f"/v1/api/leads/{lead_id}", headers=admin)).status_code == 404
    audit = (
        await harness.client.get("/v1/api/audit", headers=admin, params={"action": "privacy.erase"})
    ).json()
    assert audit["items"][0]["channel"] == "cli"
