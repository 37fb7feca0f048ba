"""Lead capture, orchestrated: a request's headers and body in, a :class:`CaptureOutcome` out.

:func:`capture` runs the steps in order — lock-out and rate limits, body and schema validation, the
campaign and bot rules (:mod:`.policy`), preparation (normal forms, encryption) — and hands the
prepared lead to the process's one :class:`CaptureWriter`, which commits whatever has queued up in a
single transaction through the store (:mod:`.store`; group commit). The first lead waits for nobody;
while a commit is in flight the next ones queue and share the next commit, so throughput grows with
load while each acknowledged lead is on disk before its answer is sent. De-duplication, idempotency
and the returning-visitor signal are decided inside that transaction (:func:`.policy.plan_batch`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError
from starlette.types import Receive

from leadflow.db import database_unreachable
from leadflow.errors import ApiError, validation_error
from leadflow.kit.clock import utcnow
from leadflow.kit.ids import new_lead_ids
from leadflow.kit.process import DEFAULT_GC, GcTuning
from leadflow.leads.capture import policy
from leadflow.leads.capture.policy import CaptureOutcome, PreparedLead, Rules, plan_batch
from leadflow.leads.capture.store import Batch, CaptureStore, Planner, Written, make_store
from leadflow.leads.schemas import CaptureRequest
from leadflow.leads.spool import CaptureSpool, Spooled, SpoolUnavailable
from leadflow.observability import metrics

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from leadflow.campaigns.service import CaptureCampaign
    from leadflow.kit.state import AppState

log = structlog.get_logger("leadflow.capture")

Result = CaptureOutcome | BaseException
# Failures a lead is retried for, alone (busy database, a deadlock broken, a lost claim race).
RETRY_DELAYS = (0.05, 0.1)
# Client errors that count towards the address's lock-out.
FAILURES = frozenset({400, 401, 403, 413, 415})


# -- One request ----------------------------------------------------------------------------------


async def read_body(receive: Receive, length: str | None, limit: int) -> bytes:
    """The whole body from the ASGI ``receive`` channel, refusing more than ``limit`` bytes."""
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes")
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body += message.get("body", b"")
            if len(body) > limit:
                raise ApiError(413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes")
            if not message.get("more_body", False):
                return bytes(body)
        elif message["type"] == "http.disconnect":
            # The client went away mid-body: nothing was stored and nobody is left to answer.
            raise ApiError(
                400, "CLIENT_DISCONNECTED", "The client closed the connection before sending the body"
            )


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _bearer_may_ingest(state: AppState, authorization: str | None) -> bool:
    auth = authorization or ""
    if not auth.lower().startswith("bearer "):
        return False
    principal = await state.tokens.resolve(auth[7:].strip())
    return principal is not None and "leads:create" in principal.scopes


async def _accept(
    state: AppState, headers: Mapping[str, str], receive: Receive
) -> tuple[CaptureRequest, CaptureCampaign]:
    """Everything a client can get wrong: body, campaign, token, origin (failures count to lock-out)."""
    settings = state.settings
    if not _is_json(headers.get("content-type")):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
    raw = await read_body(receive, headers.get("content-length"), settings.max_body_bytes)
    try:
        body = CaptureRequest.model_validate_json(
            raw, context={"phone_region": settings.default_phone_region}
        )
    except ValidationError as exc:
        raise validation_error(exc.errors(include_input=False)) from None
    campaign = await state.campaigns.get(body.campaign_id)
    refusal = policy.campaign_refusal(campaign, headers)
    if (
        refusal is not None
        and refusal.error == policy.TOKEN_REFUSED
        and await _bearer_may_ingest(state, headers.get("authorization"))
    ):
        refusal = None
    if refusal is not None:
        raise refusal
    assert campaign is not None
    return body, campaign


def _reject_bots(body: CaptureRequest, state: AppState) -> None:
    """Honeypot, minimum fill time and (optionally) disposable addresses. Rejected spam is counted only."""
    settings = state.settings
    reason = policy.bot_reason(body, settings.bot_min_fill_seconds, settings.reject_disposable_emails)
    if reason is None:
        return
    metrics.CAPTURE["spam"].inc()
    metrics.SPAM[reason].inc()
    if reason != "disposable":
        log.info("spam_rejected", reason=reason, campaign_id=body.campaign_id)
    raise policy.bot_refusal(reason)


async def capture(
    state: AppState, headers: Mapping[str, str], receive: Receive, client_ip: str | None
) -> CaptureOutcome:
    """One capture request, from its headers (lower-case names) and body to the stored outcome.

    Raises :class:`ApiError` for every refusal (lock-out, rate limits, validation, campaign, bots).
    """
    guard = state.guard
    ip = client_ip or "unknown"
    await guard.raise_if_locked(ip)
    verdict = await guard.check_ip(ip)
    if not verdict.allowed:
        from leadflow.security.ratelimit import rate_limited

        raise rate_limited(verdict, "per client address")
    try:
        body, campaign = await _accept(state, headers, receive)
    except ApiError as exc:
        if exc.status in FAILURES and exc.error != "CLIENT_DISCONNECTED":
            await guard.record_failure(ip)
        raise
    verdict = await guard.check_campaign(campaign.id)
    if not verdict.allowed:
        from leadflow.security.ratelimit import rate_limited

        raise rate_limited(verdict, "per campaign")
    _reject_bots(body, state)
    key = headers.get("idempotency-key")
    key = key.strip() if key else None
    prepared = policy.prepare(
        body, campaign, state.cipher, state.catalog, client_ip, key or None, now=utcnow()
    )
    outcome = await state.writer.submit(prepared)
    metrics.CAPTURE[outcome.kind].inc()
    return outcome


# -- The group commit -------------------------------------------------------------------------------


def not_stored(exc: BaseException, *, unexpected: bool = False) -> ApiError:
    """The one place where "the database could not store this lead" becomes an answer (503).

    Nothing is queued in memory for a lead whose batch and whose own retries failed: the client
    retries with its Idempotency-Key. An ``unexpected`` error (not a database error) is logged with
    its stack.
    """
    log.error("capture_write_failed", exc_type=type(exc).__name__, exc_info=exc if unexpected else None)
    return ApiError(503, "SERVICE_UNAVAILABLE", "The lead could not be stored; retry shortly")


def _retryable(exc: BaseException) -> bool:
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError | sqlite3.IntegrityError | sqlite3.OperationalError)


class CaptureWriter:
    """Group commit of captured leads: one transaction per drained batch, through the store.

    ``submit`` queues a prepared lead and waits for its outcome; one drain task hands the queue to the
    store (:meth:`CaptureStore.stream`), and a batch the store could not write is retried lead by lead
    (the one retry loop, :meth:`_one_by_one`) — or, on PostgreSQL/MySQL with the spool on, spooled when
    the database cannot be reached (``leads/spool.py``).
    """

    PRUNE_EVERY_SECONDS = 600.0

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        dedup_window: timedelta,
        qualifying_grades: Sequence[str],
        batch_max: int = 256,
        direct_sqlite: bool = True,
        lease_seconds: float = 0.1,
        linger_seconds: float = 0.25,
        writer_process: bool = False,
        writer_process_gc: GcTuning = DEFAULT_GC,
        store: CaptureStore | None = None,
    ) -> None:
        self._window = dedup_window
        self._rules = Rules(dedup_window, frozenset(qualifying_grades))
        self._batch_max = batch_max
        self._store = store or make_store(
            engine,
            direct_sqlite=direct_sqlite,
            lease_seconds=lease_seconds,
            linger_seconds=linger_seconds,
            process_rules=self._rules if writer_process else None,
            process_gc=writer_process_gc,
        )
        self._queue: deque[tuple[PreparedLead, asyncio.Future[CaptureOutcome]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._next_prune = time.monotonic() + self.PRUNE_EVERY_SECONDS
        self.batches = 0
        self.leads_written = 0
        self.on_commit: Callable[[], None] | None = None  # e.g. wake the in-process worker
        # PostgreSQL/MySQL: where a batch goes when the database cannot be reached (leads/spool.py).
        self.spool: CaptureSpool | None = None

    @property
    def store(self) -> CaptureStore:
        return self._store

    def _planner(self, *, spooled: bool = False) -> Planner:
        def plan(
            items: Sequence[PreparedLead], stored: Any, now: datetime, breakdown: Callable[[Any], Any]
        ) -> policy.Plan:
            return plan_batch(items, stored, self._rules, now, breakdown, spooled=spooled)

        return plan

    async def submit(self, item: PreparedLead) -> CaptureOutcome:
        if self._closed:
            raise ApiError(503, "SERVICE_UNAVAILABLE", "The service is shutting down; retry shortly")
        future: asyncio.Future[CaptureOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._store.wake()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        # The commit goes on even if this request is cancelled (the lead is in the queue and then simply
        # stored; a cancelled future is skipped when the batch is answered), so no shield is needed.
        return await future

    async def start(self) -> None:
        """Start what the store needs before the first lead (the SQLite writer process)."""
        await self._store.start()

    async def close(self) -> None:
        self._closed = True
        self._store.wake(closing=True)  # a writer waiting for more leads stops waiting
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._store.close()
        log.info("capture_writer_closed", batches=self.batches, leads=self.leads_written)

    def _take(self, share: int = 1) -> Batch | None:
        """The next batch from the queue (called on the loop or in the store's writer thread): what is
        queued, or its ``1/share`` part rounded up, at most ``batch_max`` leads."""
        items: list[PreparedLead] = []
        waiters: list[asyncio.Future[CaptureOutcome]] = []
        queue = self._queue
        size = min(self._batch_max, -(-len(queue) // share))
        while queue and len(items) < size:
            item, future = queue.popleft()
            items.append(item)
            waiters.append(future)
        if not items:
            return None
        if self.spool is not None:
            for item in items:  # ids first: a batch cut off mid-commit and then spooled keeps them
                item.lead_ids = item.lead_ids or new_lead_ids()
        return Batch(items, waiters)

    def _answer(self, batch: Batch, results: Sequence[Result], written: int) -> None:
        """On the loop: answer a batch's submitters."""
        self.batches += 1
        self.leads_written += written
        for future, result in zip(batch.waiters, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if written and self.on_commit is not None:
            self.on_commit()

    def _deliver(self, batch: Batch, written: Written) -> None:
        self._answer(batch, written.outcomes, written.leads)

    async def _drain(self) -> None:
        planner = self._planner()
        while self._queue:
            if self.spool is not None and self.spool.database_suspect():
                batch = self._take()
                if batch is not None:
                    self._answer(batch, await self._to_spool(batch.items), 0)
                continue
            for batch, exc in await self._store.stream(self._take, planner, self._deliver):
                await self._recover(batch, exc, planner)
            if time.monotonic() >= self._next_prune:
                await self._prune_claims()

    async def _recover(self, batch: Batch, exc: Exception, planner: Planner) -> None:
        """A batch the store could not write: spool it (database unreachable) or retry lead by lead."""
        if self.spool is not None and database_unreachable(exc):
            self.spool.mark_down()
            self._answer(batch, await self._to_spool(batch.items), 0)
            return
        log.warning("capture_batch_failed", size=len(batch.items), exc_type=type(exc).__name__)
        results: list[Result] = []
        written = 0
        for item in batch.items:
            result, count = await self._one_by_one(item, planner)
            results.append(result)
            written += count
        self._answer(batch, results, written)

    async def _one_by_one(self, item: PreparedLead, planner: Planner) -> tuple[Result, int]:
        """The one retry loop: a lead alone, retried on database errors, else 503 (:func:`not_stored`)."""
        for attempt in range(len(RETRY_DELAYS) + 1):
            try:
                written = await self._store.write([item], planner)
                return written.outcomes[0], written.leads
            except Exception as exc:
                # The database is busy, a deadlock was broken, or a writer without claims (an older
                # version during a rolling upgrade) won a race: retry; the re-check then sees its lead.
                if not _retryable(exc):
                    return not_stored(exc, unexpected=True), 0
                if attempt == len(RETRY_DELAYS):
                    return not_stored(exc), 0
                await asyncio.sleep(RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")

    async def _prune_claims(self) -> None:
        """Drop capture claims older than the window (they can no longer decide anything)."""
        self._next_prune = time.monotonic() + self.PRUNE_EVERY_SECONDS
        try:
            await self._store.prune_claims(utcnow() - self._window - timedelta(hours=1))
        except Exception as exc:  # housekeeping: the next prune tries again
            log.warning("capture_claims_prune_failed", exc_type=type(exc).__name__)

    # -- The database cannot be reached: the spool -------------------------------------------------
    async def _to_spool(self, items: list[PreparedLead]) -> list[Result]:
        """The hook where "the database could not store this batch" becomes a 202 instead of a 503."""
        assert self.spool is not None
        try:
            records = await self.spool.append(items)
        except SpoolUnavailable as exc:
            log.error("capture_spool_failed", size=len(items), reason=str(exc))
            return [not_stored(exc) for _ in items]
        return [policy.spooled_outcome(record.lead, record.public_id) for record in records]

    async def write_spooled(self, records: list[Spooled]) -> None:
        """Store spooled leads (replay): in order, under their ids; ids already stored are skipped.

        A spooled lead was acknowledged, so it is never dropped: a duplicate of a lead stored meanwhile
        is stored too, linked to it (``previous_lead_id`` and a ``duplicate_submission`` activity on
        the earlier lead), and an Idempotency-Key that another lead took meanwhile is left off.
        """
        stored = await self._store.stored_public_ids([r.public_id for r in records])
        todo = [r.lead for r in records if r.public_id not in stored]
        if todo:
            written = await self._store.write(todo, self._planner(spooled=True))
            if written.leads and self.on_commit is not None:
                self.on_commit()
