"""`make bench BENCH_DB=postgres`: PostgreSQL with 2 API processes and 2 worker processes.

    .venv/bin/python bench/cluster.py [--postgres URL] [--duration 20] [--concurrency 256] [--rate 50]

The production shape of issue 8 on one machine, everything on 127.0.0.1:

1. a fresh PostgreSQL database (created on the server of ``--postgres`` / LEADFLOW_TEST_POSTGRES_URL,
   dropped afterwards), migrated with ``leadflow migrate``; the campaign ``bench`` and three team
   members through the CLI; the Slack, HubSpot and SMTP fakes in a process of their own
   (``bench/fakes_host.py``, as in ``bench/pipeline.py``);
2. ``leadflow serve --workers 2 --no-worker`` (two API processes on one port) and two
   ``leadflow worker`` processes, all with the default pool settings;
3. **latency**: leads arrive over HTTP at ``--rate`` per second for ``--latency-seconds``; for each
   one, the time from its POST to the arrival of the last of its three deliveries (Slack, e-mail,
   HubSpot) at the fakes: p50/p95/max;
4. **throughput and de-duplication under load**: wrk drives capture at ``--concurrency`` connections
   for ``--duration`` seconds; a third of the way in, ``--burst`` concurrent copies of one address
   (new connections, so both API processes take some) and as many different bodies under one
   ``Idempotency-Key`` are sent: exactly one 201 each is the expected outcome. Afterwards the stored
   leads are counted against the 201 answers, the database connections seen during the run are
   reported against PostgreSQL's ``max_connections``, and the time the two workers need to drain the
   backlog gives the processing rate.

A report, not a test: exits 0 whether or not the figures meet their targets.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ modules
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ (the fakes, the example lead)

from tests.conftest import example_lead
from tests.fakes.hubspot import TOKEN as HUBSPOT_TOKEN

from leadflow.config import normalise_database_url
from loadgen import LoadResult, compose_script, ensure_wrk, run_wrk
from pipeline import Fakes, capture_to_delivery, fresh_database

LEADFLOW = Path(sys.executable).with_name("leadflow")
HOST = "127.0.0.1"
CAMPAIGN = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cluster_env(url: str, fakes: Fakes) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TZ") if key in os.environ}
    env.update(
        DATABASE_URL=url,
        ENCRYPTION_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        LEADFLOW_ENV="development",
        LOG_LEVEL="INFO",
        RATE_LIMIT_PER_IP="1000000/second",
        RATE_LIMIT_PER_CAMPAIGN="1000000/second",
        SLACK_WEBHOOK_URL=fakes.addresses["slack_webhook_url"],
        HUBSPOT_API_KEY=HUBSPOT_TOKEN,
        HUBSPOT_BASE_URL=fakes.addresses["hubspot_base_url"],
        SMTP_HOST=fakes.addresses["smtp_host"],
        SMTP_PORT=str(fakes.addresses["smtp_port"]),
        SMTP_STARTTLS="false",
        SEQUENCE_ENABLED="false",
        BOT_MIN_FILL_SECONDS="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(LEADFLOW), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"leadflow {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def body(email: str) -> dict[str, Any]:
    lead = example_lead(email=email)
    lead["campaign_id"] = CAMPAIGN
    return lead


async def latency(base: str, fakes: Fakes, rate: float, seconds: float) -> dict[str, float]:
    sent: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        total = int(rate * seconds)
        start = time.monotonic()

        async def post(i: int) -> None:
            posted = time.monotonic()
            response = await client.post("/v1/api/leads", json=body(f"latency.{i}@acme-corp.com"))
            if response.status_code == 201:
                sent[response.json()["lead_id"]] = posted

        tasks = []
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
    deadline = time.monotonic() + 60
    while min((await fakes.counts()).values()) < len(sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    report = await asyncio.to_thread(fakes.ask, "report")
    return {**capture_to_delivery(sent, report), "sent": total}


async def dedup_burst(base: str, copies: int) -> dict[str, Any]:
    """``copies`` concurrent copies of one address, and as many bodies under one Idempotency-Key."""
    tag = secrets.token_hex(4)
    limits = httpx.Limits(max_connections=copies * 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        same = [client.post("/v1/api/leads", json=body(f"dedup.{tag}@acme-corp.com")) for _ in range(copies)]
        key = {"Idempotency-Key": f"bench-{tag}"}
        keyed = [
            client.post("/v1/api/leads", json=body(f"keyed.{tag}.{i}@acme-corp.com"), headers=key)
            for i in range(copies)
        ]
        responses = await asyncio.gather(*same, *keyed)
    person, by_key = responses[:copies], responses[copies:]
    return {
        "person": dict(Counter(r.status_code for r in person)),
        "person_ids": len({r.json().get("lead_id") for r in person if r.status_code in (201, 409)}),
        "key": dict(Counter(r.status_code for r in by_key)),
        "key_errors": dict(Counter(r.json().get("error") for r in by_key if r.status_code == 409)),
    }


async def scalar(url: str, sql: str) -> Any:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await engine.dispose()


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_healthy(port: int, processes: list[subprocess.Popen[bytes]], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a Leadflow process exited during start-up (see the logs)")
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("leadflow serve did not answer /healthz")
        time.sleep(0.2)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    wrk = ensure_wrk()
    out: dict[str, Any] = {}
    with Fakes() as fakes:
        url, name = asyncio.run(fresh_database("postgresql", args.postgres, workdir))
        admin_url = normalise_database_url(args.postgres)
        try:
            env = cluster_env(url, fakes)
            cli(env, "campaigns", "create", "--id", CAMPAIGN, "--name", "Bench", "--type", "service")
            for i in range(3):
                cli(
                    env,
                    "members",
                    "add",
                    "--name",
                    f"Seller {i}",
                    "--email",
                    f"seller{i}@nexlink.website",
                    "--capacity",
                    "100000",
                    "--days",
                    "0,1,2,3,4,5,6",
                )
            port = free_port()
            processes = [
                start(
                    [
                        str(LEADFLOW),
                        "serve",
                        "--workers",
                        str(args.api_processes),
                        "--no-worker",
                        "--port",
                        str(port),
                    ],
                    env,
                    workdir / "api.log",
                )
            ]
            for i in range(args.workers):
                processes.append(start([str(LEADFLOW), "worker"], env, workdir / f"worker-{i}.log"))
            try:
                wait_healthy(port, processes)
                base = f"http://{HOST}:{port}"
                print(
                    f"{args.api_processes} API processes on :{port}, {args.workers} workers; fakes up",
                    flush=True,
                )
                out["latency"] = asyncio.run(latency(base, fakes, args.rate, args.latency_seconds))
                print(f"  latency: {json.dumps(out['latency'])}", flush=True)

                connections: list[int] = []
                stop_sampling = threading.Event()

                def sample() -> None:
                    while not stop_sampling.is_set():
                        connections.append(
                            int(
                                asyncio.run(
                                    scalar(
                                        admin_url,
                                        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'",  # noqa: S608
                                    )
                                )
                            )
                        )
                        stop_sampling.wait(1.0)

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                result: list[LoadResult] = []
                runner = threading.Thread(
                    target=lambda: result.append(
                        run_wrk(
                            wrk,
                            scenario="capture",
                            url=f"{base}/v1/api/leads",
                            script=compose_script("capture.lua", workdir),
                            script_args=[f"cluster{secrets.token_hex(3)}", CAMPAIGN],
                            connections=args.concurrency,
                            seconds=args.duration,
                            server_pid=processes[0].pid,
                        )
                    )
                )
                runner.start()
                time.sleep(args.duration / 3)
                out["dedup"] = asyncio.run(dedup_burst(base, args.burst))
                runner.join()
                stop_sampling.set()
                sampler.join()
                load = result[0]
                out["capture"] = load.as_dict()
                out["db_connections_max"] = max(connections, default=0)
                out["max_connections"] = asyncio.run(scalar(admin_url, "SHOW max_connections"))
                print(
                    f"  capture c={args.concurrency}: {load.rps:.0f} req/s, p50 {load.p50_ms:.0f} ms, "
                    f"p95 {load.p95_ms:.0f} ms, p99 {load.p99_ms:.0f} ms, non-2xx {load.non_2xx}, "
                    f"socket errors {load.socket_errors}",
                    flush=True,
                )
                print(f"  dedup under load: {json.dumps(out['dedup'])}", flush=True)
                time.sleep(1)
                stored = asyncio.run(
                    scalar(url, f"SELECT count(*) FROM leads WHERE campaign_id = '{CAMPAIGN}'")  # noqa: S608
                )
                answered = load.ok + out["latency"]["leads"] + 2  # + one lead per dedup burst
                out["stored"], out["answered_201_at_least"] = int(stored), answered
                drain_start, deadline = time.monotonic(), time.monotonic() + args.drain_seconds
                pending = 1
                while time.monotonic() < deadline:
                    pending = int(
                        asyncio.run(
                            scalar(url, "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')")
                        )
                    )
                    if pending == 0:
                        break
                    time.sleep(1)
                drained = time.monotonic() - drain_start
                processed = int(
                    asyncio.run(
                        scalar(
                            url, "SELECT count(*) FROM jobs WHERE kind = 'lead.process' AND status = 'done'"
                        )
                    )
                )
                out["drain"] = {
                    "seconds": round(drained, 1),
                    "pending_left": pending,
                    "processed_leads": processed,
                }
            finally:
                for process in processes:
                    stop(process)
        finally:
            asyncio.run(_drop(admin_url, name))
    return out


async def _drop(admin_url: str, name: str | None) -> None:
    if name:
        from pipeline import _admin

        await _admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LEADFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--api-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of capture load (wrk)")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--burst", type=int, default=200, help="concurrent copies in each dedup burst")
    parser.add_argument("--rate", type=float, default=50.0, help="leads per second in the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument(
        "--drain-seconds", type=float, default=300.0, help="most time to wait for the backlog"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-cluster-"))
    print(f"work directory {workdir}", flush=True)
    try:
        out = run(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    lat, cap, dedup, drain = out["latency"], out["capture"], out["dedup"], out["drain"]
    print()
    print(
        f"PostgreSQL, {args.api_processes} API processes + {args.workers} workers (this machine: {os.cpu_count()} cores)"
    )
    print(
        f"  capture throughput at c={args.concurrency}: {cap['rps']:.0f} req/s (p95 {cap['p95_ms']:.0f} ms, "
        f"p99 {cap['p99_ms']:.0f} ms, {cap['non_2xx']} non-2xx, {cap['socket_errors']} socket errors)"
    )
    print(
        f"  capture -> all three deliveries at {args.rate:g} leads/s: p50 {lat['p50'] * 1000:.0f} ms, "
        f"p95 {lat['p95'] * 1000:.0f} ms, max {lat['max'] * 1000:.0f} ms ({lat['complete']} of {lat['leads']})"
    )
    person_ok = dedup["person"] == {201: 1, 409: args.burst - 1} and dedup["person_ids"] == 1
    key_ok = dedup["key"] == {201: 1, 409: args.burst - 1}
    print(
        f"  dedup under load: one address x{args.burst} -> {dedup['person']} ({dedup['person_ids']} lead id)"
        f" [{'PASS' if person_ok else 'MISS'}]; one Idempotency-Key x{args.burst} -> {dedup['key']} "
        f"{dedup['key_errors']} [{'PASS' if key_ok else 'MISS'}]"
    )
    print(
        f"  stored {out['stored']} leads, answered 201 at least {out['answered_201_at_least']} "
        f"[{'PASS' if out['stored'] >= out['answered_201_at_least'] else 'MISS'}]"
    )
    print(
        f"  database connections seen: at most {out['db_connections_max']} of max_connections "
        f"{out['max_connections']}"
    )
    rate = drain["processed_leads"] / drain["seconds"] if drain["seconds"] else float("nan")
    print(
        f"  backlog: {drain['processed_leads']} leads processed; drained in {drain['seconds']} s "
        f"({drain['pending_left']} jobs left; ~{rate:.0f} leads/s while draining)"
    )
    print("A report: the exit status is 0 whether or not the figures meet their targets.")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
