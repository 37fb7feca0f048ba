"""Settings, read from the environment with the spec's variable names."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SERVICE_CATALOG = [
    "Nextcloud Installation",
    "Managed IT Services",
    "Cloud Migration",
    "Cybersecurity Assessment",
    "Network Setup",
    "Data Backup & Recovery",
    "Microsoft 365 Setup",
    "IT Consulting",
    "Help Desk Support",
]


REPORT_PERIODS: tuple[Literal["daily", "weekly"], ...] = ("daily", "weekly")


class ConfigError(RuntimeError):
    """The configuration cannot be used (missing or weak key, bad database URL...)."""


def normalise_database_url(url: str) -> str:
    """Turn the plain URLs people write into SQLAlchemy async URLs.

    ``sqlite:///var/leadflow.db`` -> ``sqlite+aiosqlite:///var/leadflow.db``,
    ``postgres://`` / ``postgresql://`` -> ``postgresql+asyncpg://``,
    ``mysql://`` / ``mariadb://`` -> ``mysql+asyncmy://``. A URL that already names a driver is kept.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError("DATABASE_URL must look like sqlite:///path, postgresql://... or mysql://...")
    base, _, driver = scheme.partition("+")
    base = base.lower()
    if base in ("postgres", "postgresql"):
        return f"postgresql+{driver or 'asyncpg'}://{rest}"
    if base in ("mysql", "mariadb"):
        return f"mysql+{driver or 'asyncmy'}://{rest}"
    if base == "sqlite":
        return f"sqlite+{driver or 'aiosqlite'}://{rest}"
    raise ConfigError(f"unsupported database scheme {base!r} (use sqlite, postgresql or mysql)")


def decode_key(value: str, name: str = "ENCRYPTION_KEY") -> bytes:
    """Decode a 32-byte key written in standard base64; refuse anything else."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{name} must be 32 random bytes in standard base64") from exc
    if len(raw) != 32:
        raise ConfigError(f"{name} must decode to exactly 32 bytes (got {len(raw)})")
    return raw


def is_weak_key(raw: bytes) -> bool:
    """A key that cannot have come from a random generator (repeated or few distinct bytes)."""
    return len(set(raw)) < 12


def generate_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class KeyFile:
    """The development key file: the primary key on its first line, then ``old=`` and ``blind=`` lines."""

    keys: list[bytes]
    blind: bytes | None

    @classmethod
    def parse(cls, text: str, name: str) -> KeyFile:
        primary: bytes | None = None
        old: list[bytes] = []
        blind: bytes | None = None
        for line in (raw.strip() for raw in text.splitlines()):
            if not line or line.startswith("#"):
                continue
            if line.startswith("old="):
                old.append(decode_key(line[4:], name))
            elif line.startswith("blind="):
                blind = decode_key(line[6:], name)
            elif primary is None:
                primary = decode_key(line, name)
        if primary is None:
            raise ConfigError(f"{name} holds no key")
        return cls([primary, *old], blind)

    def render(self) -> str:
        lines = [base64.b64encode(self.keys[0]).decode()]
        lines += [f"old={base64.b64encode(k).decode()}" for k in self.keys[1:]]
        if self.blind is not None:
            lines.append(f"blind={base64.b64encode(self.blind).decode()}")
        return "\n".join(lines) + "\n"


def split_csv(value: object) -> object:
    """``"a, b,,c"`` from the environment -> ``["a", "b", "c"]``; anything else unchanged."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def secret_text(value: SecretStr | None) -> str | None:
    """The secret without surrounding blanks, or None when it is unset or blank (a connector is off)."""
    if value is None:
        return None
    return value.get_secret_value().strip() or None


def text(value: str | None) -> str | None:
    """The value without surrounding blanks, or None when it is unset or blank."""
    if value is None:
        return None
    return value.strip() or None


# --- connector settings groups --------------------------------------------------------------------
# Each group is one environment-variable prefix: ``Settings.<group>.<field>`` is read from
# ``<GROUP>_<FIELD>`` (or the field's alias), so the spec's names are kept. A connector is built from
# its group(s) as they are; secrets are ``SecretStr``.


class SettingsGroup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True)


class ChatWebhookSettings(SettingsGroup):
    """An incoming-webhook URL (SLACK_WEBHOOK_URL, TEAMS_WEBHOOK_URL): it is the credential."""

    webhook_url: SecretStr | None = None


class SmtpSettings(SettingsGroup):
    host: str | None = None
    port: int = 587
    user: str | None = None
    password: SecretStr | None = None
    sender: str = Field("noreply@nexlink.website", alias="from")  # SMTP_FROM
    starttls: bool = True
    use_tls: bool = False


class EmailSettings(SettingsGroup):
    transport: Literal["smtp", "sendgrid"] = "smtp"  # EMAIL_TRANSPORT


class TwilioSettings(SettingsGroup):
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    from_number: str | None = None
    base_url: str = "https://api.twilio.com"


class SmsSettings(SettingsGroup):
    alert_to: str | None = None  # SMS_ALERT_TO: number texted when the assignee has no phone


class HubSpotSettings(SettingsGroup):
    api_key: SecretStr | None = None
    base_url: str = "https://api.hubapi.com"


class SalesforceSettings(SettingsGroup):
    instance_url: str | None = None
    token_url: str = "https://login.salesforce.com/services/oauth2/token"  # noqa: S105
    client_id: str | None = None
    client_secret: SecretStr | None = None
    api_version: str = "v60.0"


class MailchimpSettings(SettingsGroup):
    api_key: SecretStr | None = None
    list_id: str | None = None
    base_url: str | None = None  # default: https://<dc>.api.mailchimp.com from the key


class SendGridSettings(SettingsGroup):
    api_key: SecretStr | None = None
    base_url: str = "https://api.sendgrid.com"
    list_ids: Annotated[tuple[str, ...], NoDecode] = ()

    _csv = field_validator("list_ids", mode="before")(split_csv)


class Ga4Settings(SettingsGroup):
    measurement_id: str | None = None
    api_secret: SecretStr | None = None
    base_url: str = "https://www.google-analytics.com"


class WebhookSettings(SettingsGroup):
    url: str | None = None
    secret: SecretStr | None = None


class SequenceSettings(SettingsGroup):
    enabled: bool = True  # SEQUENCE_ENABLED: automated e-mail sequence to consenting leads


class Settings(BaseSettings):
    # Groups read their flat variables: with "_" as the nesting delimiter split once, HUBSPOT_API_KEY
    # fills ``hubspot.api_key`` (the spec's names stay; no double underscore).
    model_config = SettingsConfigDict(
        env_file=None,
        extra="ignore",
        case_sensitive=False,
        env_nested_delimiter="_",
        env_nested_max_split=1,
    )

    leadflow_env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///var/leadflow.db"
    redis_url: str | None = None
    # Redis client pool (rate-limit and lock-out counters): bounded; a request waits up to the timeout
    # for a free connection. When Redis is unreachable or slow, counters fall back to this process.
    redis_pool_size: int = Field(32, ge=1, le=1000)
    redis_pool_timeout_seconds: float = Field(0.5, gt=0, le=30)
    redis_socket_timeout_seconds: float = Field(0.5, gt=0, le=30)
    redis_retry_seconds: float = Field(5.0, ge=0, le=3600)  # after a failure, local counters this long
    # SQLAlchemy pool per process (API process or worker): at most size + overflow connections each.
    db_pool_size: int = Field(10, ge=1, le=500)
    db_max_overflow: int = Field(10, ge=0, le=500)
    db_pool_timeout_seconds: float = Field(30.0, gt=0, le=600)
    encryption_key: SecretStr | None = None
    encryption_old_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    blind_index_key: SecretStr | None = None
    encryption_key_file: Path = Path("var/encryption.key")

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    # --- abuse protection ----------------------------------------------------------------------
    rate_limit_per_ip: str = "100/minute"
    rate_limit_per_campaign: str = "1000/hour"
    lockout_threshold: int = 10  # failures within the window before the first lock-out
    lockout_window_seconds: float = 600.0
    lockout_base_seconds: float = 30.0  # doubles with each further failure
    lockout_max_seconds: float = 3600.0
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)  # CIDRs
    bot_min_fill_seconds: float = 2.0
    reject_disposable_emails: bool = False

    # --- privacy ---------------------------------------------------------------------------------
    retention_days: int = Field(2555, ge=1, le=2557)  # the spec's maximum: 7 years
    retention_action: Literal["anonymize", "delete"] = "anonymize"
    unsubscribe_link_days: int = Field(60, ge=1, le=366)  # how long an e-mail's unsubscribe link works
    audit_flush_seconds: float = Field(10.0, gt=0, le=60)  # aggregated audit entries are written this often

    # --- processing pipeline -------------------------------------------------------------------
    run_worker: bool = True  # `leadflow serve` runs one in-process worker unless --no-worker
    worker_concurrency: int = 64
    worker_poll_seconds: float = 0.5
    worker_lease_seconds: float = Field(15.0, gt=0, le=300)  # renewed by a heartbeat while a job runs
    worker_job_timeout_seconds: float = Field(60.0, gt=0)  # a job running longer is failed as retriable
    shutdown_grace_seconds: float = Field(20.0, ge=0)  # SIGTERM: time left to in-flight requests and jobs
    public_base_url: str = "http://127.0.0.1:8000"
    fallback_owner: str | None = None  # e-mail of the owner when no team member is eligible
    geoip_city_db: Path | None = None
    mx_check: bool = False
    dns_timeout_seconds: float = 1.5
    dns_nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- integrations (a connector without credentials is off) ---------------------------------
    http_timeout_seconds: float = 10.0
    # One group per environment-variable prefix: SLACK_WEBHOOK_URL is ``slack.webhook_url``, and so on.
    slack: ChatWebhookSettings = ChatWebhookSettings()
    teams: ChatWebhookSettings = ChatWebhookSettings()
    smtp: SmtpSettings = SmtpSettings()
    email: EmailSettings = EmailSettings()
    twilio: TwilioSettings = TwilioSettings()
    sms: SmsSettings = SmsSettings()
    hubspot: HubSpotSettings = HubSpotSettings()
    salesforce: SalesforceSettings = SalesforceSettings()
    mailchimp: MailchimpSettings = MailchimpSettings()
    sendgrid: SendGridSettings = SendGridSettings()
    ga4: Ga4Settings = Ga4Settings()
    webhook: WebhookSettings = WebhookSettings()
    sequence: SequenceSettings = SequenceSettings()

    # --- reports (daily/weekly e-mail to campaigns' notification_emails and to REPORT_EMAILS) -----
    report_periods: Annotated[list[Literal["daily", "weekly"]], NoDecode] = Field(
        default_factory=lambda: list(REPORT_PERIODS)
    )
    report_timezone: str = "UTC"  # IANA name: the days reported and the hour they are sent at
    report_hour: int = Field(7, ge=0, le=23)  # local hour from which a finished period's report goes out
    report_emails: Annotated[list[str], NoDecode] = Field(default_factory=list)  # managers: all campaigns
    # --- monitoring and alerts (docs/deployment.md, "Monitoring") --------------------------------
    metrics_open_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"]
    )  # GET /metrics without a token from these networks; elsewhere a token with the metrics scope
    metrics_port: int | None = Field(None, ge=1, le=65535)  # `leadflow worker` serves /metrics here
    metrics_host: str = "127.0.0.1"
    metrics_db_refresh_seconds: float = Field(15.0, ge=0)  # queue/lead gauges: DB read at most this often
    metrics_max_campaigns: int = Field(50, ge=1, le=1000)  # named campaigns in leadflow_leads; rest "other"
    metrics_leads_refresh_seconds: float = Field(60.0, ge=0)  # leadflow_leads: one grouped scan of leads
    metrics_disk_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)
    alert_emails: Annotated[list[str], NoDecode] = Field(default_factory=list)
    alert_slack_webhook_url: SecretStr | None = None
    alert_check_seconds: float = Field(60.0, gt=0)
    alert_throttle_seconds: float = Field(900.0, ge=0)  # one message per condition per period
    alert_digest_seconds: float = Field(300.0, gt=0)  # dead letters are mailed in one digest per period
    alert_failure_rate: float = Field(0.01, ge=0, le=1)  # spec: lead processing failure rate > 1 %
    alert_failure_window_seconds: float = Field(900.0, gt=0)
    alert_failure_min_jobs: int = Field(20, ge=1)  # fewer finished jobs in the window: no rate alert
    alert_backlog_seconds: float = Field(300.0, gt=0)  # oldest due job waiting longer than this
    alert_worker_stale_seconds: float = Field(180.0, gt=0)  # no job attempt for this long

    default_phone_region: str = "US"
    service_catalog: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SERVICE_CATALOG)
    )
    qualifying_grades: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["A", "B"])
    dedup_window_hours: float = 24.0
    max_body_bytes: int = 64 * 1024
    # Request line + headers of one request: larger or more get 431 (security/headerlimits.py).
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)  # = headerlimits.DEFAULT_MAX_BYTES
    max_header_count: int = Field(100, ge=10, le=1000)  # = headerlimits.DEFAULT_MAX_COUNT
    campaign_cache_seconds: float = 2.0
    analytics_cache_seconds: float = Field(10.0, ge=0, le=30)  # the spec's 30 s analytics budget
    capture_batch_max: int = 256
    # File SQLite: commit captured leads in a process of their own (leads/capture/writer_process.py).
    capture_writer_process: bool = True
    # PostgreSQL/MySQL: captures the database cannot take are spooled here (fsync'd, encrypted) and
    # answered 202, then replayed when it is back (leads/spool.py). Off: such captures answer 503.
    capture_spool_enabled: bool = True
    capture_spool_dir: Path = Path("var/spool")
    capture_spool_max_mb: int = Field(1024, ge=1, le=1024 * 1024)
    db_connect_timeout_seconds: float = Field(5.0, gt=0, le=120)  # a silent database fails this fast
    # PostgreSQL: longest a statement may wait for the server (a silent partition fails this fast).
    db_command_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    gc_freeze: bool = True  # freeze start-up objects out of the garbage collector's full collections
    # A young-generation collection every this many net allocations (Python: 700; 0 keeps Python's).
    gc_young_threshold: int = Field(20_000, ge=0, le=10_000_000)
    # How long a thread may hold the GIL while another waits for it (0 keeps Python's 5 ms). 0.5 helps
    # the capture writer when it runs as a thread (CAPTURE_WRITER_PROCESS=false), docs/architecture.md §9.
    gil_switch_interval_ms: float = Field(0.0, ge=0, le=100)
    # --- the workspace (web/): staff sign-in sessions, docs/workspace.md -------------------------
    session_idle_minutes: float = Field(60.0, gt=0, le=7 * 24 * 60)  # signed out after this long idle
    session_max_hours: float = Field(12.0, gt=0, le=30 * 24)  # absolute: signed out this long after sign-in
    password_reset_minutes: float = Field(60.0, gt=0, le=7 * 24 * 60)  # a reset link works this long

    @field_validator(
        "service_catalog",
        "qualifying_grades",
        "encryption_old_keys",
        "dns_nameservers",
        "trusted_proxies",
        "report_periods",
        "report_emails",
        "metrics_open_networks",
        "metrics_disk_paths",
        "alert_emails",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        return split_csv(value)

    @model_validator(mode="before")
    @classmethod
    def _flat_group_names(cls, data: Any) -> Any:
        """``Settings(hubspot_api_key=...)``: the flat names (as in the environment) fill the groups."""
        if not isinstance(data, dict):
            return data
        groups = cls.groups()
        values = dict(data)
        for key in list(values):
            group, _, name = str(key).lower().partition("_")
            if key in cls.model_fields or group not in groups or not name:
                continue
            current = values.get(group)
            nested = (
                current.model_dump(by_alias=True) if isinstance(current, BaseModel) else dict(current or {})
            )
            nested[name] = values.pop(key)
            values[group] = nested
        return values

    @classmethod
    def groups(cls) -> dict[str, type[SettingsGroup]]:
        """The settings groups by field name (``{"hubspot": HubSpotSettings, ...}``)."""
        return {
            name: info.annotation
            for name, info in cls.model_fields.items()
            if isinstance(info.annotation, type) and issubclass(info.annotation, SettingsGroup)
        }

    @classmethod
    def env_names(cls) -> list[str]:
        """Every environment variable the settings read (``HUBSPOT_API_KEY`` for ``hubspot.api_key``)."""
        groups = cls.groups()
        names = [name.upper() for name in cls.model_fields if name not in groups]
        for prefix, group in groups.items():
            names += [f"{prefix}_{info.alias or name}".upper() for name, info in group.model_fields.items()]
        return names

    @field_validator("qualifying_grades")
    @classmethod
    def _grades(cls, value: list[str]) -> list[str]:
        grades = [g.upper() for g in value]
        bad = [g for g in grades if g not in {"A", "B", "C", "D"}]
        if bad:
            raise ValueError(f"unknown grades {bad}")
        return grades

    @field_validator("report_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from exc
        return value

    @field_validator("report_emails")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if "@" not in a or any(c.isspace() for c in a)]
        if bad:
            raise ValueError("REPORT_EMAILS must be comma-separated e-mail addresses")
        return [a.lower() for a in value]

    @property
    def report_zone(self) -> ZoneInfo:
        return ZoneInfo(self.report_timezone)

    @field_validator("metrics_open_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r} is not an IP network (e.g. 10.0.0.0/8)") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @property
    def alerting(self) -> bool:
        """Alert notifications are on (ALERT_EMAILS and/or ALERT_SLACK_WEBHOOK_URL set)."""
        return bool(self.alert_emails) or secret_text(self.alert_slack_webhook_url) is not None

    @property
    def production(self) -> bool:
        return self.leadflow_env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def encryption_keys(self) -> list[bytes]:
        """Primary key first, then old keys (still readable, never used to write)."""
        if self.encryption_key is not None:
            primary = decode_key(self.encryption_key.get_secret_value())
            if self.production and is_weak_key(primary):
                raise ConfigError("ENCRYPTION_KEY is weak: use 32 random bytes (leadflow keys generate)")
            old = [decode_key(k.get_secret_value(), "ENCRYPTION_OLD_KEYS") for k in self.encryption_old_keys]
            if old and self.blind_index_key is None:
                raise ConfigError(
                    "ENCRYPTION_OLD_KEYS is set but BLIND_INDEX_KEY is not: pin the blind index key that "
                    "`leadflow keys rotate` printed, or look-ups and de-duplication break"
                )
            return [primary, *old]
        return self.key_file().keys

    def key_file(self) -> KeyFile:
        if self.production:
            raise ConfigError("ENCRYPTION_KEY is required when LEADFLOW_ENV=production")
        path = self.encryption_key_file
        if path.exists():
            return KeyFile.parse(path.read_text(), str(path))
        raise ConfigError(
            f"no ENCRYPTION_KEY and no key file at {path}: run `leadflow migrate` (it creates one) "
            "or set ENCRYPTION_KEY"
        )

    def ensure_key_file(self) -> bool:
        """Create the development key file (mode 0600) when no key is configured. True if created."""
        if self.encryption_key is not None or self.production:
            return False
        path = self.encryption_key_file
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key() + "\n")
        return True

    @cached_property
    def blind_key(self) -> bytes | None:
        """The pinned blind-index key; None means "derive it from the primary key" (no rotation yet)."""
        if self.blind_index_key is not None:
            return decode_key(self.blind_index_key.get_secret_value(), "BLIND_INDEX_KEY")
        if self.encryption_key is None and self.encryption_key_file.exists():
            return self.key_file().blind
        return None

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        _, _, rest = self.database_url.partition(":///")
        if not rest or rest.startswith(":memory:"):
            return None
        return Path(rest.split("?", 1)[0])


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
