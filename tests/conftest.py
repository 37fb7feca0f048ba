"""Fixtures: a migrated database per test (SQLite by default; PostgreSQL/MySQL when configured)."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from leadflow.app import create_app
from leadflow.config import Settings, normalise_database_url
from leadflow.kit.state import state_of
from leadflow.leads.schemas import CaptureRequest
from leadflow.migrations.runner import upgrade_async
from leadflow.security.tokens import create_token

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
TEST_KEY = base64.b64encode(bytes(range(32))).decode()
TABLES = (
    "password_resets",
    "sessions",
    "users",
    "lead_activities",
    "job_attempts",
    "jobs",
    "leads",
    "campaigns",
    "api_tokens",
    "routing_rules",
    "team_members",
    "audit_log",
    "privacy_tombstones",
    "maintenance_state",
    "analytics_days",
    "analytics_state",
    "consent_events",
    "unsubscribe_uses",
    "alert_state",
    "capture_claims",
)

# The spec's example request, as documented in the capture endpoint's OpenAPI example.
EXAMPLE_LEAD: dict[str, Any] = CaptureRequest.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]


# Every e-mail address and phone number the suite submits; no log line may ever contain one.
SUBMITTED_PII: set[str] = {"john.doe@company.com", "+1-555-123-4567", "+15551234567"}


def example_lead(**contact: Any) -> dict[str, Any]:
    """The spec's example request, with contact fields overridden."""
    body = copy.deepcopy(EXAMPLE_LEAD)
    body["contact"].update(contact)
    for key in ("email", "phone"):
        value = body["contact"].get(key)
        if isinstance(value, str) and len(value) > 5:
            SUBMITTED_PII.add(value)
            SUBMITTED_PII.add(value.lower())
    return body


class _RecordAll(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The raw record, before any redaction: what the code tried to log.
        self.lines.append(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}")


@pytest.fixture(scope="session", autouse=True)
def no_personal_data_in_logs() -> Iterator[None]:
    """Across the whole suite, no submitted e-mail address or phone number reaches a log record."""
    from leadflow.observability.logging import configure_logging

    configure_logging("DEBUG", io.StringIO())
    recorder = _RecordAll()
    root = logging.getLogger()
    root.addHandler(recorder)
    yield
    root.removeHandler(recorder)
    leaked = sorted({pii for pii in SUBMITTED_PII for line in recorder.lines if pii in line})
    assert not leaked, f"personal data in {len(recorder.lines)} log records: {leaked[:5]}"


def shared_dir() -> Path:
    return Path(os.environ.get("LEADFLOW_SHARED_DIR", REPO.parent / "shared")).resolve()


@pytest.fixture
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path} (set LEADFLOW_SHARED_DIR)")
    return path


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even while an event loop runs in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _server_url(env: str) -> str | None:
    """A backend URL from the environment; in CI a missing one is an error, not a skip."""
    url = os.environ.get(env)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{env} is not set but CI is: the backend suites must run in CI")
        pytest.skip(f"{env} not set")
    return url


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(normalise_database_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@dataclass
class ServerDb:
    url: str  # async SQLAlchemy URL of a fresh, migrated database for this test session


def _fresh_database(env: str) -> Iterator[ServerDb]:
    base = normalise_database_url(_server_url(env) or "")
    name = f"leadflow_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        run_async(_admin(base, f"CREATE DATABASE {name}"))
    except Exception as exc:  # the server is configured but not reachable
        pytest.fail(f"{env} is set but the server is not usable: {type(exc).__name__}: {exc}")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    run_async(upgrade_async(url))
    try:
        yield ServerDb(url)
    finally:
        run_async(_admin(base, f"DROP DATABASE {name}"))


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[ServerDb]:
    yield from _fresh_database("LEADFLOW_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def mysql_db() -> Iterator[ServerDb]:
    yield from _fresh_database("LEADFLOW_TEST_MYSQL_URL")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session; each test gets a copy (schema from Alembic, not create_all)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    run_async(upgrade_async(f"sqlite+aiosqlite:///{path}"))
    return path


async def _truncate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in TABLES:
                await conn.execute(text(f"DELETE FROM {table}"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database a test runs on; override with parametrize(..., indirect=True)."""
    return str(request.param)


@pytest.fixture
async def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "leadflow.db"
        shutil.copy(template, target)
        return f"sqlite+aiosqlite:///{target}"
    server: ServerDb = request.getfixturevalue(f"{backend}_db")
    await _truncate(server.url)
    return server.url


@pytest.fixture
def settings_factory(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "encryption_key": TEST_KEY,
            "leadflow_env": "test",
            "encryption_key_file": tmp_path / "unused.key",
            "campaign_cache_seconds": 0.0,
            "analytics_cache_seconds": 0.0,
            "run_worker": False,
            "rate_limit_per_ip": "100000/minute",
            "lockout_threshold": 100000,
            "gc_freeze": False,  # hundreds of app start-ups: no full collection + freeze each time
            "gc_young_threshold": 0,  # and the test process keeps Python's collection thresholds
            "gil_switch_interval_ms": 0,  # and its switch interval
            "capture_writer_process": False,  # no child process per app start-up (tests of it opt in)
            "capture_spool_dir": tmp_path / "spool",  # PostgreSQL/MySQL runs: never the repo's var/
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@dataclass
class Harness:
    """A running app with an HTTP client and direct database access."""

    app: Any
    client: httpx.AsyncClient
    engine: AsyncEngine
    settings: Settings

    async def token(self, role: str, subject: str | None = None) -> dict[str, str]:
        async with self.engine.begin() as conn:
            created = await create_token(conn, name=f"test-{role}", role=role, subject=subject)
        return {"Authorization": f"Bearer {created.token}"}

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(sql), params)


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app, client, state_of(app).engine, settings)


@pytest.fixture
async def client(harness: Harness) -> httpx.AsyncClient:
    return harness.client


@pytest.fixture
async def admin(harness: Harness) -> dict[str, str]:
    return await harness.token("admin")


@pytest.fixture
async def campaign(harness: Harness, admin: dict[str, str]) -> dict[str, Any]:
    """The spec's campaign, active, with its service in the catalog."""
    response = await harness.client.post(
        "/v1/api/campaigns",
        headers=admin,
        json={
            "id": "nextcloud-installation-2025",
            "name": "Nextcloud Installation 2025",
            "campaign_type": "service",
            "budget": 1147.5,
            "services": ["Nextcloud Installation"],
        },
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data
