"""The request boundary: ``WriteConn`` commits when the route returns and only then runs the route's
``AfterCommit`` callbacks; a route that raises (or cancels) rolls back and runs none."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from leadflow.errors import ApiError
from leadflow.kit.state import AfterCommit, AfterCommitDep, ReadConn, WriteConn
from tests.conftest import Harness

INSERT = text("INSERT INTO maintenance_state (name, value, updated_at) VALUES (:n, '{}', CURRENT_TIMESTAMP)")


def _routes(harness: Harness, seen: list[Any]) -> None:
    app = harness.app

    async def visible(name: str) -> bool:
        async with harness.engine.connect() as conn:
            found = await conn.execute(text("SELECT 1 FROM maintenance_state WHERE name = :n"), {"n": name})
            return found.first() is not None

    async def ok(conn: WriteConn, after: AfterCommitDep) -> dict[str, bool]:
        await conn.execute(INSERT, {"n": "ok"})

        async def check() -> None:  # an async callback sees the committed row
            seen.append(("committed", await visible("ok")))

        after.add(check)
        after.add(seen.append, "second")
        return {"done": True}

    async def fails(conn: WriteConn, after: AfterCommitDep) -> dict[str, bool]:
        await conn.execute(INSERT, {"n": "fails"})
        after.add(seen.append, "must not run")
        raise ApiError(409, "CONFLICT", "refused")

    async def cancels(conn: WriteConn, after: AfterCommitDep) -> dict[str, bool]:
        await conn.execute(INSERT, {"n": "cancels"})
        after.add(seen.append, "must not run either")
        after.cancel()
        return {"done": False}

    async def reads(conn: ReadConn) -> dict[str, int]:
        return {"n": int((await conn.execute(text("SELECT COUNT(*) FROM maintenance_state"))).scalar_one())}

    app.add_api_route("/t/ok", ok, methods=["POST"])
    app.add_api_route("/t/fails", fails, methods=["POST"])
    app.add_api_route("/t/cancels", cancels, methods=["POST"])
    app.add_api_route("/t/reads", reads, methods=["GET"])


async def test_commit_then_callbacks_in_order(harness: Harness) -> None:
    seen: list[Any] = []
    _routes(harness, seen)
    response = await harness.client.post("/t/ok")
    assert response.status_code == 200, response.text
    assert seen == [("committed", True), "second"]
    assert await harness.scalar("SELECT COUNT(*) FROM maintenance_state WHERE name = 'ok'") == 1


async def test_failing_route_rolls_back_and_runs_no_callback(harness: Harness) -> None:
    seen: list[Any] = []
    _routes(harness, seen)
    response = await harness.client.post("/t/fails")
    assert response.status_code == 409
    assert seen == []
    assert await harness.scalar("SELECT COUNT(*) FROM maintenance_state WHERE name = 'fails'") == 0


async def test_cancelled_route_rolls_back_and_runs_no_callback(harness: Harness) -> None:
    seen: list[Any] = []
    _routes(harness, seen)
    response = await harness.client.post("/t/cancels")
    assert response.status_code == 200
    assert seen == []
    assert await harness.scalar("SELECT COUNT(*) FROM maintenance_state WHERE name = 'cancels'") == 0
    assert (await harness.client.get("/t/reads")).status_code == 200


async def test_after_commit_runs_once() -> None:
    after = AfterCommit()
    calls: list[int] = []
    after.add(calls.append, 1)
    await after.run()
    await after.run()
    assert calls == [1]
