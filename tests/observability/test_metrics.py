"""GET /metrics through the app: access rules, request/capture/rate-limit counters, database gauges."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.kit.state import state_of
from leadflow.observability import metrics
from leadflow.pipeline import repository as jobs_repo
from leadflow.pipeline.runtime import build_worker, worker_context
from tests.conftest import Harness, example_lead
from tests.observability.helpers import has, value

CAPTURE = "/v1/api/leads"
CAMPAIGN = "nextcloud-installation-2025"


@pytest.fixture
async def app_factory(settings_factory: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    """Start apps with extra settings; each runs until the test ends."""
    stack: list[Any] = []

    async def start(**overrides: Any) -> Harness:
        settings = settings_factory(**overrides)
        app = create_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stack.append(lifespan)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        stack.append(client)
        return Harness(app, client, state_of(app).engine, settings)

    yield start
    for item in reversed(stack):
        await item.__aexit__(None, None, None)


def remote(h: Harness, address: str = "203.0.113.7") -> httpx.AsyncClient:
    """A client whose socket peer is ``address`` (not loopback)."""
    transport = httpx.ASGITransport(app=h.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def create_campaign(h: Harness, slug: str) -> None:
    response = await h.client.post(
        "/v1/api/campaigns",
        headers=await h.token("admin"),
        json={"id": slug, "name": slug, "campaign_type": "service", "services": ["Nextcloud Installation"]},
    )
    assert response.status_code == 201, response.text


async def scrape(h: Harness, **headers: str) -> str:
    response = await h.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


# --- access -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)  # the role's CHECK
async def test_loopback_needs_no_token_remote_needs_the_metrics_scope(harness: Harness) -> None:
    text = await scrape(harness)
    assert has(text, "leadflow_build_info")
    monitoring = await harness.token("monitoring")
    admin = await harness.token("admin")
    sales = await harness.token("sales")
    async with remote(harness) as outside:
        refused = await outside.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"] == "UNAUTHORIZED"
        assert refused.json()["success"] is False
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (await outside.get("/metrics", headers=monitoring)).status_code == 200
        assert (await outside.get("/metrics", headers=admin)).status_code == 200
        wrong_role = await outside.get("/metrics", headers=sales)
        assert wrong_role.status_code == 403
        assert wrong_role.json()["error"] == "FORBIDDEN"
        bad = await outside.get("/metrics", headers={"Authorization": "Bearer lf_not-a-token"})
        assert bad.status_code == 401
    # The monitoring role can read metrics and nothing else.
    assert (await harness.client.get("/v1/api/leads", headers=monitoring)).status_code == 403


async def test_a_request_through_an_untrusted_proxy_is_not_local(harness: Harness) -> None:
    forwarded = await harness.client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.4"})
    assert forwarded.status_code == 401
    also = await harness.client.get("/metrics", headers={"Forwarded": "for=198.51.100.4"})
    assert also.status_code == 401


async def test_a_trusted_proxy_passes_on_the_real_client(app_factory: Callable[..., Any]) -> None:
    h = await app_factory(trusted_proxies=["127.0.0.1/32"], metrics_open_networks=["10.0.0.0/8"])
    inside = await h.client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
    assert inside.status_code == 200
    outside = await h.client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.4"})
    assert outside.status_code == 401
    direct = await h.client.get("/metrics")  # loopback is not in the configured networks
    assert direct.status_code == 401


async def test_no_open_networks_means_a_token_everywhere(app_factory: Callable[..., Any]) -> None:
    h = await app_factory(metrics_open_networks=[])
    assert (await h.client.get("/metrics")).status_code == 401
    assert (await h.client.get("/metrics", headers=await h.token("monitoring"))).status_code == 200


def test_metrics_open_networks_is_read_as_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_OPEN_NETWORKS", "10.0.0.0/8, 192.168.0.0/16")
    monkeypatch.setenv("ALERT_EMAILS", "ops@example.com,cto@example.com")
    settings = Settings(encryption_key="x")  # type: ignore[arg-type]
    assert settings.metrics_open_networks == ["10.0.0.0/8", "192.168.0.0/16"]
    assert settings.alert_emails == ["ops@example.com", "cto@example.com"]
    assert settings.alerting


def test_bad_open_networks_are_a_configuration_error(settings_factory: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="not an IP network"):
        settings_factory(metrics_open_networks=["localhost"])


def test_worker_refuses_a_taken_metrics_port(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from leadflow.cli import app

    taken = metrics.bind("127.0.0.1", 0)
    try:
        for key, value in {
            "DATABASE_URL": settings.database_url,
            "ENCRYPTION_KEY": settings.encryption_key.get_secret_value() if settings.encryption_key else "",
            "METRICS_PORT": str(taken.getsockname()[1]),
        }.items():
            monkeypatch.setenv(key, value)
        taken.listen()
        result = CliRunner().invoke(app, ["worker"])
    finally:
        taken.close()
    assert result.exit_code == 2
    assert "cannot serve metrics on 127.0.0.1:" in result.output


def test_prepare_multiprocess_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROCESS_ENV, "")  # restored (removed) after the test
    target = tmp_path / "metrics"
    target.mkdir()
    (target / "counter_123.db").write_bytes(b"stale")
    (target / "keep.txt").write_text("not ours")
    metrics.prepare_multiprocess_dir(target)
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert os.environ[metrics.MULTIPROCESS_ENV] == str(target.resolve())
    assert metrics.multiprocess()


def test_openapi_documents_the_endpoint(harness: Harness) -> None:
    operation = harness.app.openapi()["paths"]["/metrics"]["get"]
    assert "metrics" in operation["description"]
    assert {"200", "401", "403"} <= set(operation["responses"])


# --- HTTP and capture counters ---------------------------------------------------------------------------
async def test_requests_are_counted_by_route_template(harness: Harness, campaign: dict[str, Any]) -> None:
    admin = await harness.token("admin")
    before = await scrape(harness)
    route = "/v1/api/leads/{lead_id}/status"
    for _ in range(3):
        answer = await harness.client.get("/v1/api/leads/lead_0123456789ab/status", headers=admin)
        assert answer.status_code == 404
    assert (await harness.client.get("/no/such/page")).status_code == 404
    after = await scrape(harness)
    key = {"method": "GET", "route": route, "status": "404"}
    assert (
        value(after, "leadflow_http_requests_total", **key)
        - value(before, "leadflow_http_requests_total", **key)
        == 3
    )
    histogram = {"method": "GET", "route": route}
    assert (
        value(after, "leadflow_http_request_duration_seconds_count", **histogram)
        - value(before, "leadflow_http_request_duration_seconds_count", **histogram)
        == 3
    )
    assert value(after, "leadflow_http_requests_total", route="unmatched", status="404") >= 1
    # No raw path (with its id) ever becomes a label.
    assert "lead_0123456789ab" not in after


async def test_unknown_methods_share_one_label(harness: Harness) -> None:
    await harness.client.request("BREW", "/healthz")
    text = await scrape(harness)
    assert has(text, "leadflow_http_requests_total", method="OTHER")
    assert not has(text, "leadflow_http_requests_total", method="BREW")


async def test_capture_outcomes(app_factory: Callable[..., Any]) -> None:
    h = await app_factory(rate_limit_per_campaign="4/hour", lockout_threshold=100)
    await create_campaign(h, CAMPAIGN)
    before = await scrape(h)
    lead = example_lead(email="metrics.one@company.com")
    assert (await h.client.post(CAPTURE, json=lead)).status_code == 201
    assert (await h.client.post(CAPTURE, json=lead)).status_code == 409  # duplicate
    assert (await h.client.post(CAPTURE, json={"campaign_id": CAMPAIGN})).status_code == 400  # invalid
    spam = example_lead(email="metrics.two@company.com")
    spam["form_metadata"] = {**spam.get("form_metadata", {}), "honeypot": "I am a bot"}
    assert (await h.client.post(CAPTURE, json=spam)).status_code == 400
    assert (await h.client.post(CAPTURE, json=example_lead(email="m3@company.com"))).status_code == 201
    limited = await h.client.post(CAPTURE, json=example_lead(email="m4@company.com"))
    assert limited.status_code == 429
    after = await scrape(h)

    def delta(outcome: str) -> float:
        return value(after, "leadflow_leads_captured_total", outcome=outcome) - value(
            before, "leadflow_leads_captured_total", outcome=outcome
        )

    assert delta("created") == 2
    assert delta("duplicate") == 1
    assert delta("invalid") == 1
    assert delta("spam") == 1
    assert delta("rate_limited") == 1
    # Every documented outcome is exported from the start (so rate() and alerts see zeros).
    for outcome in metrics.CAPTURE_OUTCOMES:
        assert has(after, "leadflow_leads_captured_total", outcome=outcome)
    assert (
        value(after, "leadflow_capture_spam_total", reason="honeypot")
        - value(before, "leadflow_capture_spam_total", reason="honeypot")
        == 1
    )
    assert (
        value(after, "leadflow_rate_limited_total", limit="campaign")
        - value(before, "leadflow_rate_limited_total", limit="campaign")
        == 1
    )


async def test_lockouts_are_counted(app_factory: Callable[..., Any]) -> None:
    h = await app_factory(lockout_threshold=2)
    before = await scrape(h)
    bad = {"Authorization": "Bearer lf_wrong"}
    answers = [(await h.client.get("/v1/api/leads", headers=bad)).status_code for _ in range(5)]
    assert answers[:3] == [401, 401, 401]
    assert 429 in answers
    after = await scrape(h)
    assert value(after, "leadflow_lockouts_total") - value(before, "leadflow_lockouts_total") >= 1
    assert (
        value(after, "leadflow_locked_out_requests_total")
        - value(before, "leadflow_locked_out_requests_total")
        >= 1
    )


# --- database gauges and jobs (every backend) ------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_queue_lead_and_job_metrics(app_factory: Callable[..., Any]) -> None:
    h = await app_factory(
        metrics_db_refresh_seconds=0, metrics_leads_refresh_seconds=0, metrics_max_campaigns=1
    )
    for slug in ("big-campaign", "small-campaign"):
        await create_campaign(h, slug)
    for i in range(3):
        lead = example_lead(email=f"big{i}@company.com") | {"campaign_id": "big-campaign"}
        assert (await h.client.post(CAPTURE, json=lead)).status_code == 201
    small = example_lead(email="small@company.com") | {"campaign_id": "small-campaign"}
    assert (await h.client.post(CAPTURE, json=small)).status_code == 201

    later = utcnow() + timedelta(hours=1)
    async with h.engine.begin() as conn:  # a delivery that is not due yet
        await jobs_repo.enqueue(
            conn, [jobs_repo.NewJob(kind="deliver", payload={"connector": "hubspot"}, run_at=later)], utcnow()
        )

    text = await scrape(h)
    assert value(text, "leadflow_database_up") == 1
    assert value(text, "leadflow_jobs_queued", kind="lead.process", connector="", status="pending") == 4
    assert value(text, "leadflow_jobs_queued", kind="deliver", connector="hubspot", status="pending") == 1
    assert value(text, "leadflow_jobs_due") == 4
    assert value(text, "leadflow_jobs_oldest_due_age_seconds") >= 0
    assert value(text, "leadflow_jobs_last_attempt_timestamp_seconds") == 0  # no worker ever ran
    # Bounded cardinality: one named campaign, the rest folded into "other".
    assert value(text, "leadflow_leads", campaign="big-campaign") == 3
    assert value(text, "leadflow_leads", campaign="other") == 1
    assert not has(text, "leadflow_leads", campaign="small-campaign")
    assert value(text, "leadflow_leads", status="new") == 4
    assert value(text, "leadflow_db_pool_connections_max") >= 1
    assert has(text, "leadflow_db_pool_connections_in_use")
    assert has(text, "leadflow_disk_free_bytes")

    before = text
    async with worker_context(h.engine, h.settings) as ctx:
        assert await build_worker(ctx).run_until_idle(60) >= 4
    after = await scrape(h)
    key = {"kind": "lead.process", "outcome": "success"}
    assert (
        value(after, "leadflow_jobs_finished_total", **key)
        - value(before, "leadflow_jobs_finished_total", **key)
        == 4
    )
    assert (
        value(after, "leadflow_job_duration_seconds_count", kind="lead.process")
        - value(before, "leadflow_job_duration_seconds_count", kind="lead.process")
        == 4
    )
    assert value(after, "leadflow_jobs_queued", kind="lead.process", status="pending") == 0
    assert value(after, "leadflow_jobs_last_attempt_timestamp_seconds") > 0


async def test_lead_counts_are_refreshed_less_often_than_the_queue(app_factory: Callable[..., Any]) -> None:
    h = await app_factory(metrics_db_refresh_seconds=0, metrics_leads_refresh_seconds=3600)
    await create_campaign(h, CAMPAIGN)
    first = await scrape(h)
    assert (await h.client.post(CAPTURE, json=example_lead(email="later@company.com"))).status_code == 201
    second = await scrape(h)
    assert value(second, "leadflow_jobs_due") == value(first, "leadflow_jobs_due") + 1  # queue: fresh
    assert value(second, "leadflow_leads") == value(first, "leadflow_leads") == 0  # leads: cached


async def test_database_gauges_are_cached_between_scrapes(app_factory: Callable[..., Any]) -> None:
    h = await app_factory(metrics_db_refresh_seconds=3600)
    first = await scrape(h)
    await h.execute(
        "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at) "
        "VALUES ('x', '{}', 'pending', 0, 1, '2020-01-01 00:00:00', '2020-01-01 00:00:00', '2020-01-01 00:00:00')"
    )
    second = await scrape(h)
    assert value(first, "leadflow_jobs_due") == value(second, "leadflow_jobs_due") == 0


async def test_database_down_is_a_gauge_not_an_error(app_factory: Callable[..., Any]) -> None:
    h = await app_factory(metrics_db_refresh_seconds=0)
    exposition: metrics.Exposition = state_of(h.app).metrics
    # A database nobody listens for (port 1): what a scrape meets while the database is down.
    exposition.database.engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    text = await scrape(h)
    assert value(text, "leadflow_database_up") == 0
    assert has(text, "leadflow_build_info")
    await exposition.database.engine.dispose()


# --- the worker's own endpoint -------------------------------------------------------------------------
async def test_worker_metrics_server(harness: Harness) -> None:
    sock = metrics.bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    server = asyncio.create_task(metrics.serve_metrics(harness.engine, harness.settings, stop, sock))
    metrics.WORKER_HEARTBEAT.set(1234.0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(200):
                try:
                    response = await client.get("/metrics")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.02)
            assert response.status_code == 200
            assert value(response.text, "leadflow_worker_heartbeat_timestamp_seconds") > 0
            assert has(response.text, "leadflow_jobs_due")
            assert (await client.get("/docs")).status_code == 404  # nothing but /metrics
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
