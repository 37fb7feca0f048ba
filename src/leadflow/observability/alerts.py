"""Alert notifications for a team without Prometheus: e-mail (ALERT_EMAILS) and an ops Slack webhook.

Two sources:

* **Conditions** checked every ``ALERT_CHECK_SECONDS`` by every API process and every worker
  (:class:`AlertMonitor`): lead processing failure rate above ``ALERT_FAILURE_RATE``, a backlog
  (the oldest due job waiting longer than ``ALERT_BACKLOG_SECONDS``) and no worker alive (due work,
  and no job attempt for ``ALERT_WORKER_STALE_SECONDS``). The facts come from the database, so an
  API process notices a dead worker. One message when a condition starts, again at most every
  ``ALERT_THROTTLE_SECONDS`` while it lasts, and one when it ends; the ``alert_state`` row decides
  which process sends it (:func:`repository.claim_firing`), so replicas do not repeat each other.
* **Dead letters**: when a job of a lead is given up on (a CRM sync, a notification, the lead's
  processing), the worker enqueues, in the same transaction, one digest job per
  ``ALERT_DIGEST_SECONDS`` period. At the end of the period it mails every lead dead-lettered in
  it, with a link to the lead and the data needed to enter it by hand (the spec's "e-mail backup
  for critical failures"). That e-mail carries personal data by design; the Slack message carries
  only lead ids, connectors and links. Neither is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.config import Settings
from leadflow.integrations.base import DeliveryError
from leadflow.integrations.http import check, send
from leadflow.integrations.mailer import Mailer, OutgoingEmail
from leadflow.kit.clock import utcnow
from leadflow.observability import repository as repo
from leadflow.pipeline.jobs import JobKind
from leadflow.pipeline.repository import NewJob

log = structlog.get_logger("leadflow.alerts")

DIGEST = JobKind("alert.dead_letters", max_attempts=10)
DIGEST_JOB = DIGEST.name  # handled by observability/tasks.py


@dataclass(frozen=True, slots=True)
class Message:
    key: str  # stable per message: the e-mail Message-ID derives from it
    subject: str
    text: str  # no personal data: goes to Slack, and to e-mail when there is no private text
    private_text: str | None = None  # e-mail only (personal data)
    private_html: str | None = None


class Notifier:
    """Sends one :class:`Message` to every configured channel; returns how many deliveries worked."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.http = http
        self.mailer = Mailer(settings, http)

    async def send(self, message: Message, skip: frozenset[str] = frozenset()) -> tuple[int, int]:
        """Deliver to every channel: (deliveries that worked, deliveries that failed)."""
        delivered, failed = await self.deliver(message, skip)
        return len(delivered), failed

    async def deliver(self, message: Message, skip: frozenset[str] = frozenset()) -> tuple[list[str], int]:
        """Deliver to every channel not in ``skip`` (``email:<n>``, ``slack``): the channels that took
        the message, and how many failed. A retry skips those that already took it."""
        delivered: list[str] = []
        failures: list[str] = []
        if self.settings.alert_emails and not self.mailer.configured():
            failures.append("e-mail: transport not configured")
        elif self.settings.alert_emails:
            for n, address in enumerate(self.settings.alert_emails):
                if f"email:{n}" in skip:
                    continue
                email = OutgoingEmail(
                    to=address,
                    subject=message.subject,
                    text=message.private_text or message.text,
                    html=message.private_html or f"<pre>{html.escape(message.text)}</pre>",
                    dedup_key=f"{message.key}:{address}",
                    category="leadflow-alert",
                )
                try:
                    await self.mailer.send(email)
                    delivered.append(f"email:{n}")
                except DeliveryError as exc:
                    failures.append(f"e-mail: {type(exc).__name__}")
        webhook = self.settings.alert_slack_webhook_url
        if webhook is not None and webhook.get_secret_value().strip() and "slack" not in skip:
            try:
                await self._slack(webhook.get_secret_value().strip(), message)
                delivered.append("slack")
            except DeliveryError as exc:
                failures.append(f"slack: {type(exc).__name__}")
        if failures:
            log.warning("alert_delivery_failed", alert=message.key.split(":", 1)[0], failures=failures)
        return delivered, len(failures)

    async def _slack(self, url: str, message: Message) -> None:
        body = {"text": f"*{message.subject}*\n{message.text}"[:39000]}
        if self.http is not None:
            check(await send(self.http, "POST", url, json=body))
            return
        async with httpx.AsyncClient(timeout=self.settings.http_timeout_seconds) as client:
            check(await send(client, "POST", url, json=body))


# --- conditions ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    firing: bool
    summary: str  # what is wrong, with the figures (no personal data)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


async def evaluate(engine: AsyncEngine, settings: Settings, now: datetime) -> list[Condition]:
    """The three conditions, from the database (the same facts whichever process asks)."""
    window = timedelta(seconds=settings.alert_failure_window_seconds)
    async with engine.connect() as conn:
        queue = await repo.queue_snapshot(conn, now)
        outcomes = await repo.outcomes_since(conn, now - window)
    oldest = (now - queue.oldest_due_at).total_seconds() if queue.oldest_due_at is not None else 0.0
    idle = (now - queue.last_attempt_at).total_seconds() if queue.last_attempt_at is not None else math.inf
    stale = settings.alert_worker_stale_seconds
    stopped = queue.due > 0 and oldest > stale and idle > stale
    last = "never" if queue.last_attempt_at is None else f"{_minutes(idle)} ago"
    failed = outcomes.get("dead", 0) + outcomes.get("permanent", 0)
    finished = failed + outcomes.get("success", 0)
    rate = failed / finished if finished else 0.0
    window_text = _minutes(settings.alert_failure_window_seconds)
    return [
        Condition(
            "worker_stopped",
            stopped,
            f"No worker is processing jobs: {queue.due} job(s) due, the oldest waiting {_minutes(oldest)}; "
            f"last job attempt {last}. Start `leadflow worker` (or `leadflow serve` without --no-worker).",
        ),
        Condition(
            "backlog",
            not stopped and oldest > settings.alert_backlog_seconds,
            f"Job backlog: {queue.due} job(s) due, the oldest waiting {_minutes(oldest)} "
            f"(threshold {_minutes(settings.alert_backlog_seconds)}). Workers are alive but behind: add "
            "workers or WORKER_CONCURRENCY, or look for a slow integration.",
        ),
        Condition(
            "failure_rate",
            finished >= settings.alert_failure_min_jobs and rate > settings.alert_failure_rate,
            f"Lead processing failure rate {rate:.1%} over the last {window_text}: {failed} of {finished} "
            f"finished job(s) failed for good (threshold {settings.alert_failure_rate:.1%}). "
            "See GET /v1/api/jobs?status=dead.",
        ),
    ]


class AlertMonitor:
    """Checks the conditions and sends throttled firing/resolved messages."""

    def __init__(self, engine: AsyncEngine, settings: Settings, notifier: Notifier | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.notifier = notifier or Notifier(settings)

    async def check(self, now: datetime | None = None) -> list[str]:
        """One round; returns the messages this process sent (``name`` or ``name:resolved``)."""
        now = now or utcnow()
        throttle = timedelta(seconds=self.settings.alert_throttle_seconds)
        sent: list[str] = []
        for condition in await evaluate(self.engine, self.settings, now):
            if condition.firing:
                if await repo.claim_firing(self.engine, condition.name, now, throttle):
                    delivered, _ = await self.notifier.send(
                        Message(
                            f"{condition.name}:{now:%Y%m%dT%H%M%S}",
                            f"[Leadflow] ALERT {condition.name.replace('_', ' ')}",
                            condition.summary,
                        )
                    )
                    if delivered == 0:  # no channel took it: try again at the next check
                        await repo.release(self.engine, condition.name)
                    sent.append(condition.name)
            elif await repo.claim_resolved(self.engine, condition.name, now):
                await self.notifier.send(
                    Message(
                        f"{condition.name}:resolved:{now:%Y%m%dT%H%M%S}",
                        f"[Leadflow] resolved: {condition.name.replace('_', ' ')}",
                        f"Back to normal. {condition.summary}",
                    )
                )
                sent.append(f"{condition.name}:resolved")
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        period = self.settings.alert_check_seconds
        while not stop.is_set():
            try:
                await self.check()
            except Exception as exc:  # the database is away: try again next round
                log.warning("alert_check_failed", exc_type=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=period)


def start_monitor(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """Run the monitor in the background when ALERT_EMAILS or ALERT_SLACK_WEBHOOK_URL is set."""
    if not settings.alerting:
        return None
    return asyncio.create_task(AlertMonitor(engine, settings).run(stop))


# --- dead letters ------------------------------------------------------------------------------------
def digest_job(now: datetime, settings: Settings) -> NewJob:
    """The digest job of the period ``now`` falls in, due at the period's end (dedup: one per period)."""
    period = settings.alert_digest_seconds
    start = math.floor(now.timestamp() / period) * period
    since = datetime.fromtimestamp(start, UTC)
    until = datetime.fromtimestamp(start + period, UTC)
    return DIGEST.new(
        {"since": since.isoformat(), "until": until.isoformat()},
        run_at=until,
        dedup_key=f"alert:dead_letters:{int(start)}",
    )
