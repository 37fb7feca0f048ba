"""De-duplication and idempotency across API processes (issue 8, item 1).

Real ``leadflow serve`` processes on one PostgreSQL / MariaDB / SQLite database; many concurrent copies of one
submission split between them must give exactly one stored lead, while unrelated leads go through.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY, Harness, example_lead
from tests.fakes.server import free_port

BIN = Path(sys.executable).parent / "leadflow"
URL = "/v1/api/leads"
COPIES = 120  # concurrent copies of one submission, split between the processes
UNRELATED = 60  # other people's leads sent at the same time

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


@contextmanager
def api_processes(database_url: str, count: int, log_dir: Path) -> Iterator[list[str]]:
    """``count`` real ``leadflow serve`` processes on one database; yields their base URLs."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        ENCRYPTION_KEY=TEST_KEY,
        LEADFLOW_ENV="test",
        RUN_WORKER="false",
        RATE_LIMIT_PER_IP="1000000/minute",
        RATE_LIMIT_PER_CAMPAIGN="1000000/hour",
        BOT_MIN_FILL_SECONDS="0",
        CAMPAIGN_CACHE_SECONDS="0",
        GC_FREEZE="false",
    )
    env.pop("REDIS_URL", None)
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for n in range(count):
            port = free_port()
            with (log_dir / f"api-{n}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        [str(BIN), "serve", "--no-worker", "--port", str(port)],
                        env=env,
                        cwd=log_dir,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for url, process in zip(urls, processes, strict=True):
            while True:
                assert process.poll() is None, (log_dir / "api-0.log").read_text()[-2000:]
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "leadflow serve did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def _burst(
    urls: list[str], requests: list[tuple[dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    """Send every request at once, alternating between the processes."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    clients = [httpx.AsyncClient(base_url=u, timeout=60, limits=limits) for u in urls]
    try:
        return await asyncio.gather(
            *(
                clients[i % len(clients)].post(URL, json=body, headers=headers)
                for i, (body, headers) in enumerate(requests)
            )
        )
    finally:
        for client in clients:
            await client.aclose()


def _unrelated(tag: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    return [(example_lead(email=f"{tag}-{i}@other-company.com"), {}) for i in range(UNRELATED)]


def _interleave(
    a: list[tuple[dict[str, Any], dict[str, str]]], b: list[tuple[dict[str, Any], dict[str, str]]]
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    mixed: list[tuple[dict[str, Any], dict[str, str]]] = []
    for i in range(max(len(a), len(b))):
        mixed.extend(a[i : i + 1])
        mixed.extend(b[i : i + 1])
    return mixed


async def test_one_person_split_across_processes_is_stored_once(
    harness: Harness, campaign: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    same = [(example_lead(email="burst.person@company-one.com"), {}) for _ in range(COPIES)]
    requests = _interleave(same, _unrelated("unrelated"))
    with api_processes(database_url, 2, tmp_path) as urls:
        for round_ in range(2):  # a second burst of the same person: all duplicates of the first lead
            responses = await asyncio.to_thread(lambda: asyncio.run(_burst(urls, requests)))
            by_email: dict[str, list[httpx.Response]] = {}
            for (body, _), response in zip(requests, responses, strict=True):
                by_email.setdefault(body["contact"]["email"], []).append(response)
            burst = by_email.pop("burst.person@company-one.com")
            codes = Counter(r.status_code for r in burst)
            assert codes == ({201: 1, 409: COPIES - 1} if round_ == 0 else {409: COPIES}), codes
            if round_ == 0:
                lead_id = next(r.json()["lead_id"] for r in burst if r.status_code == 201)
            conflicts = [r.json() for r in burst if r.status_code == 409]
            assert {c["error"] for c in conflicts} == {"DUPLICATE_SUBMISSION"}
            assert {c["lead_id"] for c in conflicts} == {lead_id}
            # Unrelated people went through meanwhile (first burst), or are duplicates of themselves.
            expected = 201 if round_ == 0 else 409
            assert {r[0].status_code for r in by_email.values()} == {expected}
    count = await harness.scalar(
        "SELECT count(*) FROM leads WHERE public_id = :p OR email_hash = "
        "(SELECT email_hash FROM leads WHERE public_id = :p)",
        p=lead_id,
    )
    assert count == 1
    assert await harness.scalar("SELECT count(*) FROM leads") == 1 + UNRELATED
    # Every duplicate is recorded on the one lead.
    duplicates = await harness.scalar(
        "SELECT count(*) FROM lead_activities a JOIN leads l ON l.id = a.lead_id "
        "WHERE l.public_id = :p AND a.activity_type = 'duplicate_submission'",
        p=lead_id,
    )
    assert duplicates == 2 * COPIES - 1
    logs = "".join(p.read_text() for p in tmp_path.glob("api-*.log"))
    assert "burst.person@company-one.com" not in logs


async def test_one_idempotency_key_with_different_bodies_is_stored_once(
    harness: Harness, campaign: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    key = {"Idempotency-Key": "form-submit-7f3a"}
    keyed = [(example_lead(email=f"keyed-{i}@company-two.com"), key) for i in range(COPIES)]
    requests = _interleave(keyed, _unrelated("meanwhile"))
    with api_processes(database_url, 2, tmp_path) as urls:
        responses = await asyncio.to_thread(lambda: asyncio.run(_burst(urls, requests)))
    keyed_responses = [r for (_, h), r in zip(requests, responses, strict=True) if h]
    other = [r for (_, h), r in zip(requests, responses, strict=True) if not h]
    codes = Counter(r.status_code for r in keyed_responses)
    assert codes == {201: 1, 409: COPIES - 1}, codes
    assert {r.json()["error"] for r in keyed_responses if r.status_code == 409} == {"IDEMPOTENCY_KEY_REUSED"}
    assert {r.status_code for r in other} == {201}
    winner = next(r.json()["lead_id"] for r in keyed_responses if r.status_code == 201)
    stored = await harness.scalar(
        "SELECT count(*) FROM leads WHERE idempotency_key = :k AND public_id = :p",
        k=key["Idempotency-Key"],
        p=winner,
    )
    assert stored == 1
    assert await harness.scalar("SELECT count(*) FROM leads") == 1 + UNRELATED
