"""A real Prometheus scrapes a running Leadflow: two API processes sharing one multiprocess directory
(as processes behind one port would), a worker with METRICS_PORT, our rules file loaded.

Prometheus is Debian's binary on its own free port with a temporary config and data directory; the
test asks its HTTP API. Skips without the binary, fails without it when CI is set.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO, TEST_KEY, Harness, example_lead

LEADFLOW = str(Path(sys.executable).parent / "leadflow")


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed but CI is set (apt-get install prometheus)")
        pytest.skip("prometheus not installed (Debian package prometheus)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached within {seconds} s (last: {last!r})")


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.logs)
        self.running.append((name, process))

    def tails(self) -> str:
        return "\n".join(
            f"--- {name}\n" + (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
            for name, _ in self.running
        )

    def stop(self) -> None:
        for _, process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.running:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def test_prometheus_scrapes_api_processes_and_worker(
    harness: Harness, tmp_path: Path, processes: Processes
) -> None:
    prometheus = prometheus_binary()
    created = await harness.client.post(
        "/v1/api/campaigns",
        headers=await harness.token("admin"),
        json={
            "id": "nextcloud-installation-2025",
            "name": "Nextcloud Installation 2025",
            "campaign_type": "service",
            "services": ["Nextcloud Installation"],
        },
    )
    assert created.status_code == 201
    monitoring = await harness.token("monitoring")

    multiproc = tmp_path / "metrics-api"
    multiproc.mkdir()
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": harness.settings.database_url,
        "ENCRYPTION_KEY": TEST_KEY,
        "LEADFLOW_ENV": "test",
        "GC_FREEZE": "false",
        "CAMPAIGN_CACHE_SECONDS": "0",
        "METRICS_DB_REFRESH_SECONDS": "0",
        "METRICS_LEADS_REFRESH_SECONDS": "0",
        "WORKER_POLL_SECONDS": "0.1",
        "LOG_LEVEL": "WARNING",
    }
    api_env = base | {"PROMETHEUS_MULTIPROC_DIR": str(multiproc), "RUN_WORKER": "false"}
    ports = {"a": free_port(), "b": free_port(), "worker": free_port(), "prometheus": free_port()}
    for name in ("a", "b"):
        processes.start(
            f"api-{name}", [LEADFLOW, "serve", "--no-worker", "--port", str(ports[name])], api_env
        )
    processes.start("worker", [LEADFLOW, "worker"], base | {"METRICS_PORT": str(ports["worker"])})

    client = httpx.Client(timeout=5)
    try:
        for name in ("a", "b"):
            url = f"http://127.0.0.1:{ports[name]}/healthz"
            wait_for(lambda url=url: client.get(url).status_code == 200, 60, f"api {name} up")
        worker_metrics = f"http://127.0.0.1:{ports['worker']}/metrics"
        wait_for(lambda: client.get(worker_metrics).status_code == 200, 60, "worker metrics up")
        # One capture through each API process.
        for name, email in (("a", "scrape.a@company.com"), ("b", "scrape.b@company.com")):
            answer = client.post(
                f"http://127.0.0.1:{ports[name]}/v1/api/leads", json=example_lead(email=email)
            )
            assert answer.status_code == 201, answer.text

        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(REPO / "deploy" / "prometheus" / "leadflow-rules.yml")],
            "scrape_configs": [
                {  # only process A is scraped: it answers for B too (shared multiprocess directory)
                    "job_name": "leadflow-api",
                    "authorization": {"credentials": monitoring["Authorization"].split(" ", 1)[1]},
                    "static_configs": [{"targets": [f"127.0.0.1:{ports['a']}"]}],
                },
                {
                    "job_name": "leadflow-worker",
                    "static_configs": [{"targets": [f"127.0.0.1:{ports['worker']}"]}],
                },
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        processes.start(
            "prometheus",
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--storage.tsdb.retention.time=1h",
            ],
            {"PATH": base["PATH"]},
        )
        api = f"http://127.0.0.1:{ports['prometheus']}/api/v1"

        def query(expr: str) -> list[dict[str, Any]]:
            data = client.get(f"{api}/query", params={"query": expr}).json()
            assert data["status"] == "success", data
            result: list[dict[str, Any]] = data["data"]["result"]
            return result

        def scalar(expr: str) -> float | None:
            result = query(expr)
            return float(result[0]["value"][1]) if result else None

        # Both targets up (the API one through the monitoring token).
        wait_for(lambda: scalar('sum(up{job=~"leadflow-.*"})') == 2, 60, "both targets up")
        # Both captures, seen through process A alone.
        wait_for(
            lambda: scalar('sum(leadflow_leads_captured_total{outcome="created"})') == 2, 60, "two captures"
        )
        # The worker processed both leads and says so on its own endpoint.
        wait_for(
            lambda: (
                scalar(
                    'sum(leadflow_jobs_finished_total{job="leadflow-worker", kind="lead.process", outcome="success"})'
                )
                == 2
            ),
            60,
            "two leads processed",
        )
        # Shared state read from the database, the same on both targets.
        wait_for(
            lambda: scalar('max(leadflow_leads{campaign="nextcloud-installation-2025"})') == 2, 30, "leads"
        )
        assert (scalar("max(leadflow_jobs_last_attempt_timestamp_seconds)") or 0) > time.time() - 600
        assert len(query("leadflow_database_up == 1")) == 2
        # Request metrics by route template, from both API processes.
        assert scalar('sum(leadflow_http_requests_total{route="/v1/api/leads", status="201"})') == 2
        # Our rules are loaded and healthy.
        rules = client.get(f"{api}/rules").json()["data"]["groups"]
        loaded = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
        assert {"LeadflowApiSlow", "LeadflowNoWorkerAlive", "LeadflowQueueBacklog"} <= set(loaded)

        def healthy() -> bool:
            groups = client.get(f"{api}/rules").json()["data"]["groups"]
            return all(rule["health"] == "ok" for group in groups for rule in group["rules"])

        wait_for(healthy, 30, "rules evaluated")
        # A worker is alive: no "no worker" alert.
        firing = {a["labels"]["alertname"] for a in client.get(f"{api}/alerts").json()["data"]["alerts"]}
        assert "LeadflowNoWorkerAlive" not in firing
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{processes.tails()}") from None
    finally:
        client.close()
