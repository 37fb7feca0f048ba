"""Prometheus metrics and ``GET /metrics``.

Two kinds of numbers:

* **Counters and histograms of what a process did** (requests, capture outcomes, jobs, rate limits,
  pool use). They live in the process. Each process is its own scrape target, or, when several
  processes share one listening port (``serve --workers``, gunicorn), prometheus-client's
  multiprocess mode adds them up: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before
  the processes start and any of them answers for all (``docs/deployment.md``, "Monitoring").
* **Gauges of shared state** (queue depth, oldest due job, last job attempt, leads by campaign,
  grade and status). They are read from the database when scraped (at most every
  ``METRICS_DB_REFRESH_SECONDS``), so every target reports the same value and no process has to be
  alive for another's numbers: alert rules aggregate them with ``max``.

Hot path: the capture path and the request middleware only touch pre-resolved metric children
(no ``labels()`` look-up, which takes a lock and builds a key) and a dict keyed by one tuple.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow import __version__
from leadflow.config import Settings
from leadflow.errors import ApiError, responses
from leadflow.kit.clock import utcnow
from leadflow.kit.state import CoreState, CoreStateDep
from leadflow.kit.state import install as install_state
from leadflow.security.auth import authenticate, bearer
from leadflow.security.clientip import Network, parse_networks

log = structlog.get_logger("leadflow.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format every Prometheus 2.x reads (our metric names need none of 1.0.0's escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# --- HTTP ------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "leadflow_http_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "leadflow_http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)

# --- capture ---------------------------------------------------------------------------------------
CAPTURE_OUTCOMES = (
    "created",  # 201, a new lead
    "replay",  # 201, the same Idempotency-Key again
    "duplicate",  # 409, the same person and campaign within the dedup window
    "key_conflict",  # 409, the same Idempotency-Key for someone else
    "invalid",  # 4xx: payload, campaign, origin, token, content type, size
    "rate_limited",  # 429 RATE_LIMITED (per address or per campaign)
    "locked_out",  # 429 TOO_MANY_FAILURES
    "spam",  # 400: honeypot, too fast, disposable address
    "spooled",  # 202: stored in the local spool while the database is unreachable
    "unavailable",  # 503: could not be stored
)
LEADS_CAPTURED = Counter("leadflow_leads_captured_total", "Capture requests by outcome", ["outcome"])
CAPTURE: dict[str, Any] = {outcome: LEADS_CAPTURED.labels(outcome) for outcome in CAPTURE_OUTCOMES}
SPAM_REASONS = ("honeypot", "too_fast", "disposable")
CAPTURE_SPAM = Counter("leadflow_capture_spam_total", "Submissions rejected as spam, by reason", ["reason"])
SPAM: dict[str, Any] = {reason: CAPTURE_SPAM.labels(reason) for reason in SPAM_REASONS}

# --- abuse protection --------------------------------------------------------------------------------
RATE_LIMITED = Counter(
    "leadflow_rate_limited_total", "Requests refused by a rate limit (429 RATE_LIMITED)", ["limit"]
)
RATE_LIMITED_IP = RATE_LIMITED.labels("ip")
RATE_LIMITED_CAMPAIGN = RATE_LIMITED.labels("campaign")
LOCKOUTS = Counter("leadflow_lockouts_total", "Lock-outs imposed on a client address after repeated failures")
LOCKED_OUT = Counter(
    "leadflow_locked_out_requests_total", "Requests refused because their address is locked out"
)

# --- jobs ------------------------------------------------------------------------------------------
JOBS_FINISHED = Counter(
    "leadflow_jobs_finished_total",
    "Job attempts recorded by workers, by kind, connector and outcome "
    "(success, retry, dead, permanent, lost_lease, deleted)",
    ["kind", "connector", "outcome"],
)
JOB_DURATION = Histogram(
    "leadflow_job_duration_seconds",
    "Time spent running one job attempt",
    ["kind", "connector"],
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "leadflow_stage_latency_seconds",
    "Seconds from capture to the end of a pipeline stage (processed, or delivered per connector)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
WORKER_HEARTBEAT = Gauge(
    "leadflow_worker_heartbeat_timestamp_seconds",
    "Unix time of the worker loop's last turn in this process (0 where no worker runs)",
    multiprocess_mode="livemax",
)

RATE_LIMIT_FALLBACKS = Counter(
    "leadflow_rate_limit_storage_fallbacks_total",
    "Times the shared rate-limit storage (Redis) failed and this process fell back to its own counters",
)

# --- database pool -----------------------------------------------------------------------------------
DB_POOL_IN_USE = Gauge(
    "leadflow_db_pool_connections_in_use",
    "Database connections checked out of the pool",
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "leadflow_db_pool_connections_max",
    "Connections the pool may open (pool size + overflow)",
    multiprocess_mode="livesum",
)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


def prepare_multiprocess_dir(path: Path) -> None:
    """For a supervisor about to start several serving processes on one port: empty ``path`` of an
    earlier run's files and export ``PROMETHEUS_MULTIPROC_DIR`` so the processes it starts (which
    import prometheus-client afresh) count into it and each answers ``/metrics`` for all."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()
    os.environ[MULTIPROCESS_ENV] = str(path.resolve())


# --- recording (hot path) ---------------------------------------------------------------------------
_KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"})
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _children(method: str, route: str, status: int) -> tuple[Any, Any]:
    label = method if method in _KNOWN_METHODS else "OTHER"
    pair = (HTTP_REQUESTS.labels(label, route, str(status)), HTTP_DURATION.labels(label, route))
    if method in _KNOWN_METHODS:  # arbitrary methods are not remembered one by one
        _request_children[(method, route, status)] = pair
    return pair


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request. ``route`` is the route template (or ``unmatched``): bounded labels."""
    pair = _request_children.get((method, route, status)) or _children(method, route, status)
    pair[0].inc()
    pair[1].observe(seconds)


def count_capture_error(status: int, error: str) -> None:
    """A capture request that ended in an error answer (outcomes counted elsewhere are skipped)."""
    if status == 429:
        CAPTURE["locked_out" if error == "TOO_MANY_FAILURES" else "rate_limited"].inc()
    elif status == 503:
        CAPTURE["unavailable"].inc()
    elif error not in (
        "DUPLICATE_SUBMISSION",
        "IDEMPOTENCY_KEY_REUSED",
        "SUBMISSION_REJECTED",
        "DISPOSABLE_EMAIL",
    ):
        CAPTURE["invalid"].inc()


def instrument_pool(engine: AsyncEngine) -> None:
    """Count the connections checked out of this engine's pool (events on checkout and check-in)."""
    pool: Any = engine.sync_engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", 0)
    if callable(size):
        DB_POOL_CAPACITY.set(int(size()) + max(0, int(overflow)))

    @event.listens_for(pool, "checkout")
    def _checkout(*_: Any) -> None:
        DB_POOL_IN_USE.inc()

    @event.listens_for(pool, "checkin")
    def _checkin(*_: Any) -> None:
        DB_POOL_IN_USE.dec()


# --- gauges read at scrape time ------------------------------------------------------------------------
class DatabaseGauges:
    """Queue, lead and worker-activity gauges from the database.

    Queue facts are re-read at most every ``ttl`` s; the lead counts (a grouped scan of ``leads``)
    at most every ``leads_ttl`` s.
    """

    def __init__(self, engine: AsyncEngine, ttl: float, max_campaigns: int, leads_ttl: float = 60.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self.leads_ttl = max(ttl, leads_ttl)
        self.max_campaigns = max_campaigns
        self._families: list[Metric] = []
        self._at = -1e9
        self._leads_at = -1e9
        self._by_campaign: list[tuple[str, str, str, int]] = []
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        if time.monotonic() - self._at < self.ttl:
            return
        async with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return
            from leadflow.observability import repository as repo

            now = utcnow()
            try:
                async with self.engine.connect() as conn:
                    queue = await repo.queue_snapshot(conn, now)
                    if time.monotonic() - self._leads_at >= self.leads_ttl:
                        self._by_campaign = await repo.leads_by_campaign(conn)
                        self._leads_at = time.monotonic()
            except Exception as exc:  # the database is down: report that, keep the process metrics
                log.warning("metrics_database_unavailable", exc_type=type(exc).__name__)
                self._families = [_gauge("leadflow_database_up", "1 if the database answered the scrape", 0)]
                self._at = time.monotonic()
                return
            self._families = self._build(queue, self._by_campaign, now)
            self._at = time.monotonic()

    def _build(self, queue: Any, by_campaign: list[tuple[str, str, str, int]], now: Any) -> list[Metric]:
        queued = GaugeMetricFamily(
            "leadflow_jobs_queued",
            "Jobs in the outbox by kind, connector (deliveries) and status (pending, running, dead)",
            labels=["kind", "connector", "status"],
        )
        for (kind, connector, status), count in sorted(queue.counts.items()):
            queued.add_metric([kind, connector, status], count)
        for status in ("pending", "running", "dead"):  # always present, so sums and alerts see 0
            if not any(key[2] == status for key in queue.counts):
                queued.add_metric(["", "", status], 0)
        oldest = (now - queue.oldest_due_at).total_seconds() if queue.oldest_due_at is not None else 0.0
        last = queue.last_attempt_at.timestamp() if queue.last_attempt_at is not None else 0.0
        families: list[Metric] = [
            _gauge("leadflow_database_up", "1 if the database answered the scrape", 1),
            queued,
            _gauge("leadflow_jobs_due", "Pending jobs whose time has come (waiting for a worker)", queue.due),
            _gauge(
                "leadflow_jobs_oldest_due_age_seconds",
                "How long the oldest due pending job has been waiting (0 when none)",
                max(0.0, oldest),
            ),
            _gauge(
                "leadflow_jobs_last_attempt_timestamp_seconds",
                "Unix time of the newest job attempt recorded by any worker (0 when none)",
                last,
            ),
        ]
        # Bounded: the campaigns with most leads by name, the rest as "other"; grades and statuses
        # are fixed lists.
        totals: dict[str, int] = {}
        for campaign, _, _, count in by_campaign:
            totals[campaign] = totals.get(campaign, 0) + count
        named = set(sorted(totals, key=lambda c: (-totals[c], c))[: self.max_campaigns])
        grouped: dict[tuple[str, str, str], int] = {}
        for campaign, grade, status, count in by_campaign:
            key = (campaign if campaign in named else "other", grade, status)
            grouped[key] = grouped.get(key, 0) + count
        leads = GaugeMetricFamily(
            "leadflow_leads",
            f"Leads by campaign (the {self.max_campaigns} largest, the rest as 'other'), grade and status",
            labels=["campaign", "grade", "status"],
        )
        for key, count in sorted(grouped.items()):
            leads.add_metric(list(key), count)
        families.append(leads)
        return families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class DiskGauges:
    """Free and total bytes of the file systems holding the database file and other data paths."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = sorted({str(p) for p in paths})

    def collect(self) -> Iterator[Metric]:
        free = GaugeMetricFamily("leadflow_disk_free_bytes", "Bytes free for this data path", labels=["path"])
        size = GaugeMetricFamily(
            "leadflow_disk_size_bytes", "Bytes in the file system of this data path", labels=["path"]
        )
        for path in self.paths:
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                continue
            free.add_metric([path], usage.free)
            size.add_metric([path], usage.total)
        yield free
        yield size


class _Build:
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("leadflow_build_info", "Version of the running Leadflow", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def disk_paths(settings: Settings) -> list[Path]:
    paths = [Path(p) for p in settings.metrics_disk_paths]
    db = settings.sqlite_path()
    if db is not None:
        paths.append(db.resolve().parent)
    return paths or [Path.cwd()]


class Exposition:
    """What one ``GET /metrics`` renders: this process's (or, in multiprocess mode, every process's)
    counters, plus the database and disk gauges."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.database = DatabaseGauges(
            engine,
            settings.metrics_db_refresh_seconds,
            settings.metrics_max_campaigns,
            settings.metrics_leads_refresh_seconds,
        )
        self.extra: list[Collector] = [self.database, DiskGauges(disk_paths(settings)), _Build()]

    def collect(self) -> Iterator[Metric]:
        if multiprocess():
            from prometheus_client.multiprocess import MultiProcessCollector

            yield from MultiProcessCollector(None).collect()  # type: ignore[no-untyped-call]
        else:
            yield from REGISTRY.collect()
        for collector in self.extra:
            yield from collector.collect()

    async def render(self) -> bytes:
        await self.database.refresh()
        return generate_latest(self)


# --- access -----------------------------------------------------------------------------------------
FORWARDING_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def open_without_token(
    request: Request, open_networks: tuple[Network, ...], trusted: tuple[Network, ...]
) -> bool:
    """A request from an address in METRICS_OPEN_NETWORKS (loopback by default) needs no token.

    A request that came through a proxy (it carries forwarding headers) is judged by the client
    address the trusted proxies report; through a proxy that is not trusted it is never "local".
    """
    state = request.scope.get("state", {})
    client = state.get("client_ip")
    peer = request.scope["client"][0] if request.scope.get("client") else None
    if client is None or not open_networks:
        return False
    forwarded = any(key in FORWARDING_HEADERS for key, _ in request.scope["headers"])
    if forwarded and (client == peer or not _in(peer, trusted)):
        return False
    return _in(client, open_networks)


def _in(address: str | None, networks: tuple[Network, ...]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


router = APIRouter(tags=["operations"])

EXAMPLE = """# HELP leadflow_leads_captured_total Capture requests by outcome
# TYPE leadflow_leads_captured_total counter
leadflow_leads_captured_total{outcome="created"} 1234.0
leadflow_leads_captured_total{outcome="duplicate"} 17.0
# HELP leadflow_jobs_oldest_due_age_seconds How long the oldest due pending job has been waiting
# TYPE leadflow_jobs_oldest_due_age_seconds gauge
leadflow_jobs_oldest_due_age_seconds 0.4
"""


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Prometheus text format (version 0.0.4). Open without a token to the addresses in "
        "`METRICS_OPEN_NETWORKS` (loopback by default); from anywhere else a bearer token with the "
        "`metrics` scope (role `monitoring` or `admin`). Request, capture, job, rate-limit and pool "
        "counters of this process (of all processes sharing `PROMETHEUS_MULTIPROC_DIR`), plus queue, "
        "lead and disk gauges read when scraped."
    ),
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}, "example": EXAMPLE}}},
        **responses(401, 403, 429),
    },
)
async def metrics_endpoint(
    request: Request,
    state: CoreStateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    principal = await authenticate(request, state, credentials)
    if principal is None:
        if not open_without_token(request, state.metrics_open_networks, state.metrics_trusted):
            raise ApiError(
                401,
                "UNAUTHORIZED",
                "A bearer token with the metrics scope is required from this address",
                headers={"WWW-Authenticate": "Bearer"},
            )
    elif "metrics" not in principal.scopes:
        raise ApiError(403, "FORBIDDEN", f"The {principal.role} role may not do this (metrics)")
    return Response(await state.metrics.render(), media_type=CONTENT_TYPE)


def mark_process_dead() -> None:
    """Multiprocess mode: drop this process's live gauges (pool use, heartbeat) when it exits."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


# --- the worker's own endpoint -------------------------------------------------------------------------
def metrics_app(engine: AsyncEngine, settings: Settings) -> FastAPI:
    """``GET /metrics`` alone, for ``leadflow worker`` (served on METRICS_PORT)."""
    from leadflow.errors import install_error_handlers
    from leadflow.observability.logging import RequestContextMiddleware
    from leadflow.security.ratelimit import Guard
    from leadflow.security.tokens import TokenStore

    app = FastAPI(
        title="Leadflow worker metrics", version=__version__, openapi_url=None, docs_url=None, redoc_url=None
    )
    install_error_handlers(app)
    app.include_router(router)
    state = CoreState(
        settings=settings,
        engine=engine,
        tokens=TokenStore(engine),
        guard=Guard(settings),
        metrics=Exposition(engine, settings),
        metrics_open_networks=parse_networks(settings.metrics_open_networks),
        metrics_trusted=parse_networks(settings.trusted_proxies),
    )
    install_state(app, state)  # the worker instruments its pool itself
    app.add_middleware(RequestContextMiddleware, trusted_proxies=state.metrics_trusted)
    return app


def bind(host: str, port: int) -> socket.socket:
    """The worker's metrics socket, bound before anything starts (OSError: the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_metrics(
    engine: AsyncEngine, settings: Settings, stop: asyncio.Event, sock: socket.socket
) -> None:
    """Serve :func:`metrics_app` on the bound ``sock`` until ``stop`` is set.

    The worker's own signal handlers stay in charge: this server never installs any.
    """
    import contextlib

    import uvicorn

    class _Server(uvicorn.Server):
        def capture_signals(self) -> Any:  # the worker handles SIGTERM/SIGINT itself
            return contextlib.nullcontext()

    config = uvicorn.Config(metrics_app(engine, settings), access_log=False, log_config=None, lifespan="off")
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()
