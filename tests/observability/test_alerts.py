"""Alert notifications against the local SMTP fake and the Slack webhook fake.

Conditions are checked with an injected clock (``AlertMonitor.check(now)``); dead-letter digests go
through the real worker: a HubSpot fake refuses a lead, the delivery dead-letters, the digest job
mails the lead's data to ALERT_EMAILS and posts ids and links (no personal data) to Slack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.db import create_engine
from leadflow.kit.clock import utcnow
from leadflow.kit.models import table_of
from leadflow.kit.state import state_of
from leadflow.observability.alerts import DIGEST_JOB, AlertMonitor, digest_job
from leadflow.pipeline.models import Job, JobAttempt
from leadflow.pipeline.runtime import build_worker, worker_context
from tests.conftest import Harness, example_lead
from tests.fakes.hubspot import TOKEN as HUBSPOT_TOKEN
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.server import Reply
from tests.fakes.slack import FakeSlack, check_payload
from tests.fakes.smtp import FakeSmtp

OPS = "ops@nexlink.website"
jobs = table_of(Job)
attempts = table_of(JobAttempt)


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    with FakeSmtp() as fake:
        yield fake


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def alert_settings(
    settings_factory: Callable[..., Settings], smtp: FakeSmtp, slack: FakeSlack
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "smtp_starttls": False,
            "alert_emails": [OPS],
            "alert_slack_webhook_url": slack.webhook_url,
            "public_base_url": "https://leads.example.test",
            "sequence_enabled": False,
        }
        values.update(overrides)
        return settings_factory(**values)

    return make


def ops_mail(smtp: FakeSmtp) -> list[Any]:
    return [m.message() for m in smtp.messages if OPS in m.rcpt_tos]


def slack_texts(slack: FakeSlack) -> list[str]:
    return [str(r.json()["text"]) for r in slack.accepted]


async def _job(engine: Any, run_at: datetime, status: str = "pending", **extra: Any) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(jobs).values(
                kind=extra.pop("kind", "lead.process"),
                payload=extra.pop("payload", {}),
                status=status,
                attempts=0,
                max_attempts=8,
                run_at=run_at,
                created_at=run_at,
                updated_at=run_at,
                finished_at=run_at if status in ("done", "dead") else None,
                **extra,
            )
        )
        return int(result.inserted_primary_key[0])


async def _attempts(engine: Any, job_id: int, when: datetime, **outcomes: int) -> None:
    rows = [
        {
            "job_id": job_id,
            "attempt": 1,
            "worker": "test",
            "outcome": outcome,
            "duration_ms": 5,
            "started_at": when,
        }
        for outcome, count in outcomes.items()
        for _ in range(count)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(attempts), rows)


# --- conditions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_worker_stopped_is_sent_once_per_throttle_period_then_resolved(
    alert_settings: Callable[..., Settings], smtp: FakeSmtp, slack: FakeSlack
) -> None:
    settings = alert_settings(alert_throttle_seconds=900, alert_worker_stale_seconds=180)
    engine = create_engine(settings)
    try:
        now = utcnow().replace(microsecond=0)
        job = await _job(engine, now - timedelta(minutes=10))
        # Two processes (an API replica and another) checking at the same moment: one message.
        first, second = AlertMonitor(engine, settings), AlertMonitor(create_engine(settings), settings)
        sent = await asyncio.gather(first.check(now), second.check(now))
        await second.engine.dispose()
        assert sorted(name for names in sent for name in names) == ["worker_stopped"]
        mail = ops_mail(smtp)
        assert len(mail) == 1
        assert "worker stopped" in str(mail[0]["Subject"])
        assert "No worker is processing jobs" in mail[0].get_body(("plain",)).get_content()
        assert len(slack.accepted) == 1
        check_payload(slack.accepted[0].json())
        assert "No worker is processing jobs" in slack_texts(slack)[0]

        assert await first.check(now + timedelta(minutes=5)) == []  # throttled
        assert await first.check(now + timedelta(minutes=16)) == ["worker_stopped"]  # reminder
        # A worker comes back and works the queue off.
        async with engine.begin() as conn:
            await conn.execute(jobs.update().where(jobs.c.id == job).values(status="done"))
        await _attempts(engine, job, now + timedelta(minutes=17), success=1)
        assert await first.check(now + timedelta(minutes=17)) == ["worker_stopped:resolved"]
        assert await first.check(now + timedelta(minutes=18)) == []
        assert len(ops_mail(smtp)) == 3
        assert "resolved" in str(ops_mail(smtp)[-1]["Subject"])
    finally:
        await engine.dispose()


async def test_backlog_with_live_workers(
    alert_settings: Callable[..., Settings], smtp: FakeSmtp, slack: FakeSlack
) -> None:
    settings = alert_settings(alert_backlog_seconds=300, alert_worker_stale_seconds=600)
    engine = create_engine(settings)
    try:
        now = utcnow().replace(microsecond=0)
        await _job(engine, now - timedelta(minutes=3))
        done = await _job(engine, now - timedelta(minutes=20), status="done")
        await _attempts(engine, done, now - timedelta(seconds=30), success=1)  # a worker is alive
        monitor = AlertMonitor(engine, settings)
        assert await monitor.check(now) == []  # 3 min < 5 min
        assert await monitor.check(now + timedelta(minutes=3)) == ["backlog"]
        assert "Job backlog" in slack_texts(slack)[0]
        assert "worker" not in str(ops_mail(smtp)[0]["Subject"]).lower()
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("success", "failed", "fires"),
    [(30, 1, True), (200, 1, False), (5, 1, False)],  # 3.2 %; 0.5 %; too few jobs to judge
)
async def test_failure_rate(
    alert_settings: Callable[..., Settings],
    smtp: FakeSmtp,
    success: int,
    failed: int,
    fires: bool,
) -> None:
    settings = alert_settings(alert_failure_rate=0.01, alert_failure_min_jobs=20)
    engine = create_engine(settings)
    try:
        now = utcnow().replace(microsecond=0)
        job = await _job(engine, now - timedelta(minutes=5), status="done")
        await _attempts(engine, job, now - timedelta(minutes=5), success=success, dead=failed, retry=50)
        await _attempts(engine, job, now - timedelta(hours=2), dead=100)  # outside the 15 min window
        sent = await AlertMonitor(engine, settings).check(now)
        assert sent == (["failure_rate"] if fires else [])
        if fires:
            body = ops_mail(smtp)[0].get_body(("plain",)).get_content()
            assert f"{failed} of {success + failed}" in body
    finally:
        await engine.dispose()


async def test_monitor_runs_in_the_api_process(
    alert_settings: Callable[..., Settings], smtp: FakeSmtp, slack: FakeSlack
) -> None:
    """`leadflow serve --no-worker` with alerting on: a worker that never came is reported."""
    settings = alert_settings(alert_check_seconds=0.05, alert_worker_stale_seconds=1)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await _job(state_of(app).engine, utcnow() - timedelta(minutes=5))
        deadline = time.monotonic() + 20
        while not slack.accepted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert "No worker is processing jobs" in slack_texts(slack)[0]
    assert len(ops_mail(smtp)) == 1


async def test_a_failing_channel_does_not_stop_the_other(
    alert_settings: Callable[..., Settings], smtp: FakeSmtp, slack: FakeSlack
) -> None:
    settings = alert_settings()
    engine = create_engine(settings)
    try:
        now = utcnow()
        await _job(engine, now - timedelta(minutes=10))
        slack.fail_next(Reply(500, "internal_error", content_type="text/plain"))
        assert await AlertMonitor(engine, settings).check(now) == ["worker_stopped"]
        assert len(ops_mail(smtp)) == 1
        assert slack.accepted == []
    finally:
        await engine.dispose()


async def test_an_undelivered_alert_is_sent_again_at_the_next_check(
    alert_settings: Callable[..., Settings], slack: FakeSlack
) -> None:
    settings = alert_settings(alert_emails=[])
    engine = create_engine(settings)
    try:
        now = utcnow()
        await _job(engine, now - timedelta(minutes=10))
        slack.fail_next(Reply(503, "service_unavailable", content_type="text/plain"))
        monitor = AlertMonitor(engine, settings)
        assert await monitor.check(now) == ["worker_stopped"]
        assert slack.accepted == []
        assert await monitor.check(now + timedelta(minutes=1)) == ["worker_stopped"]  # not throttled
        assert len(slack.accepted) == 1
        assert await monitor.check(now + timedelta(minutes=2)) == []  # delivered: now throttled
    finally:
        await engine.dispose()


# --- dead letters ------------------------------------------------------------------------------------------
def test_one_digest_job_per_period(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(alert_digest_seconds=300)
    at = datetime.fromisoformat("2026-12-02T17:41:10+00:00")
    job = digest_job(at, settings)
    assert job.kind == DIGEST_JOB
    assert job.run_at == datetime.fromisoformat("2026-12-02T17:45:00+00:00")
    assert job.payload == {"since": "2026-12-02T17:40:00+00:00", "until": "2026-12-02T17:45:00+00:00"}
    assert digest_job(at + timedelta(minutes=3), settings).dedup_key == job.dedup_key
    assert digest_job(at + timedelta(minutes=4), settings).dedup_key != job.dedup_key


async def _work(harness: Harness, until: Callable[[], bool], seconds: float = 30) -> None:
    """Run the worker (due jobs only) until ``until()`` holds."""
    deadline = time.monotonic() + seconds
    async with worker_context(harness.engine, harness.settings) as ctx:
        worker = build_worker(ctx)
        while not until():
            assert time.monotonic() < deadline, "not reached in time"
            await worker.run_until_idle(10)
            await asyncio.sleep(0.05)


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as fake:
        yield fake


@pytest.fixture
async def dead_letter_harness(
    alert_settings: Callable[..., Settings], hubspot: FakeHubSpot
) -> AsyncIterator[Harness]:
    settings = alert_settings(
        hubspot_api_key=HUBSPOT_TOKEN, hubspot_base_url=hubspot.base_url, alert_digest_seconds=0.5
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app, client, state_of(app).engine, settings)


async def _campaign(h: Harness) -> None:
    response = await h.client.post(
        "/v1/api/campaigns",
        headers=await h.token("admin"),
        json={
            "id": "nextcloud-installation-2025",
            "name": "Nextcloud Installation 2025",
            "campaign_type": "service",
            "services": ["Nextcloud Installation"],
        },
    )
    assert response.status_code == 201


REFUSED = Reply(
    400, {"status": "error", "message": "Property values were not valid", "category": "VALIDATION_ERROR"}
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_dead_crm_sync_mails_the_lead_for_entry_by_hand(
    dead_letter_harness: Harness, hubspot: FakeHubSpot, smtp: FakeSmtp, slack: FakeSlack
) -> None:
    h = dead_letter_harness
    await _campaign(h)
    hubspot.fail_next(*[REFUSED] * 8)
    lead = example_lead(email="backup.person@company.com", phone="+1-555-987-6543")
    created = await h.client.post("/v1/api/leads", json=lead)
    assert created.status_code == 201
    lead_id = created.json()["lead_id"]

    await _work(h, lambda: bool(ops_mail(smtp)))
    digest = ops_mail(smtp)
    assert len(digest) == 1
    message = digest[0]
    assert "1 lead delivery failed for good" in str(message["Subject"])
    body = message.get_body(("plain",)).get_content()
    # Everything needed to enter the lead by hand, and the link to it.
    for expected in (
        f"https://leads.example.test/leads/{lead_id}",
        "hubspot delivery",
        "backup.person@company.com",
        "+15559876543",
        lead["contact"]["firstName"],
        lead["contact"]["company"],
        "Nextcloud Installation 2025",
        "leadflow jobs retry",
        "personal data",
    ):
        assert expected in body, expected
    assert "backup.person@company.com" in message.get_body(("html",)).get_content()
    # Slack: ids and links, never contact details.
    texts = [t for t in slack_texts(slack) if "failed for good" in t]
    assert len(texts) == 1
    assert lead_id in texts[0]
    assert "backup.person@company.com" not in texts[0]
    assert "5559876543" not in texts[0]
    async with h.engine.connect() as conn:
        digests = (await conn.execute(select(jobs.c.status).where(jobs.c.kind == DIGEST_JOB))).all()
    assert [d[0] for d in digests] == ["done"]


async def test_dead_letters_of_one_period_share_one_digest_and_a_failed_send_is_retried(
    dead_letter_harness: Harness, hubspot: FakeHubSpot, smtp: FakeSmtp
) -> None:
    h = dead_letter_harness
    await _campaign(h)
    hubspot.fail_next(*[REFUSED] * 20)
    smtp.fail_next("DATA", "451 4.3.0 Try again later")
    ids = []
    for i in range(3):
        created = await h.client.post("/v1/api/leads", json=example_lead(email=f"twice{i}@company.com"))
        ids.append(created.json()["lead_id"])
    async with worker_context(h.engine, h.settings) as ctx:
        await build_worker(ctx).run_until_idle(30)

    def bodies() -> str:
        return "\n".join(m.get_body(("plain",)).get_content() for m in ops_mail(smtp))

    await _work(h, lambda: all(i in bodies() for i in ids))
    async with h.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(jobs.c.status, jobs.c.attempts).where(jobs.c.kind == DIGEST_JOB).order_by(jobs.c.id)
            )
        ).all()
    # One digest per period in which deliveries died (the three die within one or two periods).
    assert 1 <= len(rows) <= 2
    assert len(ops_mail(smtp)) == len(rows)
    assert all(bodies().count(f"Lead: https://leads.example.test/leads/{i}") == 1 for i in ids)
    # The first send was refused by the mail server, so that digest ran twice.
    assert [r[0] for r in rows] == ["done"] * len(rows)
    assert rows[0][1] == 2


async def test_a_digest_retried_for_one_channel_is_not_sent_again_to_the_others(
    dead_letter_harness: Harness, hubspot: FakeHubSpot, smtp: FakeSmtp, slack: FakeSlack
) -> None:
    """The mail server defers the digest, Slack takes it: the retry mails it, and posts nothing again."""
    h = dead_letter_harness
    await _campaign(h)
    hubspot.fail_next(*[REFUSED] * 8)
    smtp.fail_next("DATA", "451 4.3.0 Try again later")
    created = await h.client.post("/v1/api/leads", json=example_lead(email="once.only@company.com"))
    lead_id = created.json()["lead_id"]
    await _work(h, lambda: bool(ops_mail(smtp)))
    assert len(ops_mail(smtp)) == 1
    texts = [t for t in slack_texts(slack) if "failed for good" in t]
    assert len(texts) == 1 and lead_id in texts[0]
    async with h.engine.connect() as conn:
        rows = (
            await conn.execute(select(jobs.c.status, jobs.c.attempts).where(jobs.c.kind == DIGEST_JOB))
        ).all()
    assert [(r[0], r[1]) for r in rows] == [("done", 2)]


async def test_no_digest_without_alert_channels(
    settings_factory: Callable[..., Settings], hubspot: FakeHubSpot
) -> None:
    settings = settings_factory(hubspot_api_key=HUBSPOT_TOKEN, hubspot_base_url=hubspot.base_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            h = Harness(app, client, state_of(app).engine, settings)
            await _campaign(h)
            hubspot.fail_next(*[REFUSED] * 8)
            assert (await client.post("/v1/api/leads", json=example_lead())).status_code == 201
            async with worker_context(h.engine, settings) as ctx:
                await build_worker(ctx).run_until_idle(30)
            dead = await h.scalar("SELECT count(*) FROM jobs WHERE status = 'dead'")
            assert dead == 1
            assert await h.scalar("SELECT count(*) FROM jobs WHERE kind = :k", k=DIGEST_JOB) == 0
