"""`leadflow serve --workers N`: several API processes on one port (PostgreSQL/MySQL), refused on SQLite."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from leadflow.cli import app
from tests.conftest import TEST_KEY, Harness, example_lead
from tests.fakes.server import free_port
from tests.fakes.smtp import self_signed

BIN = Path(sys.executable).parent / "leadflow"


def test_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite",
        "ENCRYPTION_KEY": TEST_KEY,
        "LEADFLOW_ENV": "test",
    }
    result = CliRunner().invoke(app, ["serve", "--workers", "2", "--port", "1"], env=env)
    assert result.exit_code == 2
    assert "--workers needs PostgreSQL or MySQL" in result.output


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_two_worker_processes_keep_tls13_and_json_logs(
    harness: Harness, campaign: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        ENCRYPTION_KEY=TEST_KEY,
        LEADFLOW_ENV="test",
        BOT_MIN_FILL_SECONDS="0",
        GC_FREEZE="false",
    )
    env.pop("REDIS_URL", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [
                str(BIN),
                "serve",
                "--workers",
                "2",
                "--no-worker",
                "--port",
                str(port),
                "--ssl-certfile",
                str(cert),
                "--ssl-keyfile",
                str(key),
            ],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    tls13 = ssl.create_default_context(cafile=str(cert))
    tls12 = ssl.create_default_context(cafile=str(cert))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    base = f"https://localhost:{port}"
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text().count('"event":"started"') < 2:
            assert server.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker processes did not start"
            time.sleep(0.2)
        async with httpx.AsyncClient(base_url=base, verify=tls13, timeout=30) as client:
            for i in range(10):
                response = await client.post(
                    "/v1/api/leads", json=example_lead(email=f"workers{i}@acme-co.com")
                )
                assert response.status_code == 201, response.text
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", verify=tls12, timeout=5)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    assert await harness.scalar("SELECT count(*) FROM leads") == 10
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is JSON, in the parent and the children
    started = [e for e in events if e.get("event") == "started"]
    assert len(started) == 2 and {e["database"] for e in started} == {"postgresql"}
    assert any(e.get("event") == "request" for e in events)
