"""After an erase (or anonymisation) no byte of the person's data is left in the SQLite files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.kit.state import state_of
from leadflow.leads.models import PII_FIELDS
from leadflow.security.tokens import create_token
from tests.conftest import Harness, example_lead

# Stored in clear (not personal enough to encrypt, but they identify the visit).
CLEAR_FIELDS = ("visitor_id", "session_id", "utm_term", "utm_content", "referrer_url", "landing_page_url")


def _body(n: int) -> dict[str, Any]:
    body = example_lead(
        email=f"erase.me.{n}@company.com",
        firstName=f"Eraseable{n}",
        lastName=f"Personsurname{n}",
        phone=f"+1-555-867-53{n:02d}",
        company=f"Secretcompany{n} GmbH",
    )
    body["lead_details"]["message"] = f"A message that must vanish number {n}"
    body["tracking"].update(
        visitor_id=f"vis_erase_me_{n}_7f3a9c",
        session_id=f"sess_erase_me_{n}_2b8d",
        utm_term=f"erase-term-{n}-9c2b",
        utm_content=f"erase-content-{n}-1a2b",
        referrer_url=f"https://referrer.example/erase-{n}-q",
        landing_page_url=f"https://landing.example/erase-{n}-page",
        ip_address=f"203.0.113.{n}",
        user_agent=f"EraseAgent/{n}.0 (unique)",
    )
    return body


async def _fingerprints(h: Harness, lead_id: str) -> list[bytes]:
    """Every stored value of the lead: the ciphertexts of its personal fields and its clear fields."""
    columns = ", ".join((*PII_FIELDS, *CLEAR_FIELDS))
    async with h.engine.connect() as conn:
        row = (
            await conn.execute(text(f"SELECT {columns} FROM leads WHERE public_id = :p"), {"p": lead_id})
        ).one()
    values = dict(row._mapping)
    prints = [values[name] for name in PII_FIELDS if values[name] is not None]
    prints += [str(values[name]).encode() for name in CLEAR_FIELDS]
    assert all(len(p) >= 10 for p in prints)
    return prints


def _files(h: Harness) -> bytes:
    path = h.settings.sqlite_path()
    assert path is not None
    data = Path(path).read_bytes()
    wal = Path(f"{path}-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


async def test_erase_leaves_no_bytes_in_the_database_or_wal(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    ids = []
    for n in range(3):
        response = await harness.client.post("/v1/api/leads", json=_body(n))
        assert response.status_code == 201, response.text
        ids.append(response.json()["lead_id"])
    # Some history on the lead: reads, a status change, a note.
    await harness.client.get(f"/v1/api/leads/{ids[0]}", headers=admin)
    await harness.client.patch(
        f"/v1/api/leads/{ids[0]}", headers=admin, json={"status": "contacted", "note": "x"}
    )
    erased = await _fingerprints(harness, ids[0])
    # Anonymisation keeps utm_content on purpose (an analytics dimension, like campaign and source).
    anonymised = [p for p in await _fingerprints(harness, ids[1]) if not p.startswith(b"erase-content-")]
    kept = await _fingerprints(harness, ids[2])
    before = _files(harness)
    assert all(p in before for p in erased + anonymised + kept)  # the search can find them

    response = await harness.client.post(
        "/v1/api/privacy/erase", headers=admin, json={"email": "erase.me.0@company.com"}
    )
    assert response.status_code == 200 and response.json()["leads_deleted"] == 1
    anon = await harness.client.post(f"/v1/api/leads/{ids[1]}/anonymize", headers=admin)
    assert anon.status_code == 200

    after = _files(harness)
    left = [p for p in erased if p in after]
    assert not left, f"{len(left)} of {len(erased)} values of the erased lead are still in the files"
    left = [p for p in anonymised if p in after]
    assert not left, f"{len(left)} of {len(anonymised)} values of the anonymised lead are still in the files"
    assert all(p in after for p in kept)  # the other lead is untouched
    assert (await harness.client.get(f"/v1/api/leads/{ids[2]}", headers=admin)).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_the_daily_retention_job_reclaims_the_space(settings_factory: Callable[..., Settings]) -> None:
    """The worker's scheduled privacy.retention job anonymises old leads, then vacuums (PostgreSQL),
    rebuilds (MySQL) or checkpoints (SQLite)."""
    settings = settings_factory(run_worker=True, worker_poll_seconds=0.05, retention_days=30)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine = state_of(app).engine
        async with engine.begin() as conn:
            auth = {"Authorization": f"Bearer {(await create_token(conn, name='r', role='admin')).token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await client.post(
                "/v1/api/campaigns",
                headers=auth,
                json={"id": "nextcloud-installation-2025", "name": "N", "campaign_type": "service"},
            )
            created = await client.post("/v1/api/leads", json=_body(7))
            assert created.status_code == 201
            lead_id = created.json()["lead_id"]
            old = utcnow() - timedelta(days=40)
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE leads SET created_at = :t WHERE public_id = :p"), {"t": old, "p": lead_id}
                )
                # The next daily run (seeded when the worker started) is due now.
                await conn.execute(
                    text(
                        "UPDATE jobs SET run_at = :now WHERE kind = 'privacy.retention' AND status = 'pending'"
                    ),
                    {"now": utcnow() - timedelta(seconds=1)},
                )
            state_of(app).wake_worker()
            expected = {"sqlite": "checkpoint", "postgresql": "vacuum", "mysql": "optimize"}[
                engine.dialect.name
            ]
            deadline = time.monotonic() + 30
            while True:
                jobs = (
                    await client.get("/v1/api/jobs", headers=auth, params={"kind": "privacy.retention"})
                ).json()["items"]
                excerpts = []
                for job in jobs:
                    detail = (await client.get(f"/v1/api/jobs/{job['id']}", headers=auth)).json()
                    excerpts += [a["response_excerpt"] or "" for a in detail["history"]]
                if any("1 leads anonymized" in e for e in excerpts):
                    break
                assert time.monotonic() < deadline, excerpts
                await asyncio.sleep(0.1)
            assert any(e == f"1 leads anonymized; {expected}" for e in excerpts), excerpts
            lead = (await client.get(f"/v1/api/leads/{lead_id}", headers=auth)).json()
            assert lead["visitor_id"] is None and lead["first_name"] == "Anonymised"
