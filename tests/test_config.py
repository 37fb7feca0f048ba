"""Settings: database URLs people write, key handling."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from leadflow.config import ConfigError, Settings, decode_key, is_weak_key, normalise_database_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///var/leadflow.db", "sqlite+aiosqlite:///var/leadflow.db"),
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("mysql://user:pass@host:3306/db", "mysql+asyncmy://user:pass@host:3306/db"),
        ("mariadb://user@host/db", "mysql+asyncmy://user@host/db"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db"),
    ],
)
def test_database_urls(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


@pytest.mark.parametrize("bad", ["oracle://x/y", "just-a-path.db", ""])
def test_unsupported_database_urls(bad: str) -> None:
    with pytest.raises(ConfigError):
        normalise_database_url(bad)


def test_key_decoding() -> None:
    good = base64.b64encode(bytes(range(32))).decode()
    assert decode_key(good) == bytes(range(32))
    for bad in ("32-byte-secret-key", base64.b64encode(b"short").decode(), "!!!"):
        with pytest.raises(ConfigError):
            decode_key(bad)
    assert is_weak_key(b"\x00" * 32)
    assert not is_weak_key(bytes(range(32)))


def test_lists_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SERVICE_CATALOG", "Cloud Backup, VoIP Setup")
    monkeypatch.setenv("QUALIFYING_GRADES", "a")
    monkeypatch.setenv("DATABASE_URL", "mysql://root@127.0.0.1/test")
    settings = Settings()
    assert settings.service_catalog == ["Cloud Backup", "VoIP Setup"]
    assert settings.qualifying_grades == ["A"]
    assert settings.database_url == "mysql+asyncmy://root@127.0.0.1/test"


def test_key_file_is_used_in_development(tmp_path: Path) -> None:
    settings = Settings(encryption_key_file=tmp_path / "k.key")
    with pytest.raises(ConfigError):
        _ = settings.encryption_keys
    assert settings.ensure_key_file()
    assert len(Settings(encryption_key_file=tmp_path / "k.key").encryption_keys[0]) == 32


async def test_start_up_objects_are_frozen_out_of_full_collections(settings_factory: Any) -> None:
    import gc

    from leadflow.app import create_app

    thresholds = gc.get_threshold()
    app = create_app(settings_factory(gc_freeze=True, gc_young_threshold=12_345))
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == (12_345, 20, 50)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_serve_sets_the_gil_switch_interval(settings_factory: Any) -> None:
    import sys

    from leadflow.app import create_app

    interval = sys.getswitchinterval()
    app = create_app(settings_factory(gil_switch_interval_ms=0.5))
    try:
        async with app.router.lifespan_context(app):
            assert sys.getswitchinterval() == 0.0005
    finally:
        sys.setswitchinterval(interval)
    assert Settings().gil_switch_interval_ms == 0  # the default: Python's


def test_switch_interval_zero_keeps_pythons() -> None:
    import sys

    from leadflow.kit.process import settle_threads

    interval = sys.getswitchinterval()
    settle_threads(switch_interval_ms=0)
    assert sys.getswitchinterval() == interval


def test_gc_threshold_zero_keeps_pythons() -> None:
    import gc

    from leadflow.kit.process import settle_gc

    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    settle_gc(freeze=False, young_threshold=0)
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == frozen


async def test_database_pool_budget_fits_two_api_and_two_worker_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each process holds at most DB_POOL_SIZE + DB_MAX_OVERFLOW connections (issue 8, item 4)."""
    from leadflow.db import create_engine

    key = base64.b64encode(bytes(range(32))).decode()
    defaults = Settings(database_url="postgresql://bench@127.0.0.1:1/none", encryption_key=key)
    engine = create_engine(defaults)  # nothing connects until a query runs
    try:
        pool: Any = engine.pool
        per_process = pool.size() + pool._max_overflow
        assert per_process == defaults.db_pool_size + defaults.db_max_overflow == 20
        assert 4 * per_process <= 80  # 2 API + 2 workers, headroom in PostgreSQL's default 100
    finally:
        await engine.dispose()
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "2.5")
    small = Settings(database_url="mysql://bench@127.0.0.1:1/none", encryption_key=key)
    engine = create_engine(small)
    try:
        pool = engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 0, 2.5)
    finally:
        await engine.dispose()


def test_connector_groups_read_the_spec_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_API_KEY", "pat-1")
    monkeypatch.setenv("SMTP_FROM", "Leads <leads@example.com>")
    monkeypatch.setenv("SMTP_PORT", "2525")
    monkeypatch.setenv("SENDGRID_LIST_IDS", "list-1, list-2")
    monkeypatch.setenv("SMS_ALERT_TO", "+15550100")
    monkeypatch.setenv("EMAIL_TRANSPORT", "sendgrid")
    monkeypatch.setenv("SEQUENCE_ENABLED", "false")
    settings = Settings()
    assert settings.hubspot.api_key is not None and settings.hubspot.api_key.get_secret_value() == "pat-1"
    assert settings.hubspot.base_url == "https://api.hubapi.com"  # documented default kept
    assert (settings.smtp.sender, settings.smtp.port) == ("Leads <leads@example.com>", 2525)
    assert settings.sendgrid.list_ids == ("list-1", "list-2")
    assert settings.sms.alert_to == "+15550100"
    assert settings.email.transport == "sendgrid"
    assert settings.sequence.enabled is False
    assert "pat-1" not in repr(settings)  # secrets stay SecretStr


def test_flat_names_given_in_code_fill_the_groups_and_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "from-env")
    monkeypatch.setenv("SALESFORCE_API_VERSION", "v61.0")
    settings = Settings(salesforce_client_id="from-code", smtp_from="a@example.com", webhook_url="https://h")
    assert settings.salesforce.client_id == "from-code"
    assert settings.salesforce.api_version == "v61.0"  # the rest of the group still comes from the env
    assert settings.smtp.sender == "a@example.com"
    assert settings.webhook.url == "https://h"


def test_every_variable_name_is_kept() -> None:
    names = Settings.env_names()
    assert len(names) == len(set(names))
    for name in (
        "SLACK_WEBHOOK_URL",
        "TEAMS_WEBHOOK_URL",
        "SMTP_FROM",
        "SMTP_USE_TLS",
        "TWILIO_FROM_NUMBER",
        "SALESFORCE_TOKEN_URL",
        "MAILCHIMP_LIST_ID",
        "GA4_API_SECRET",
        "WEBHOOK_SECRET",
        "DATABASE_URL",
        "HTTP_TIMEOUT_SECONDS",
        "ALERT_SLACK_WEBHOOK_URL",
    ):
        assert name in names


def test_a_connector_is_built_from_its_group() -> None:
    from leadflow.integrations.hubspot import HubSpotConnector
    from leadflow.integrations.slack import SlackConnector

    settings = Settings(hubspot_api_key="pat", slack_webhook_url=" ")
    assert HubSpotConnector(settings).config is settings.hubspot
    assert HubSpotConnector(settings).configured()
    assert not SlackConnector(settings).configured()  # a blank secret is no credential
