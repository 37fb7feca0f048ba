"""Graceful shutdown under load: SIGTERM to a real ``leadflow serve`` while clients capture leads, and
to a real ``leadflow worker`` while deliveries hang. Every acknowledged (201) lead is stored with its
job, and no job is left half-done (``running``) behind a process that has exited."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from leadflow.config import Settings
from tests.conftest import TEST_KEY, Harness, example_lead
from tests.fakes.webhook_receiver import SECRET as WEBHOOK_SECRET
from tests.fakes.webhook_receiver import FakeWebhookReceiver

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
BIN = Path(sys.executable).parent / "leadflow"


def _plain_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername=parsed.drivername.split("+")[0]).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=_plain_url(settings.database_url),
        ENCRYPTION_KEY=TEST_KEY,
        LEADFLOW_ENV="test",
        RATE_LIMIT_PER_IP="1000000/minute",
        RATE_LIMIT_PER_CAMPAIGN="1000000/hour",
        LOG_LEVEL="INFO",
        **extra,
    )


def _reap(process: subprocess.Popen[str]) -> None:
    """Kill a process the test did not manage to stop (the ``finally`` of every test here)."""
    if process.poll() is None:
        process.kill()
        process.wait(10)


async def _wait_until_up(client: httpx.AsyncClient, server: subprocess.Popen[str]) -> float:
    """Wait (at most a minute) for ``/healthz`` to answer 200; returns that minute's deadline."""
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        try:
            if (await client.get("/healthz")).status_code == 200:
                return deadline
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server never came up"
        await asyncio.sleep(0.1)


async def test_sigterm_during_capture_load_loses_no_acknowledged_lead(
    harness: Harness, campaign: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)],
        env=_env(settings, SHUTDOWN_GRACE_SECONDS="10", WORKER_POLL_SECONDS="0.05"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    refused: list[str] = []  # 503 while stopping, or the connection refused/closed: not acknowledged
    stop_load = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            deadline = await _wait_until_up(client, server)

            async def load(n: int) -> None:
                i = 0
                while not stop_load.is_set() and i < 400:  # bounded, whatever happens
                    i += 1
                    body = example_lead(email=f"term{n}-{i}@company.com")
                    try:
                        answer = await client.post("/v1/api/leads", json=body)
                    except httpx.TransportError as exc:
                        refused.append(type(exc).__name__)
                        if server.poll() is not None:
                            return
                        await asyncio.sleep(0.01)
                        continue
                    if answer.status_code == 201:
                        acknowledged.append(answer.json()["lead_id"])
                    else:
                        refused.append(str(answer.status_code))

            clients = [asyncio.create_task(load(n)) for n in range(16)]
            while len(acknowledged) < 60:
                assert time.monotonic() < deadline, "no load got through"
                await asyncio.sleep(0.02)
            server.send_signal(signal.SIGTERM)
            await asyncio.get_running_loop().run_in_executor(None, server.wait, 60)
            stop_load.set()
            await asyncio.gather(*clients)
    finally:
        _reap(server)
    log = server.stderr.read() if server.stderr else ""
    # uvicorn re-raises the SIGTERM it handled once its shutdown is complete (so supervisors see it).
    assert server.returncode in (0, -signal.SIGTERM), log[-2000:]
    assert "Traceback" not in log
    assert (
        '"event":"stopped"' in log and "Application shutdown complete" in log
    )  # the lifespan ran to its end

    # Every acknowledged lead is stored, with its activity and its processing job.
    assert len(set(acknowledged)) == len(acknowledged)
    stored = await harness.scalar("SELECT count(*) FROM leads")
    assert stored >= len(acknowledged)
    for lead_id in acknowledged:
        row = await harness.scalar(
            "SELECT count(*) FROM leads l JOIN jobs j ON j.lead_id = l.id AND j.kind = 'lead.process' "
            "JOIN lead_activities a ON a.lead_id = l.id AND a.activity_type = 'created' WHERE l.public_id = :id",
            id=lead_id,
        )
        assert row == 1, lead_id
    # No job is left half-done: each is done (with its attempt recorded) or back in the queue unlocked.
    assert await harness.scalar("SELECT count(*) FROM jobs WHERE status = 'running'") == 0
    assert (
        await harness.scalar("SELECT count(*) FROM jobs WHERE status = 'pending' AND locked_by IS NOT NULL")
        == 0
    )
    undocumented = await harness.scalar(
        "SELECT count(*) FROM jobs j WHERE j.status = 'done' AND NOT EXISTS "
        "(SELECT 1 FROM job_attempts a WHERE a.job_id = j.id AND a.outcome = 'success')"
    )
    assert undocumented == 0
    print(f"SIGTERM under load: {len(acknowledged)} acknowledged, {stored} stored, {len(refused)} refused")


async def test_sigterm_to_a_busy_worker_gives_back_what_it_cannot_finish(
    harness: Harness, campaign: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    n = 12
    for i in range(n):
        answer = await harness.client.post("/v1/api/leads", json=example_lead(email=f"busy{i}@company.com"))
        assert answer.status_code == 201
    with FakeWebhookReceiver() as receiver:
        receiver.stall(120, count=3)  # three deliveries hang far beyond the grace period
        worker = subprocess.Popen(
            [str(BIN), "worker", "--concurrency", "8"],
            env=_env(
                settings,
                WEBHOOK_URL=receiver.url,
                WEBHOOK_SECRET=WEBHOOK_SECRET,
                SHUTDOWN_GRACE_SECONDS="1",
                WORKER_POLL_SECONDS="0.05",
            ),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while len(receiver.requests) < 3:
                assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
                assert time.monotonic() < deadline, "the worker never delivered"
                await asyncio.sleep(0.05)
            worker.send_signal(signal.SIGTERM)
            await asyncio.get_running_loop().run_in_executor(None, worker.wait, 30)
        finally:
            _reap(worker)
        log = worker.stderr.read() if worker.stderr else ""
    assert worker.returncode == 0, log[-2000:]
    assert "Traceback" not in log and '"event":"jobs_released"' in log
    assert await harness.scalar("SELECT count(*) FROM jobs WHERE status = 'running'") == 0
    # The hung deliveries are back in the queue at once: unlocked, their interrupted attempt not counted.
    released = await harness.scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'deliver' AND status = 'pending' AND locked_by IS NULL "
        "AND locked_until IS NULL AND attempts = 0"
    )
    assert released >= 3
    assert await harness.scalar("SELECT count(*) FROM jobs WHERE status = 'dead'") == 0


async def test_no_grace_means_no_wait_for_a_stalled_request(
    backend: str, harness: Harness, campaign: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    """SHUTDOWN_GRACE_SECONDS=0: SIGTERM does not wait for a request whose body never comes (it was
    passed to uvicorn as "no limit", so such a client held the server up for ever)."""
    if backend != "sqlite":
        pytest.skip("the server's shutdown does not depend on the database")
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port), "--no-worker"],
        env=_env(settings, SHUTDOWN_GRACE_SECONDS="0"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stalled: socket.socket | None = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await _wait_until_up(client, server)
            stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
            stalled.sendall(
                b"POST /v1/api/leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"campaign_id":'
            )
            # Another request answered after it: the server has read the stalled one's head by now.
            assert (await client.get("/healthz")).status_code == 200
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.get_running_loop().run_in_executor(None, server.wait, 30)
        except subprocess.TimeoutExpired:
            pytest.fail("the server waited for the stalled request although the grace is 0")
    finally:
        if stalled is not None:
            stalled.close()
        _reap(server)
    assert server.returncode in (0, -signal.SIGTERM)
