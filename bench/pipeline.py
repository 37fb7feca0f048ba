"""Pipeline benchmark: capture-to-deliveries latency and worker throughput, against fast local fakes.

    .venv/bin/python bench/pipeline.py [--leads 1000] [--rate 20] [--seconds 10] [--postgres URL]

1. Throughput: N leads are captured (the real capture path, no worker running), then one worker
   processes the backlog — enrichment, routing, and a Slack message, an e-mail and a HubSpot upsert per
   lead — and we report fully processed leads per second and jobs per second. On SQLite, and on
   PostgreSQL when ``--postgres`` (or LEADFLOW_TEST_POSTGRES_URL) is given.
2. Latency: the app runs with its in-process worker while leads arrive at a steady rate over HTTP
   (in process, ASGI); for every lead we take the time from its POST to the arrival of each of its
   three deliveries at the fakes, and print p50/p95/max of the last one.
Fakes are the test suite's real servers on 127.0.0.1 (Slack and HubSpot over HTTP, aiosmtpd over SMTP),
run in a process of their own (``bench/fakes_host.py``) so that they do not share the worker's CPU.
Targets: p95 capture→notifications <= 2 s; >= 200 leads/s fully processed. A report: exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvloop
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import example_lead  # noqa: E402
from tests.fakes.hubspot import TOKEN as HUBSPOT_TOKEN  # noqa: E402

from leadflow.app import create_app  # noqa: E402
from leadflow.config import Settings, normalise_database_url  # noqa: E402
from leadflow.kit.state import state_of  # noqa: E402
from leadflow.migrations.runner import upgrade_async  # noqa: E402
from leadflow.security.tokens import create_token  # noqa: E402


class Fakes:
    """The Slack, HubSpot and SMTP fakes in their own process (``bench/fakes_host.py``)."""

    def __enter__(self) -> Fakes:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "fakes_host.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.addresses = json.loads(self._line())
        return self

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fakes process exited")
        return line

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self._line())

    def cpu_seconds(self) -> float:
        """CPU time the fakes process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def counts(self) -> dict[str, int]:
        return dict(await asyncio.to_thread(self.ask, "counts"))

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(RuntimeError, OSError, ValueError):
            self.ask("quit")
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _admin(url: str, sql: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


async def fresh_database(kind: str, postgres: str | None, workdir: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir}/pipeline.db"
        await upgrade_async(url)
        return url, None
    assert postgres
    base = normalise_database_url(postgres)
    name = f"leadflow_bench_{uuid.uuid4().hex[:8]}"
    await _admin(base, f"CREATE DATABASE {name}")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    await upgrade_async(url)
    return url, name


def settings_for(url: str, fakes: Fakes, run_worker: bool) -> Settings:
    return Settings(
        database_url=url,
        encryption_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        leadflow_env="test",
        run_worker=run_worker,
        worker_poll_seconds=0.05,
        worker_concurrency=64,
        rate_limit_per_ip="100000000/second",
        rate_limit_per_campaign="100000000/second",
        slack_webhook_url=fakes.addresses["slack_webhook_url"],
        hubspot_api_key=HUBSPOT_TOKEN,
        hubspot_base_url=fakes.addresses["hubspot_base_url"],
        smtp_host=fakes.addresses["smtp_host"],
        smtp_port=fakes.addresses["smtp_port"],
        smtp_starttls=False,
        sequence_enabled=False,
        campaign_cache_seconds=60,
    )


async def setup(client: httpx.AsyncClient, app: Any) -> dict[str, str]:
    async with state_of(app).engine.begin() as conn:
        token = (await create_token(conn, name="bench", role="admin")).token
    auth = {"Authorization": f"Bearer {token}"}
    await client.post(
        "/v1/api/campaigns",
        headers=auth,
        json={
            "id": "nextcloud-installation-2025",
            "name": "Bench",
            "campaign_type": "service",
            "services": ["Nextcloud Installation"],
        },
    )
    for i in range(3):
        await client.post(
            "/v1/api/team-members",
            headers=auth,
            json={"name": f"Seller {i}", "email": f"seller{i}@nexlink.website", "capacity": 100000},
        )
    return auth


def lead(i: int, tag: str) -> dict[str, Any]:
    return example_lead(email=f"bench.{tag}.{i}@acme-corp.com")


async def throughput(kind: str, postgres: str | None, leads: int, concurrency: int) -> dict[str, float]:
    from leadflow.pipeline.runtime import build_worker, worker_context

    with tempfile.TemporaryDirectory() as tmp, Fakes() as fakes:
        url, name = await fresh_database(kind, postgres, Path(tmp))
        try:
            settings = settings_for(url, fakes, run_worker=False)
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                    await setup(client, app)
                    sem = asyncio.Semaphore(64)

                    async def post(i: int) -> None:
                        async with sem:
                            response = await client.post("/v1/api/leads", json=lead(i, f"t{kind}"))
                            assert response.status_code == 201, response.text

                    await asyncio.gather(*(post(i) for i in range(leads)))
                async with worker_context(state_of(app).engine, settings) as ctx:
                    worker = build_worker(ctx, concurrency=concurrency)
                    start, cpu, fakes_cpu = time.perf_counter(), time.process_time(), fakes.cpu_seconds()
                    jobs = await worker.run_until_idle(600)
                    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                    fakes_cpu = fakes.cpu_seconds() - fakes_cpu
            counts = await fakes.counts()
            delivered = min(counts["slack"], counts["smtp"], counts["hubspot_contacts"])
            return {
                "leads": leads,
                "seconds": elapsed,
                "leads_per_s": delivered / elapsed,
                "jobs_per_s": jobs / elapsed,
                "cpu_share": cpu / elapsed,
                "fakes_cpu_share": fakes_cpu / elapsed,
                "cpu_ms_per_lead": cpu * 1000 / max(1, delivered),
            }
        finally:
            if name and postgres:
                await _admin(normalise_database_url(postgres), f"DROP DATABASE {name}")


async def latency(rate: float, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, Fakes() as fakes:
        url, _ = await fresh_database("sqlite", None, Path(tmp))
        settings = settings_for(url, fakes, run_worker=True)
        app = create_app(settings)
        sent: dict[str, float] = {}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await setup(client, app)
                total = int(rate * seconds)
                tasks = []
                start = time.monotonic()

                async def post(i: int) -> None:
                    posted = time.monotonic()
                    response = await client.post("/v1/api/leads", json=lead(i, "lat"))
                    assert response.status_code == 201, response.text
                    sent[response.json()["lead_id"]] = posted

                for i in range(total):
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                    tasks.append(asyncio.create_task(post(i)))
                await asyncio.gather(*tasks)
                deadline = time.monotonic() + 60
                while min((await fakes.counts()).values()) < total:
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
            report = await asyncio.to_thread(fakes.ask, "report")
        return capture_to_delivery(sent, report)


def capture_to_delivery(sent: dict[str, float], report: list[Any]) -> dict[str, float]:
    """p50/p95/max from each lead's POST (``sent``: lead id -> time) to the last of its 3 deliveries.

    Every delivery names the public lead id (Slack and e-mail in the lead's link, HubSpot in a
    property), so each arrival in the fakes' ``report`` is matched to its own capture.
    """
    arrivals: dict[str, list[float]] = {lead_id: [] for lead_id in sent}
    for _service, received_at, text in report:
        for lead_id in sent:
            if lead_id in text:
                arrivals[lead_id].append(received_at)
                break
    last = [max(times) - sent[lead_id] for lead_id, times in arrivals.items() if len(times) == 3]
    return {
        "leads": len(sent),
        "complete": len(last),
        "p50": statistics.median(last) if last else float("nan"),
        "p95": percentile(last, 0.95) if last else float("nan"),
        "max": max(last) if last else float("nan"),
    }


async def main(args: argparse.Namespace) -> None:
    print("Leadflow pipeline benchmark (fakes on 127.0.0.1; one worker)")
    results = []
    for kind in ["sqlite", *(["postgresql"] if args.postgres else [])]:
        r = await throughput(kind, args.postgres, args.leads, args.concurrency)
        results.append((kind, r))
        print(
            f"  throughput {kind:10s} {r['leads']} leads in {r['seconds']:.1f} s: "
            f"{r['leads_per_s']:.0f} leads/s fully processed, {r['jobs_per_s']:.0f} jobs/s; worker CPU "
            f"{r['cpu_share'] * 100:.0f} % of a core, {r['cpu_ms_per_lead']:.1f} ms per lead; "
            f"fakes CPU {r['fakes_cpu_share'] * 100:.0f} % of a core"
        )
    if args.skip_latency:
        print(f"  [{'PASS' if all(r['leads_per_s'] >= 200 for _, r in results) else 'MISS'}] >= 200 leads/s")
        return
    lat = await latency(args.rate, args.seconds)
    print(
        f"  latency    {lat['leads']} leads at {args.rate:g}/s: capture -> all of Slack, e-mail and HubSpot "
        f"p50 {lat['p50'] * 1000:.0f} ms, p95 {lat['p95'] * 1000:.0f} ms, max {lat['max'] * 1000:.0f} ms "
        f"({lat['complete']} of {lat['leads']} complete)"
    )
    ok_latency = lat["p95"] <= 2.0
    ok_tp = all(r["leads_per_s"] >= 200 for _, r in results)
    print(f"  [{'PASS' if ok_latency else 'MISS'}] p95 capture -> notifications <= 2 s")
    print(f"  [{'PASS' if ok_tp else 'MISS'}] >= 200 leads/s fully processed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="leads per second in the latency run")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64, help="jobs the worker runs at once")
    parser.add_argument("--skip-latency", action="store_true", help="only the throughput runs")
    parser.add_argument("--postgres", default=os.environ.get("LEADFLOW_TEST_POSTGRES_URL"))
    uvloop.run(main(parser.parse_args()))  # the event loop `leadflow serve` and `leadflow worker` use
