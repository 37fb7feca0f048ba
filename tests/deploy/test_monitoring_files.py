"""deploy/prometheus (rules, promtool unit tests) and deploy/grafana (dashboard) against the code.

``promtool`` comes from Debian's ``prometheus`` package (.ci/run installs it): these tests skip
without it, and fail without it when CI is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Harness

RULES = REPO / "deploy" / "prometheus" / "leadflow-rules.yml"
RULE_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = REPO / "deploy" / "grafana" / "leadflow-dashboard.json"
NAME = re.compile(r"\b(leadflow_[a-z0-9_]+|leadflow:[a-z0-9_:]+)")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed but CI is set (apt-get install prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    return found


def run(*args: str) -> str:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in data["panels"] for t in panel.get("targets", [])]


# --- rules ------------------------------------------------------------------------------------------------
def test_rules_are_valid() -> None:
    assert "SUCCESS" in run("check", "rules", str(RULES))


@pytest.mark.parametrize("path", RULE_TESTS, ids=[p.name for p in RULE_TESTS])
def test_rules_pass_their_unit_tests(path: Path) -> None:
    assert "SUCCESS" in run("test", "rules", str(path))


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    # The spec's four conditions, plus backlog, no worker and disk.
    assert {
        "LeadflowApiSlow",
        "LeadflowLeadProcessingFailureRate",
        "LeadflowIntegrationSyncFailed",
        "LeadflowUnusualTrafficHigh",
        "LeadflowUnusualTrafficLow",
        "LeadflowQueueBacklog",
        "LeadflowNoWorkerAlive",
        "LeadflowDiskFilling",
    } <= alerts
    assert alerts - firing == set(), "alerts never shown to fire"
    # Where a rule has no explicit silent case, its firing case carries a series that must not fire.
    implicit = {"LeadflowIntegrationRetrying", "LeadflowDbPoolSaturated", "LeadflowDiskAlmostFull"}
    assert alerts - silent - implicit == set(), "alerts never shown to stay silent"


def test_every_alert_is_documented() -> None:
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"]
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert f'id="{anchor}"' in (REPO / "docs" / "deployment.md").read_text(), anchor


# --- names against what /metrics exports ------------------------------------------------------------------
async def exported_names(harness: Harness) -> set[str]:
    text = (await harness.client.get("/metrics")).text
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        if kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    return names


async def test_rules_and_dashboard_use_exported_metrics(harness: Harness) -> None:
    exported = await exported_names(harness)
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    texts = [rule["expr"] for rule in rules()] + dashboard_exprs()
    used = {name for text in texts for name in NAME.findall(text)}
    assert used, "no metric names found"
    assert used - exported - recorded == set()
    # The dashboard shows the queue, the failure ratio, capture outcomes and traffic vs usual.
    dashboard = " ".join(dashboard_exprs())
    for name in (
        "leadflow_jobs_queued",
        "leadflow:jobs_failure_ratio:rate15m",
        "leadflow_leads_captured_total",
        "leadflow:capture_requests:rate1h_same_hour_7d",
        "leadflow_leads",
        "leadflow_db_pool_connections_in_use",
    ):
        assert name in dashboard, name


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool has no "parse this" command: each expression becomes a recording rule to check."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    group = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": e.replace("$__rate_interval", "5m")}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(group))
    assert f"SUCCESS: {len(exprs)} rules found" in run("check", "rules", str(path))


def test_dashboard_is_importable_json() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] == "leadflow-overview"
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
