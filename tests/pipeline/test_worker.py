"""The outbox worker against a real database: claims, retries, dead letters, leases, replay API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from leadflow.integrations.base import PermanentError, RetriableError
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.pipeline import repository as repo
from leadflow.pipeline.worker import HandlerResult, Staged, Worker, WorkerContext
from leadflow.security.crypto import FieldCipher
from tests.conftest import Harness

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


@pytest.fixture
async def ctx(harness: Harness) -> AsyncIterator[WorkerContext]:
    async with httpx.AsyncClient() as http:
        yield WorkerContext(
            engine=harness.engine,
            settings=harness.settings,
            cipher=FieldCipher(harness.settings.encryption_keys),
            http=http,
            worker_id="test-worker",
        )


async def _enqueue(h: Harness, kind: str, n: int = 1, max_attempts: int = 3, **payload: Any) -> None:
    now = utcnow()
    async with h.engine.begin() as conn:
        await repo.enqueue(
            conn,
            [
                repo.NewJob(kind=kind, payload={**payload, "n": i}, run_at=now, max_attempts=max_attempts)
                for i in range(n)
            ],
            now,
        )


async def _jobs(h: Harness) -> list[AnyRow]:
    async with h.engine.connect() as conn:
        return list(await repo.list_jobs(conn, None, None, None, 1000))


async def test_success_is_recorded(harness: Harness, ctx: WorkerContext) -> None:
    seen: list[int] = []

    async def ok(job: AnyRow, _: WorkerContext) -> HandlerResult:
        seen.append(job.payload["n"])
        return HandlerResult(status_code=200, response_excerpt="fine")

    await _enqueue(harness, "test.ok", n=5)
    worker = Worker(ctx, {"test.ok": ok}, concurrency=3)
    assert await worker.run_until_idle(20) == 5
    assert sorted(seen) == [0, 1, 2, 3, 4]
    jobs = await _jobs(harness)
    assert {j.status for j in jobs} == {"done"}
    async with harness.engine.connect() as conn:
        history = await repo.attempts_of(conn, jobs[0].id)
    assert [(a.attempt, a.outcome, a.status_code) for a in history] == [(1, "success", 200)]


async def test_retriable_errors_back_off_then_dead_letter(harness: Harness, ctx: WorkerContext) -> None:
    async def flaky(job: AnyRow, _: WorkerContext) -> HandlerResult:
        raise RetriableError(
            "vendor busy", status_code=429, response_excerpt='{"error":"slow down"}', retry_after=0
        )

    await _enqueue(harness, "test.flaky", max_attempts=3)
    worker = Worker(ctx, {"test.flaky": flaky})
    for _ in range(3):
        await worker.run_until_idle(10)
    [job] = await _jobs(harness)
    assert job.status == "dead"
    assert job.attempts == 3
    assert job.last_error == "vendor busy"
    async with harness.engine.connect() as conn:
        history = await repo.attempts_of(conn, job.id)
    assert [a.outcome for a in history] == ["retry", "retry", "dead"]
    assert all(a.status_code == 429 and a.response_excerpt == '{"error":"slow down"}' for a in history)


async def test_retry_after_schedules_the_next_attempt(harness: Harness, ctx: WorkerContext) -> None:
    async def limited(job: AnyRow, _: WorkerContext) -> HandlerResult:
        raise RetriableError("429", status_code=429, retry_after=120)

    await _enqueue(harness, "test.limited")
    before = utcnow()
    await Worker(ctx, {"test.limited": limited}).run_until_idle(10)
    [job] = await _jobs(harness)
    assert job.status == "pending"
    assert before + timedelta(seconds=119) <= job.run_at <= utcnow() + timedelta(seconds=121)


async def test_permanent_errors_and_unknown_kinds_dead_letter_at_once(
    harness: Harness, ctx: WorkerContext
) -> None:
    async def refused(job: AnyRow, _: WorkerContext) -> HandlerResult:
        raise PermanentError("400 invalid_payload", status_code=400)

    await _enqueue(harness, "test.refused", max_attempts=8)
    await _enqueue(harness, "test.nobody-handles-this")
    await Worker(ctx, {"test.refused": refused}).run_until_idle(10)
    jobs = {j.kind: j for j in await _jobs(harness)}
    assert jobs["test.refused"].status == "dead" and jobs["test.refused"].attempts == 1
    assert jobs["test.nobody-handles-this"].status == "dead"


async def test_unexpected_exceptions_retry_without_storing_their_text(
    harness: Harness, ctx: WorkerContext
) -> None:
    async def broken(job: AnyRow, _: WorkerContext) -> HandlerResult:
        raise ValueError("something with secret@example.com inside")

    await _enqueue(harness, "test.broken")
    await Worker(ctx, {"test.broken": broken}).run_until_idle(10)
    [job] = await _jobs(harness)
    assert job.status == "pending"
    assert job.last_error == "ValueError (see worker log)"


async def test_expired_lease_is_taken_over(harness: Harness, ctx: WorkerContext) -> None:
    await _enqueue(harness, "test.ok")
    now = utcnow()
    async with harness.engine.begin() as conn:
        [claimed] = await repo.claim(conn, "dead-worker", 1, timedelta(seconds=30), now)
    # While the lease holds nobody else gets it.
    async with harness.engine.begin() as conn:
        assert await repo.claim(conn, "other", 5, timedelta(seconds=30), now) == []
    # The first worker died; its lease runs out.
    async with harness.engine.begin() as conn:
        again = await repo.claim(conn, "other", 5, timedelta(seconds=30), now + timedelta(seconds=31))
    assert [j.id for j in again] == [claimed.id]
    assert again[0].attempts == 2
    # The dead worker can no longer finish the job it lost.
    async with harness.engine.begin() as conn:
        assert not await repo.finish(conn, claimed.id, "dead-worker", now)
        assert await repo.finish(conn, claimed.id, "other", now)


async def test_concurrent_claims_never_share_a_job(harness: Harness, ctx: WorkerContext) -> None:
    await _enqueue(harness, "test.ok", n=40)
    now = utcnow()

    async def claim(name: str) -> list[int]:
        got: list[int] = []
        for _ in range(10):
            async with harness.engine.begin() as conn:
                got += [j.id for j in await repo.claim(conn, name, 3, timedelta(seconds=30), now)]
        return got

    results = await asyncio.gather(*(claim(f"w{i}") for i in range(4)))
    flat = [job for batch in results for job in batch]
    assert len(flat) == len(set(flat))  # no job went to two workers
    assert len(flat) >= 12
    # SKIP LOCKED may pass over rows another claim is busy with; whatever is left is still claimable.
    flat += await claim("sweeper")
    assert len(flat) == len(set(flat)) == 40


async def test_jobs_api_lists_dead_and_replays(
    harness: Harness, ctx: WorkerContext, admin: dict[str, str]
) -> None:
    async def refused(job: AnyRow, _: WorkerContext) -> HandlerResult:
        raise PermanentError("nope", status_code=400)

    await _enqueue(harness, "test.refused", n=2)
    await Worker(ctx, {"test.refused": refused}).run_until_idle(10)
    dead = (await harness.client.get("/v1/api/jobs", headers=admin, params={"status": "dead"})).json()[
        "items"
    ]
    assert len(dead) == 2 and dead[0]["last_error"] == "nope"
    detail = (await harness.client.get(f"/v1/api/jobs/{dead[0]['id']}", headers=admin)).json()
    assert detail["history"][0]["outcome"] == "permanent"
    retried = await harness.client.post(f"/v1/api/jobs/{dead[0]['id']}/retry", headers=admin)
    assert (
        retried.status_code == 200
        and retried.json()["status"] == "pending"
        and retried.json()["attempts"] == 0
    )
    again = await harness.client.post(f"/v1/api/jobs/{dead[0]['id']}/retry", headers=admin)
    assert again.status_code == 200  # pending jobs may be retried (run now)
    rest = (await harness.client.post("/v1/api/jobs/retry-dead", headers=admin)).json()
    assert rest == {"requeued": 1}
    audit = (await harness.client.get("/v1/api/audit", headers=admin, params={"target_type": "job"})).json()[
        "items"
    ]
    assert [a["action"] for a in audit] == ["job.retry_dead", "job.retry", "job.retry"]
    assert (await harness.client.get("/v1/api/jobs/999999", headers=admin)).status_code == 404
    assert (
        await harness.client.get("/v1/api/jobs", headers=admin, params={"status": "bogus"})
    ).status_code == 400


# --- group commit ----------------------------------------------------------------------------------


async def test_staged_work_is_committed_in_batches_with_the_jobs(
    harness: Harness, ctx: WorkerContext
) -> None:
    batches: list[list[int]] = []

    async def staged(job: AnyRow, _: WorkerContext) -> HandlerResult:
        await asyncio.sleep(0.01)
        return HandlerResult(staged=Staged("test.group", job.payload["n"]))

    async def commit(conn: Any, items: list[Any], _: WorkerContext) -> None:
        # Inside the transaction that marks the jobs done: they are still "running" here.
        running = await conn.execute(text("SELECT count(*) FROM jobs WHERE status = 'running'"))
        assert running.scalar() >= len(items)
        batches.append(sorted(items))

    await _enqueue(harness, "test.staged", n=12)
    worker = Worker(ctx, {"test.staged": staged}, committers={"test.group": commit}, concurrency=12)
    assert await worker.run_until_idle(20) == 12
    assert sorted(n for batch in batches for n in batch) == list(range(12))
    assert len(batches) < 12  # jobs that finished during a commit went into the next one together
    assert {j.status for j in await _jobs(harness)} == {"done"}


async def test_a_failing_item_retries_only_its_own_job(harness: Harness, ctx: WorkerContext) -> None:
    async def staged(job: AnyRow, _: WorkerContext) -> HandlerResult:
        return HandlerResult(
            staged=Staged("test.group", job.payload["n"]),
            activities=(),
        )

    async def commit(conn: Any, items: list[Any], _: WorkerContext) -> None:
        if 3 in items:
            raise ValueError("item 3 cannot be written")

    await _enqueue(harness, "test.staged", n=6)
    worker = Worker(ctx, {"test.staged": staged}, committers={"test.group": commit}, concurrency=6)
    await worker.run_until_idle(20)
    jobs = {j.payload["n"]: j for j in await _jobs(harness)}
    assert {n: j.status for n, j in jobs.items()} == {
        0: "done",
        1: "done",
        2: "done",
        3: "pending",
        4: "done",
        5: "done",
    }
    assert jobs[3].last_error == "ValueError (see worker log)"
    async with harness.engine.connect() as conn:
        history = await repo.attempts_of(conn, jobs[3].id)
    assert [a.outcome for a in history] == ["retry"]


async def test_writes_of_a_job_whose_lease_was_lost_are_dropped(harness: Harness, ctx: WorkerContext) -> None:
    async def slow(job: AnyRow, _: WorkerContext) -> HandlerResult:
        # Meanwhile the lease ran out and another worker took the job over.
        async with harness.engine.begin() as conn:
            await conn.execute(text("UPDATE jobs SET locked_by = 'other-worker'"))
        follow = repo.NewJob(kind="test.follow", payload={}, run_at=utcnow())
        return HandlerResult(jobs=(follow,))

    await _enqueue(harness, "test.slow")
    await Worker(ctx, {"test.slow": slow}).run_until_idle(10)
    [job] = await _jobs(harness)
    assert job.status == "running" and job.locked_by == "other-worker"  # the other worker finishes it
    async with harness.engine.connect() as conn:
        history = await repo.attempts_of(conn, job.id)
    assert [a.outcome for a in history] == ["lost_lease"]


async def test_follow_up_jobs_are_enqueued_with_the_completion(harness: Harness, ctx: WorkerContext) -> None:
    seen: list[str] = []

    async def first(job: AnyRow, _: WorkerContext) -> HandlerResult:
        return HandlerResult(
            jobs=(repo.NewJob(kind="test.second", payload={"from": job.id}, run_at=utcnow()),)
        )

    async def second(job: AnyRow, _: WorkerContext) -> HandlerResult:
        seen.append(job.kind)
        return HandlerResult()

    await _enqueue(harness, "test.first", n=3)
    assert await Worker(ctx, {"test.first": first, "test.second": second}).run_until_idle(20) == 6
    assert seen == ["test.second"] * 3


async def test_a_job_deleted_while_it_ran_does_not_fail_the_others(
    harness: Harness, ctx: WorkerContext, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(job: AnyRow, _: WorkerContext) -> HandlerResult:
        if job.payload["n"] == 2:  # its lead was erased meanwhile: the erasure deleted its jobs too
            await harness.execute("DELETE FROM jobs WHERE id = :id", id=job.id)
        else:
            await asyncio.sleep(0.01)
        return HandlerResult(status_code=200)

    await _enqueue(harness, "test.erased", n=5)
    worker = Worker(ctx, {"test.erased": handler}, concurrency=5)
    assert await worker.run_until_idle(20) == 5
    jobs = await _jobs(harness)
    assert sorted(j.payload["n"] for j in jobs) == [0, 1, 3, 4]
    assert {j.status for j in jobs} == {"done"}
    async with harness.engine.connect() as conn:
        for job in jobs:
            assert [a.outcome for a in await repo.attempts_of(conn, job.id)] == ["success"]
    # One commit for the batch: nothing failed and nothing was recorded job by job.
    assert "job_batch_commit_failed" not in caplog.text and "job_record_failed" not in caplog.text


async def test_heartbeat_keeps_a_long_job_leased(harness: Harness, ctx: WorkerContext) -> None:
    """A job running three times longer than its lease is renewed, so nobody else takes it."""
    await _enqueue(harness, "test.slow")
    started = asyncio.Event()
    taken_by_others: list[int] = []

    async def slow(job: AnyRow, _: WorkerContext) -> HandlerResult:
        started.set()
        for _ in range(6):  # 3.6 s in all; the lease is 1.2 s (renewed every 0.4 s)
            await asyncio.sleep(0.6)
            async with harness.engine.begin() as conn:
                claimed = await repo.claim(conn, "other", 5, timedelta(seconds=5), utcnow())
                taken_by_others.extend(j.id for j in claimed)
        return HandlerResult(response_excerpt="slow but fine")

    worker = Worker(ctx, {"test.slow": slow}, lease_seconds=1.2, poll_seconds=0.05)
    await worker.run_until_idle(10)
    assert started.is_set()
    assert taken_by_others == []
    [job] = await _jobs(harness)
    assert (job.status, job.attempts) == ("done", 1)


async def test_stopping_worker_finishes_quick_jobs_and_gives_back_the_rest(
    harness: Harness, ctx: WorkerContext
) -> None:
    await _enqueue(harness, "test.quick", n=3)
    await _enqueue(harness, "test.stuck")
    stuck = asyncio.Event()

    async def quick(job: AnyRow, _: WorkerContext) -> HandlerResult:
        await stuck.wait()  # still running when the stop comes; finishes within the grace period
        await asyncio.sleep(0.05)
        return HandlerResult(activities=())

    async def hang(job: AnyRow, _: WorkerContext) -> HandlerResult:
        stuck.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    worker = Worker(
        ctx, {"test.quick": quick, "test.stuck": hang}, lease_seconds=30, poll_seconds=0.05, grace_seconds=0.5
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(stuck.wait(), 10)
    stop.set()
    await asyncio.wait_for(running, 10)
    jobs = {j.kind: j for j in await _jobs(harness) if j.kind == "test.stuck"}
    assert all(j.status == "done" for j in await _jobs(harness) if j.kind == "test.quick")
    released = jobs["test.stuck"]
    # Given back at once (no wait for the 30 s lease), the interrupted attempt not counted.
    assert (released.status, released.locked_by, released.locked_until, released.attempts) == (
        "pending",
        None,
        None,
        0,
    )
