"""SQLite's inline reads (``AppState.reads`` → ``PointReader.connect``): the repositories' statements on
the read-only connection answer exactly what the async engine answers, see every commit, and cannot
write."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from leadflow.db import InlineReads
from leadflow.kit.state import state_of
from leadflow.leads import repository as repo
from leadflow.security import repository as security_repo
from tests.conftest import Harness, example_lead


@pytest.fixture
async def lead_id(harness: Harness, admin: dict[str, str], campaign: dict[str, Any]) -> str:
    """A captured lead with a note (an activity) and its jobs."""
    body = {**example_lead(), "campaign_id": campaign["id"]}
    response = await harness.client.post("/v1/api/leads", json=body, headers=admin)
    assert response.status_code == 201, response.text
    public_id: str = response.json()["lead_id"]
    note = {"note": "called back, wants a quote"}
    assert (
        await harness.client.patch(f"/v1/api/leads/{public_id}", json=note, headers=admin)
    ).status_code == 200
    return public_id


async def test_inline_reads_answer_what_the_engine_answers(harness: Harness, lead_id: str) -> None:
    public_id = lead_id
    async with state_of(harness.app).reads() as inline:
        assert isinstance(inline, InlineReads)
        row = await repo.get_by_public_id(inline, public_id)
        assert row is not None
        notes = await repo.activities_for(inline, int(row.id))
        jobs = await repo.jobs_of_lead(inline, int(row.id))
        previous = await repo.public_id_of(inline, int(row.id))
    async with harness.engine.connect() as conn:
        expected = await repo.get_by_public_id(conn, public_id)
        assert expected is not None
        assert await repo.activities_for(conn, int(expected.id)) == notes
        assert await repo.jobs_of_lead(conn, int(expected.id)) == jobs
    # Same values and the same Python types (tz-aware datetimes, decoded JSON, bytes).
    assert row._asdict() == expected._asdict()
    assert {k: type(v) for k, v in row._asdict().items()} == {
        k: type(v) for k, v in expected._asdict().items()
    }
    assert row.created_at.tzinfo is not None and isinstance(row.score_breakdown, dict)
    assert any(a.activity_type == "note_added" for a in notes) and jobs
    assert previous == public_id


async def test_inline_reads_see_each_commit_and_do_not_write(harness: Harness, lead_id: str) -> None:
    public_id = lead_id
    async with state_of(harness.app).reads() as inline:
        before = await repo.get_by_public_id(inline, public_id)
        assert before is not None and before.status == "new"
        # A commit made while the inline connection is open is seen by its next statement: no
        # statement holds a read snapshot across an await.
        async with harness.engine.begin() as conn:
            await conn.execute(
                update(repo.leads).where(repo.leads.c.public_id == public_id).values(status="contacted")
            )
        after = await repo.get_by_public_id(inline, public_id)
        assert after is not None and after.status == "contacted"
        with pytest.raises(OperationalError):
            await inline.execute(
                update(repo.leads).where(repo.leads.c.public_id == public_id).values(status="lost")
            )
    assert await harness.scalar("SELECT status FROM leads WHERE public_id = :p", p=public_id) == "contacted"


async def test_a_page_session_is_found_through_inline_reads(harness: Harness) -> None:
    state = state_of(harness.app)
    async with state.reads() as inline:
        assert await security_repo.session_by_hash(inline, "no such session") is None
