"""A worker killed with SIGKILL mid-delivery: its heartbeat-renewed lease runs out within one lease,
another worker finishes every job, and each delivery takes effect exactly once at the receiver
(HubSpot upserts by e-mail)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from leadflow.config import Settings
from tests.conftest import TEST_KEY, Harness, example_lead
from tests.fakes.hubspot import TOKEN as HUBSPOT_TOKEN
from tests.fakes.hubspot import FakeHubSpot

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
BIN = Path(sys.executable).parent / "leadflow"


def _plain_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername=parsed.drivername.split("+")[0]).render_as_string(hide_password=False)


async def test_killed_worker_loses_its_lease_and_jobs_finish_exactly_once(
    harness: Harness, campaign: dict[str, object], settings: Settings, tmp_path: Path
) -> None:
    n = 5
    for i in range(n):
        assert (
            await harness.client.post("/v1/api/leads", json=example_lead(email=f"crash{i}@company.com"))
        ).status_code == 201

    with FakeHubSpot() as hubspot:
        hubspot.stall(60)  # the first HubSpot call hangs: the worker is killed in the middle of it
        env = dict(
            os.environ,
            DATABASE_URL=_plain_url(settings.database_url),
            ENCRYPTION_KEY=TEST_KEY,
            HUBSPOT_API_KEY=HUBSPOT_TOKEN,
            HUBSPOT_BASE_URL=hubspot.base_url,
            WORKER_POLL_SECONDS="0.05",
            LOG_LEVEL="WARNING",
        )
        lease = 3.0
        first = subprocess.Popen(
            [str(BIN), "worker", "--lease", str(lease), "--concurrency", "1"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not hubspot.requests:
                assert first.poll() is None, "the worker exited early"
                assert time.monotonic() < deadline, "the worker never called HubSpot"
                await asyncio.sleep(0.05)
            # The heartbeat renews the lease while HubSpot hangs: it stays held past its first expiry.
            first_lease = _utc(await harness.scalar("SELECT locked_until FROM jobs WHERE status = 'running'"))
            await asyncio.sleep(lease * 1.5)
            renewed = _utc(await harness.scalar("SELECT locked_until FROM jobs WHERE status = 'running'"))
            assert renewed > first_lease
            assert await harness.scalar("SELECT count(*) FROM jobs WHERE status = 'running'") == 1
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        killed_at = datetime.now(UTC)
        killed_job = await harness.scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
        assert killed_job == 1  # the stalled delivery, still leased to the dead worker
        # The lease a dead worker leaves behind ends within one lease (+ a heartbeat's jitter): the
        # spec's 30 s recovery holds by configuration, whatever the machine's speed.
        expires = _utc(await harness.scalar("SELECT locked_until FROM jobs WHERE status = 'running'"))
        assert (expires - killed_at).total_seconds() <= lease + 0.5

        second = subprocess.Popen(
            [str(BIN), "worker", "--lease", str(lease)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                open_jobs = await harness.scalar(
                    "SELECT count(*) FROM jobs WHERE kind IN ('lead.process', 'deliver') AND status <> 'done'"
                )
                if open_jobs == 0:
                    break
                assert time.monotonic() < deadline, f"{open_jobs} jobs never finished"
                await asyncio.sleep(0.1)
        finally:
            second.terminate()
            second.wait(20)

    assert await harness.scalar("SELECT count(*) FROM jobs WHERE kind = 'deliver' AND status = 'done'") == n
    retaken = await harness.scalar("SELECT max(attempts) FROM jobs WHERE kind = 'deliver'")
    assert retaken == 2  # the stalled one was tried again after its lease expired
    assert sorted(hubspot.contacts) == [f"crash{i}@company.com" for i in range(n)]  # one contact each
    assert second.returncode in (0, -signal.SIGTERM)
    # Takeover measured: when the second worker started the stalled job's second attempt.
    retaken_at = _utc(
        await harness.scalar("SELECT started_at FROM job_attempts WHERE attempt = 2 AND outcome = 'success'")
    )
    takeover = (retaken_at - killed_at).total_seconds()
    print(f"takeover after SIGKILL: {takeover:.2f} s (lease {lease} s)")
    assert takeover < 30


def _utc(value: object) -> datetime:
    if isinstance(value, str):  # SQLite through text(): the stored 'YYYY-MM-DD HH:MM:SS.ffffff'
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
