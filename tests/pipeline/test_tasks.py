"""The task registry and what a handler hands the worker to write (payload, writes, retries with a
payload, periodic re-arming, dead-letter hooks), against a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.pipeline import repository as repo
from leadflow.pipeline.jobs import JobKind, Task, Tasks
from leadflow.pipeline.runtime import for_tasks, worker_context
from leadflow.pipeline.scheduler import ensure_periodic, is_slot, slot
from leadflow.pipeline.worker import HandlerResult, RetryLater, WorkerContext
from leadflow.tasks import registry
from tests.conftest import Harness, example_lead

backends = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
NOTE = JobKind("test.note", max_attempts=3)


@pytest.fixture
async def ctx(harness: Harness) -> AsyncIterator[WorkerContext]:
    async with worker_context(harness.engine, harness.settings, "test-worker") as made:
        yield made


async def _add(h: Harness, *jobs: repo.NewJob) -> None:
    now = utcnow()
    async with h.engine.begin() as conn:
        await repo.enqueue(conn, list(jobs), now)


async def _jobs(h: Harness) -> list[AnyRow]:
    async with h.engine.connect() as conn:
        return sorted(await repo.list_jobs(conn, None, None, None, 1000), key=lambda j: j.id)


def test_job_kind_is_the_one_way_to_create_a_job() -> None:
    now = utcnow()
    job = NOTE.new({"n": 1}, run_at=now, dedup_key="k", lead_id=7)
    assert (job.kind, job.payload, job.run_at, job.dedup_key, job.lead_id, job.max_attempts) == (
        "test.note",
        {"n": 1},
        now,
        "k",
        7,
        3,
    )
    assert NOTE.new({}, run_at=now, max_attempts=5).max_attempts == 5
    row = job.row(now)
    assert row["status"] == "pending" and row["attempts"] == 0 and row["kind"] == "test.note"


def test_registry_refuses_a_kind_or_group_twice() -> None:
    async def handler(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
        return HandlerResult()

    async def commit(conn: AsyncConnection, items: list[Any], ctx: WorkerContext) -> None:
        return None

    tasks = Tasks()
    tasks.add(Task(NOTE, handler), Task(JobKind("test.tick"), handler, every=timedelta(minutes=5)))
    with pytest.raises(ValueError, match=r"test\.note"):
        tasks.add(Task(NOTE, handler))
    tasks.commit("g", commit)
    with pytest.raises(ValueError, match="g"):
        tasks.commit("g", commit)
    assert set(tasks.handlers()) == {"test.note", "test.tick"}
    assert tasks.periodic() == {"test.tick": timedelta(minutes=5)}


def test_every_domain_registers_its_jobs() -> None:
    tasks = registry()
    assert set(tasks.handlers()) == {
        "lead.process",
        "deliver",
        "reminders.scan",
        "privacy.erase",
        "privacy.unsubscribe",
        "privacy.retention",
        "reports.schedule",
        "reports.send",
        "alert.dead_letters",
        "analytics.rollup",
    }
    assert tasks.periodic() == {
        "analytics.rollup": timedelta(minutes=5),
        "reminders.scan": timedelta(minutes=1),
        "privacy.retention": timedelta(days=1),
        "reports.schedule": timedelta(minutes=15),
    }
    assert set(tasks.committers) == {"route"}
    assert len(tasks.dead_letter_hooks) == 2  # delivery_failed activity, alert digest


def test_a_slot_is_recognised_and_a_continuation_is_not() -> None:
    at = datetime(2026, 3, 1, 12, 30, 45).astimezone()
    made = slot("test.tick", at)
    assert made.run_at == at.replace(second=0, microsecond=0)
    assert is_slot("test.tick", made.dedup_key)
    assert not is_slot("test.tick", "retention:12:1")
    assert not is_slot("test.tick", None)


@backends
async def test_payload_and_writes_are_committed_with_the_job(harness: Harness, ctx: WorkerContext) -> None:
    written: list[int] = []

    async def handler(job: AnyRow, _: WorkerContext) -> HandlerResult:
        async def write(conn: AsyncConnection) -> Sequence[repo.NewJob]:
            assert conn.in_transaction()
            written.append(job.payload["n"])
            return (
                [NOTE.new({"n": 2, "secret": None}, run_at=utcnow(), dedup_key="next")]
                if job.payload["n"] == 1
                else []
            )

        return HandlerResult(payload={"n": job.payload["n"], "secret": None}, write=write)

    await _add(harness, NOTE.new({"n": 1, "secret": "x"}, run_at=utcnow()))
    tasks = Tasks()
    tasks.add(Task(NOTE, handler))
    assert await for_tasks(ctx, tasks).run_until_idle(20) == 2
    assert written == [1, 2]
    jobs = await _jobs(harness)
    assert [(j.status, j.payload) for j in jobs] == [
        ("done", {"n": 1, "secret": None}),
        ("done", {"n": 2, "secret": None}),
    ]


@backends
async def test_retry_later_keeps_its_payload_for_the_next_attempt(
    harness: Harness, ctx: WorkerContext
) -> None:
    seen: list[Any] = []

    async def handler(job: AnyRow, _: WorkerContext) -> HandlerResult:
        seen.append(job.payload.get("done"))
        if job.attempts == 1:
            raise RetryLater("one channel failed", payload={**job.payload, "done": ["a"]})
        return HandlerResult()

    await _add(harness, NOTE.new({"n": 1}, run_at=utcnow()))
    tasks = Tasks()
    tasks.add(Task(NOTE, handler))
    worker = for_tasks(ctx, tasks)
    await worker.run_until_idle(10)
    [job] = await _jobs(harness)
    assert job.status == "pending" and job.payload == {"n": 1, "done": ["a"]}
    await harness.execute("UPDATE jobs SET run_at = :now", now=utcnow() - timedelta(seconds=1))
    await worker.run_until_idle(10)
    [job] = await _jobs(harness)
    assert job.status == "done"
    assert seen == [None, ["a"]]


@backends
async def test_a_periodic_run_schedules_its_next_slot_once(harness: Harness, ctx: WorkerContext) -> None:
    tick = JobKind("test.tick")
    runs: list[str | None] = []

    async def handler(job: AnyRow, _: WorkerContext) -> HandlerResult:
        runs.append(job.dedup_key)
        if job.payload.get("continued"):
            return HandlerResult()
        # A continuation (not a slot) does not schedule another next run.
        return HandlerResult(
            jobs=(tick.new({"continued": True}, run_at=utcnow(), dedup_key=f"cont:{job.id}"),)
        )

    tasks = Tasks()
    tasks.add(Task(tick, handler, every=timedelta(hours=1)))
    await ensure_periodic(harness.engine, tasks.periodic())
    await ensure_periodic(harness.engine, tasks.periodic())  # already scheduled: nothing added
    assert len(await _jobs(harness)) == 1
    await for_tasks(ctx, tasks).run_until_idle(10)
    assert len(runs) == 2
    jobs = await _jobs(harness)
    pending = [j for j in jobs if j.status == "pending"]
    assert [j.status for j in jobs].count("done") == 2
    assert len(pending) == 1 and is_slot("test.tick", pending[0].dedup_key)
    assert pending[0].run_at > utcnow() + timedelta(minutes=58)


@backends
async def test_dead_letter_hooks_write_in_the_burying_transaction(
    harness: Harness, ctx: WorkerContext
) -> None:
    async def broken(job: AnyRow, _: WorkerContext) -> HandlerResult:
        raise RetryLater("no", payload=dict(job.payload))

    def hook(job: AnyRow, connector: str, error: str, _: WorkerContext, now: datetime) -> HandlerResult:
        later = now + timedelta(hours=1)
        return HandlerResult(jobs=(JobKind("test.after").new({"of": job.id, "error": error}, run_at=later),))

    tasks = Tasks()
    tasks.add(Task(NOTE, broken))
    tasks.on_dead_letter(hook)
    await _add(harness, NOTE.new({"n": 1}, run_at=utcnow(), max_attempts=1))
    await for_tasks(ctx, tasks).run_until_idle(10)
    jobs = {j.kind: j for j in await _jobs(harness)}
    assert jobs["test.note"].status == "dead"
    assert jobs["test.after"].payload == {"of": jobs["test.note"].id, "error": "no"}


@backends
async def test_due_follow_ups_get_one_reminder(harness: Harness, ctx: WorkerContext, campaign: Any) -> None:
    created = await harness.client.post("/v1/api/leads", json=example_lead(email="follow.up@company.com"))
    assert created.status_code == 201, created.text
    await harness.execute(
        "UPDATE leads SET follow_up_date = :due WHERE public_id = :p",
        due=utcnow() - timedelta(minutes=5),
        p=created.json()["lead_id"],
    )
    await harness.execute("DELETE FROM jobs")
    await _add(harness, slot("reminders.scan", utcnow()))
    worker = for_tasks(ctx, registry())
    await worker.run_until_idle(20)
    await _add(harness, slot("reminders.scan", utcnow() - timedelta(minutes=1)))  # a second scan
    await worker.run_until_idle(20)
    reminders = await harness.scalar(
        "SELECT count(*) FROM lead_activities WHERE activity_type = 'reminder_due'"
    )
    assert reminders == 1
    scans = await harness.scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'reminders.scan' AND status = 'pending'"
    )
    assert scans == 1  # the next run, a minute later
