"""Lead capture: from a validated request to a durably stored lead, its activity and its outbox job.

Requests are prepared concurrently (normalise, classify, encrypt) and then handed to one
:class:`CaptureWriter` per process, which commits whatever has queued up in a single transaction
(group commit). The first lead waits for nobody; while a commit is in flight the next ones queue and
share the next commit, so throughput grows with load while each acknowledged lead is on disk before
its response is sent. De-duplication, idempotency and the returning-visitor signal are decided inside
that transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.campaigns.service import CaptureCampaign
from leadflow.db import JsonText, SqliteInserter, database_unreachable, sqlite3_connection
from leadflow.enrichment.email_domain import classify_domain
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.ids import new_lead_ids
from leadflow.kit.text import email_index_form
from leadflow.leads import repository as repo
from leadflow.leads.activities import Activity
from leadflow.leads.models import OPTIONAL_FIELDS
from leadflow.leads.schemas import CaptureRequest
from leadflow.leads.spool import CaptureSpool, Spooled, SpoolUnavailable
from leadflow.privacy.regions import regime
from leadflow.privacy.repository import previously_erased, previously_erased_sqlite
from leadflow.scoring import rules
from leadflow.scoring.channels import classify
from leadflow.security.crypto import FieldCipher

log = structlog.get_logger("leadflow.capture")

PROCESS_JOB = "lead.process"
# The score is a pure function of its (hashable) input, and most leads share a few inputs.
_score = functools.lru_cache(maxsize=4096)(rules.score)
RESPONSE_TIMES = {"A": "2 hours", "B": "4 hours", "C": "24 hours", "D": "48 hours"}


@dataclass(slots=True)
class PreparedLead:
    campaign: CaptureCampaign
    values: dict[str, Any]
    email_hash: str
    score_input: rules.ScoreInput
    returning_hint: bool
    idempotency_key: str | None
    tracking_enabled: bool
    created_at: datetime | None = None  # only imports and the demo back-date a lead
    lead_ids: tuple[str, str] | None = None  # (uuid, public id) given before storing: spooled leads


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    kind: Literal["created", "duplicate", "replay", "key_conflict", "spooled"]
    public_id: str
    grade: str
    tracking_enabled: bool


def prepare(
    body: CaptureRequest,
    campaign: CaptureCampaign,
    cipher: FieldCipher,
    catalog: frozenset[str],
    client_ip: str | None,
    idempotency_key: str | None,
) -> PreparedLead:
    """Everything about a lead that needs no database: normal forms, channel, encryption."""
    contact, details, tracking, form = body.contact, body.lead_details, body.tracking, body.form_metadata
    domain = contact.email.rsplit("@", 1)[1]
    channel = classify(
        tracking.utm_source,
        tracking.utm_medium,
        tracking.utm_campaign,
        tracking.referrer_url,
        tracking.landing_page_url,
    )
    score_input = rules.ScoreInput(
        email_kind=classify_domain(domain),
        phone=contact.phone is not None,
        company=contact.company is not None,
        service_interest=details.service_interest,
        urgency=details.urgency,
        budget_range=details.budget_range,
        filled_optional=frozenset(
            f for f in OPTIONAL_FIELDS if getattr(contact, f, None) or getattr(details, f, None)
        ),
        time_on_page_seconds=tracking.time_on_page_seconds,
        channel=channel.name,
        service_catalog=catalog | rules.normalise_catalog(campaign.services),
    )
    submitted = form.timestamp
    if submitted is not None and submitted.tzinfo is None:
        submitted = submitted.replace(tzinfo=UTC)
    enc = cipher.encrypt
    values: dict[str, Any] = {
        "first_name": enc(contact.first_name, "first_name"),
        "last_name": enc(contact.last_name, "last_name"),
        "email": enc(contact.email, "email"),
        "email_domain": domain,
        "phone": enc(contact.phone, "phone"),
        "company": enc(contact.company, "company"),
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "source": body.source,
        "medium": channel.medium,
        "channel": channel.name,
        "utm_source": tracking.utm_source,
        "utm_medium": tracking.utm_medium,
        "utm_campaign": tracking.utm_campaign,
        "utm_term": tracking.utm_term,
        "utm_content": tracking.utm_content,
        "service_interest": details.service_interest,
        "urgency": details.urgency,
        "message": enc(details.message, "message"),
        "budget_range": details.budget_range,
        "timeline": details.timeline,
        "visitor_id": tracking.visitor_id,
        "session_id": tracking.session_id,
        "ip_address": enc(tracking.ip_address or client_ip, "ip_address"),
        "user_agent": enc(tracking.user_agent, "user_agent"),
        "referrer_url": tracking.referrer_url,
        "landing_page_url": tracking.landing_page_url,
        "time_on_page_seconds": tracking.time_on_page_seconds,
        "visit_count": tracking.visit_count,
        "form_type": form.form_type,
        "form_version": form.form_version,
        "consent_given": form.consent_given,
        "consent_at": utcnow() if form.consent_given else None,
        "consent_notice_version": form.consent_notice_version if form.consent_given else None,
        "do_not_sell": form.do_not_sell,
        "privacy_regime": regime(contact.country, contact.region) if contact.country else None,
        "email_kind": score_input.email_kind,
        "submitted_at": submitted,
        "status": "new",
        "idempotency_key": idempotency_key,
    }
    returning_hint = bool(tracking.returning_visitor) or (tracking.visit_count or 0) > 1
    return PreparedLead(
        campaign=campaign,
        values=values,
        email_hash=cipher.blind_index(email_index_form(contact.email)),
        score_input=score_input,
        returning_hint=returning_hint,
        idempotency_key=idempotency_key,
        tracking_enabled=bool(tracking.visitor_id or tracking.session_id),
    )


@dataclass(slots=True)
class _Known:
    """What the batch knows about one (campaign, person): their newest lead so far."""

    lead_id: int | None  # None while the lead is only in this batch
    public_id: str
    created_at: datetime
    position: int | None = None  # its place in the batch, for a lead of this batch


@dataclass(slots=True)
class _Plan:
    outcomes: list[CaptureOutcome | None] = field(default_factory=list)
    lead_rows: list[dict[str, Any]] = field(default_factory=list)
    lead_index: list[int] = field(default_factory=list)  # position in the batch of each lead row
    # (lead id, or None and the batch position of a lead written in this batch, metadata)
    duplicate_activities: list[tuple[int | None, int | None, dict[str, Any]]] = field(default_factory=list)


Pending = tuple[PreparedLead, "asyncio.Future[CaptureOutcome]"]
Result = CaptureOutcome | BaseException
RETRYABLE = (IntegrityError, DBAPIError, sqlite3.IntegrityError, sqlite3.OperationalError)


def not_stored(exc: BaseException, *, unexpected: bool = False) -> ApiError:
    """The one place where "the database could not store this lead" becomes an answer (503).

    Both write paths (async engine, SQLite writer thread) end here for a lead whose batch and whose own
    retries failed; nothing is queued in memory, the client retries with its Idempotency-Key. An
    ``unexpected`` error (not a database error) is logged with its stack.
    """
    log.error("capture_write_failed", exc_type=type(exc).__name__, exc_info=exc if unexpected else None)
    return ApiError(503, "SERVICE_UNAVAILABLE", "The lead could not be stored; retry shortly")


def claim_keys(items: Sequence[PreparedLead]) -> list[str]:
    """The capture claims of a batch: one per (campaign, person) and per (campaign, idempotency key).

    SHA-256 over the campaign id and the blind index (or the key): fixed length, no personal data.
    """
    keys: set[str] = set()
    for item in items:
        campaign = item.campaign.id
        keys.add(hashlib.sha256(f"p\0{campaign}\0{item.email_hash}".encode()).hexdigest())
        if item.idempotency_key:
            keys.add(hashlib.sha256(f"k\0{campaign}\0{item.idempotency_key}".encode()).hexdigest())
    return sorted(keys)


class CaptureWriter:
    """Group commit of captured leads: one transaction per drained batch.

    On SQLite (aiosqlite underneath) the batches are written by one writer thread on the raw
    ``sqlite3`` connection of the engine's single pooled connection, which the writer checks out
    for a *lease*: while leads keep arriving the thread commits batch after batch without waiting
    for the event loop in between, and hands each batch's answers back to the loop in one callback.
    A lease ends when no lead has arrived for ``linger_seconds`` or after ``lease_seconds``, so that
    other users of the pool (worker, API writes) get their turn. Elsewhere each batch goes through
    the async engine, and starts by locking the batch's capture claims (:func:`claim_keys`), which
    serialises captures of the same person or idempotency key across processes; on SQLite the writer
    thread's ``BEGIN IMMEDIATE`` already serialises every writer of the file.
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
        linger_seconds: float = 0.003,
    ) -> None:
        self._engine = engine
        self._window = dedup_window
        self._qualifying = frozenset(qualifying_grades)
        self._batch_max = batch_max
        self._lease_seconds = lease_seconds
        self._linger_seconds = linger_seconds
        self._wakeup = threading.Event()  # set by submit() while the writer thread lingers
        self._lingering = False
        self._queue: deque[Pending] = deque()  # appended on the loop, taken by the loop or the thread
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._direct = direct_sqlite and engine.dialect.name == "sqlite"
        self._thread: ThreadPoolExecutor | None = None
        self._inserters: tuple[SqliteInserter, SqliteInserter, SqliteInserter] | None = None
        if self._direct:
            self._inserters = (
                SqliteInserter(repo.leads, engine.dialect),
                SqliteInserter(repo.activities, engine.dialect),
                SqliteInserter(repo.jobs, engine.dialect),
            )
        self._breakdowns: dict[rules.Score, JsonText] = {}
        self._next_prune = time.monotonic() + self.PRUNE_EVERY_SECONDS
        self.batches = 0
        self.leads_written = 0
        self.on_commit: Callable[[], None] | None = None  # e.g. wake the in-process worker
        # PostgreSQL/MySQL: where a batch goes when the database cannot be reached (leads/spool.py).
        self.spool: CaptureSpool | None = None

    async def submit(self, item: PreparedLead) -> CaptureOutcome:
        if self._closed:
            raise ApiError(503, "SERVICE_UNAVAILABLE", "The service is shutting down; retry shortly")
        future: asyncio.Future[CaptureOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._lingering:
            self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        # The commit goes on even if this request is cancelled (the lead is in the queue and then simply
        # stored; a cancelled future is skipped when the batch is answered), so no shield is needed.
        return await future

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        log.info("capture_writer_closed", batches=self.batches, leads=self.leads_written)

    def _take(self) -> list[Pending]:
        batch: list[Pending] = []
        while self._queue and len(batch) < self._batch_max:
            batch.append(self._queue.popleft())
        return batch

    def _deliver(self, batch: list[Pending], results: Sequence[Result], written: int) -> None:
        """On the loop: answer a committed batch's submitters."""
        self.batches += 1
        self.leads_written += written
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if written and self.on_commit is not None:
            self.on_commit()

    async def _drain(self) -> None:
        while self._queue:
            if self._direct:
                async with self._engine.connect() as conn:  # the pool's one SQLite connection
                    db = sqlite3_connection((await conn.get_raw_connection()).driver_connection)
                    if db is not None:
                        await self._lease(db)
                        continue
                self._direct = False  # not aiosqlite underneath: the general path from now on
            batch = self._take()
            items = [item for item, _ in batch]
            results: list[Result]
            if self.spool is not None:
                for item in items:  # ids first: a batch cut off mid-commit and then spooled keeps them
                    item.lead_ids = item.lead_ids or new_lead_ids()
                if self.spool.database_suspect():
                    self._deliver(batch, await self._to_spool(items), 0)
                    continue
            try:
                outcomes, written = await self._write_async(items)
                results = list(outcomes)
            except Exception as exc:
                if self.spool is not None and database_unreachable(exc):
                    self.spool.mark_down()
                    self._deliver(batch, await self._to_spool(items), 0)
                    continue
                log.warning("capture_batch_failed", size=len(items), exc_type=type(exc).__name__)
                results, written = await self._write_one_by_one(items)
            self._deliver(batch, results, written)
            if time.monotonic() >= self._next_prune:
                await self._prune_claims()

    async def _prune_claims(self) -> None:
        """Drop capture claims older than the window (they can no longer decide anything)."""
        self._next_prune = time.monotonic() + self.PRUNE_EVERY_SECONDS
        try:
            async with self._engine.begin() as conn:
                await repo.prune_claims(conn, utcnow() - self._window - timedelta(hours=1))
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
        results: list[Result] = []
        for record in records:
            inputs = dataclasses.replace(
                record.lead.score_input, returning_visitor=record.lead.returning_hint
            )
            results.append(
                CaptureOutcome(
                    "spooled", record.public_id, _score(inputs).grade, record.lead.tracking_enabled
                )
            )
        return results

    async def write_spooled(self, records: list[Spooled]) -> None:
        """Store spooled leads (replay): in order, under their ids; ids already stored are skipped.

        A spooled lead was acknowledged, so it is never dropped: a duplicate of a lead stored meanwhile
        is stored too, linked to it (``previous_lead_id`` and a ``duplicate_submission`` activity on
        the earlier lead), and an Idempotency-Key that another lead took meanwhile is left off.
        """
        async with self._engine.connect() as conn:
            stored = await repo.existing_public_ids(conn, [r.public_id for r in records])
        todo = [r.lead for r in records if r.public_id not in stored]
        if todo:
            _, written = await self._write_async(todo, spooled=True)
            if written and self.on_commit is not None:
                self.on_commit()

    async def _write_one_by_one(self, items: list[PreparedLead]) -> tuple[list[Result], int]:
        results: list[Result] = []
        written = 0
        for item in items:
            for attempt in range(3):
                try:
                    outcomes, count = await self._write_async([item])
                    results.append(outcomes[0])
                    written += count
                    break
                except RETRYABLE as exc:
                    # The database is busy, a deadlock was broken, or a writer without claims (an older
                    # version during a rolling upgrade) won a race: retry; the re-check then sees its lead.
                    if attempt == 2:
                        results.append(not_stored(exc))
                    else:
                        await asyncio.sleep(0.05 * (attempt + 1))
                except Exception as exc:
                    results.append(not_stored(exc, unexpected=True))
                    break
        return results, written

    # -- SQLite: the writer thread -------------------------------------------------------------------
    async def _lease(self, db: sqlite3.Connection) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="leadflow-capture")
        done = self._thread.submit(self._lease_sync, db, asyncio.get_running_loop())
        try:
            await asyncio.wrap_future(done)
        except asyncio.CancelledError:
            # The connection goes back to the pool only once the thread has let go of it.
            futures.wait([done])
            raise

    def _lease_sync(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """In the writer thread: commit batch after batch while leads wait, within one lease."""
        deadline = time.monotonic() + self._lease_seconds
        while True:
            batch = self._take()
            if not batch and self._linger():
                batch = self._take()
            if not batch:
                return
            items = [item for item, _ in batch]
            try:
                outcomes, written = self._write_sqlite(db, items)
                results: list[Result] = list(outcomes)
            except Exception as exc:
                log.warning("capture_batch_failed", size=len(items), exc_type=type(exc).__name__)
                results, written = self._write_one_by_one_sqlite(db, items)
            loop.call_soon_threadsafe(self._deliver, batch, results, written)
            if time.monotonic() >= deadline:
                return

    def _linger(self) -> bool:
        """Wait (up to linger_seconds) for the next lead rather than end the lease at once.

        Going back to the loop to end a lease and take a new one waits behind everything the loop has
        to do (under load: answering the batch just committed). Waiting here instead lets the next
        batch start while the loop is still busy, so committing and answering overlap.
        """
        self._wakeup.clear()
        self._lingering = True
        try:
            if self._queue:  # arrived in between: no wait (submit() saw _lingering still False)
                return True
            return self._wakeup.wait(self._linger_seconds)
        finally:
            self._lingering = False

    def _write_one_by_one_sqlite(
        self, db: sqlite3.Connection, items: list[PreparedLead]
    ) -> tuple[list[Result], int]:
        results: list[Result] = []
        written = 0
        for item in items:
            for attempt in range(3):
                try:
                    outcomes, count = self._write_sqlite(db, [item])
                    results.append(outcomes[0])
                    written += count
                    break
                except RETRYABLE as exc:
                    if attempt == 2:
                        results.append(not_stored(exc))
                    else:
                        time.sleep(0.05 * (attempt + 1))
                except Exception as exc:
                    results.append(not_stored(exc, unexpected=True))
                    break
        return results, written

    def _write_sqlite(
        self, db: sqlite3.Connection, items: list[PreparedLead]
    ) -> tuple[list[CaptureOutcome], int]:
        """One batch in one transaction on the raw sqlite3 connection (in the writer thread).

        The same reads, plan and rows as :meth:`_write_async`, in BEGIN IMMEDIATE ... COMMIT (durable:
        the connection runs with synchronous=FULL). The event loop stays free meanwhile, also while
        SQLite waits for fsync or for another process's write lock (busy_timeout).
        """
        assert self._inserters is not None
        leads_in, activities_in, jobs_in = self._inserters
        now = utcnow()
        db.execute("BEGIN IMMEDIATE")
        try:
            earlier = repo.latest_by_email_hashes_sqlite(db, (i.email_hash for i in items))
            visitors = repo.seen_visitors_sqlite(
                db, (i.values["visitor_id"] for i in items if i.values["visitor_id"])
            )
            keyed = [(i.campaign.id, i.idempotency_key) for i in items if i.idempotency_key]
            by_key = {
                (r.campaign_id, r.idempotency_key): r for r in repo.by_idempotency_keys_sqlite(db, keyed)
            }
            plan = self._plan(items, earlier, visitors, by_key, now, self._breakdown_json)
            ids: list[int] = []
            erased: set[str] = set()
            if plan.lead_rows:
                erased = previously_erased_sqlite(db, sorted({r["email_hash"] for r in plan.lead_rows}))
                # SQLite gives an INTEGER PRIMARY KEY without AUTOINCREMENT max + 1; naming the ids
                # ourselves (nobody else can insert inside BEGIN IMMEDIATE) saves reading them back.
                first = repo.next_lead_id_sqlite(db)
                ids = list(range(first, first + len(plan.lead_rows)))
                for row, lead_id in zip(plan.lead_rows, ids, strict=True):
                    row["id"] = lead_id
                leads_in.insert(db, plan.lead_rows)
            activity_rows, job_rows = self._follow_up_rows(plan, ids, erased, now)
            activities_in.insert(db, activity_rows)
            jobs_in.insert(db, job_rows)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return [o for o in plan.outcomes if o is not None], len(ids)

    def _breakdown_json(self, score: rules.Score) -> JsonText:
        """The stored score breakdown, serialised once per distinct score (most leads share a few)."""
        text = self._breakdowns.get(score)
        if text is None:
            assert self._inserters is not None
            if len(self._breakdowns) >= 4096:
                self._breakdowns.clear()
            text = self._breakdowns[score] = self._inserters[0].json_text(
                "score_breakdown", score.breakdown()
            )
        return text

    # -- Any database: the async engine -----------------------------------------------------------
    async def _write_async(
        self, items: list[PreparedLead], *, spooled: bool = False
    ) -> tuple[list[CaptureOutcome], int]:
        """Any database, through the async engine (``spooled``: a replay, see :meth:`write_spooled`)."""
        now = utcnow()
        async with self._engine.begin() as conn:
            # First statement: lock this batch's people and idempotency keys against other processes.
            await repo.lock_claims(conn, claim_keys(items), now)
            earlier = await repo.latest_by_email_hashes(conn, (i.email_hash for i in items))
            visitors = await repo.seen_visitors(
                conn, (i.values["visitor_id"] for i in items if i.values["visitor_id"])
            )
            keyed = [(i.campaign.id, i.idempotency_key) for i in items if i.idempotency_key]
            by_key = {
                (r.campaign_id, r.idempotency_key): r for r in await repo.by_idempotency_keys(conn, keyed)
            }
            plan = self._plan(items, earlier, visitors, by_key, now, rules.Score.breakdown, spooled=spooled)
            erased = await previously_erased(conn, sorted({r["email_hash"] for r in plan.lead_rows}))
            ids = await repo.insert_leads(conn, plan.lead_rows) if plan.lead_rows else []
            activity_rows, job_rows = self._follow_up_rows(plan, ids, erased, now)
            await repo.insert_activities(conn, activity_rows)
            await repo.insert_jobs(conn, job_rows)
        return [o for o in plan.outcomes if o is not None], len(ids)

    @staticmethod
    def _follow_up_rows(
        plan: _Plan, ids: list[int], erased: set[str], now: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The activity and outbox job rows of a planned batch, once its leads have ids."""
        activity_rows: list[dict[str, Any]] = []
        job_rows: list[dict[str, Any]] = []
        id_at = dict(zip(plan.lead_index, ids, strict=True))
        for row, lead_id in zip(plan.lead_rows, ids, strict=True):
            if row["email_hash"] in erased:
                activity_rows.append(
                    Activity(
                        lead_id,
                        "previously_erased",
                        "This person asked for erasure before; check consent before contacting",
                        now,
                    ).row()
                )
            activity_rows.append(
                Activity(
                    lead_id,
                    "created",
                    f"Lead captured from {row['source']} ({row['channel']})",
                    now,
                    details={
                        "score": row["lead_score"],
                        "grade": row["lead_grade"],
                        "channel": row["channel"],
                        "previous_lead_id": row["previous_lead_id"],
                    },
                ).row()
            )
            job_rows.append(
                {
                    "kind": PROCESS_JOB,
                    "payload": {"lead_id": lead_id, "public_id": row["public_id"]},
                    "status": "pending",
                    "attempts": 0,
                    "max_attempts": 8,
                    "run_at": now,
                    "lead_id": lead_id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        for known_id, position, meta in plan.duplicate_activities:
            activity_rows.append(
                Activity(
                    known_id if known_id is not None else id_at[position or 0],
                    "duplicate_submission",
                    "The same person submitted this campaign's form again",
                    now,
                    details=meta,
                ).row()
            )
        return activity_rows, job_rows

    def _plan(
        self,
        items: list[PreparedLead],
        earlier: Sequence[Any],
        visitors: set[str],
        by_key: dict[tuple[str, str], Any],
        now: datetime,
        breakdown: Callable[[rules.Score], Any],
        *,
        spooled: bool = False,
    ) -> _Plan:
        """Decide each item's fate (replay, conflict, duplicate, new) and build the new leads' rows.

        ``breakdown`` gives the stored form of a score's breakdown (a dict, or its cached JSON text).
        ``spooled``: the items were acknowledged from the spool, so each becomes a lead (see
        :meth:`CaptureWriter.write_spooled`).
        """
        plan = _Plan()
        newest: dict[tuple[str, str], _Known] = {}
        for row in earlier:  # newest first: keep the first seen per (campaign, person)
            newest.setdefault(
                (row.campaign_id, row.email_hash), _Known(row.id, row.public_id, row.created_at)
            )
        batch_keys: dict[tuple[str, str], tuple[str, str, str, bool]] = {}
        seen_visitors = set(visitors)
        horizon = now - self._window
        for position, item in enumerate(items):
            person = (item.campaign.id, item.email_hash)
            key = (item.campaign.id, item.idempotency_key) if item.idempotency_key else None
            drop_key = spooled and key is not None and (key in by_key or key in batch_keys)
            if drop_key:
                key = None  # the key went to another lead meanwhile: this one is stored without it
            if key is not None:
                hit = by_key.get(key)
                if hit is not None:
                    kind: Literal["replay", "key_conflict"] = (
                        "replay" if hit.email_hash == item.email_hash else "key_conflict"
                    )
                    plan.outcomes.append(
                        CaptureOutcome(
                            kind, hit.public_id, hit.lead_grade, bool(hit.visitor_id or hit.session_id)
                        )
                    )
                    continue
                if key in batch_keys:
                    public_id, email_hash, grade, tracked = batch_keys[key]
                    kind = "replay" if email_hash == item.email_hash else "key_conflict"
                    plan.outcomes.append(CaptureOutcome(kind, public_id, grade, tracked))
                    continue
            known = newest.get(person)
            if spooled and known is not None and known.created_at >= horizon:
                plan.duplicate_activities.append(
                    (
                        known.lead_id,
                        known.position,
                        {"source": item.values["source"], "spooled_lead_id": (item.lead_ids or ("", ""))[1]},
                    )
                )
            elif known is not None and known.created_at >= horizon:
                plan.outcomes.append(CaptureOutcome("duplicate", known.public_id, "", item.tracking_enabled))
                plan.duplicate_activities.append(
                    (
                        known.lead_id,
                        known.position,
                        {
                            "source": item.values["source"],
                            "channel": item.values["channel"],
                            "utm_campaign": item.values["utm_campaign"],
                            "utm_content": item.values["utm_content"],
                        },
                    )
                )
                continue
            visitor = item.values["visitor_id"]
            returning = item.returning_hint or (visitor is not None and visitor in seen_visitors)
            if visitor:
                seen_visitors.add(visitor)
            inputs = item.score_input
            result = _score(
                rules.ScoreInput(
                    email_kind=inputs.email_kind,
                    phone=inputs.phone,
                    company=inputs.company,
                    service_interest=inputs.service_interest,
                    urgency=inputs.urgency,
                    budget_range=inputs.budget_range,
                    filled_optional=inputs.filled_optional,
                    time_on_page_seconds=inputs.time_on_page_seconds,
                    returning_visitor=returning,
                    channel=inputs.channel,
                    service_catalog=inputs.service_catalog,
                )
            )
            uuid, public_id = item.lead_ids or new_lead_ids()
            row = dict(item.values)
            if drop_key:
                row["idempotency_key"] = None
            row.update(
                uuid=uuid,
                public_id=public_id,
                email_hash=item.email_hash,
                returning_visitor=returning,
                lead_score=result.total,
                lead_grade=result.grade,
                score_breakdown=breakdown(result),
                qualification_status="marketing_qualified"
                if result.grade in self._qualifying
                else "unqualified",
                previous_lead_id=known.lead_id if known is not None else None,
                created_at=item.created_at or now,
                updated_at=item.created_at or now,
            )
            plan.lead_index.append(position)
            plan.lead_rows.append(row)
            newest[person] = _Known(None, public_id, now, position)
            if key is not None:
                batch_keys[key] = (public_id, item.email_hash, result.grade, item.tracking_enabled)
            plan.outcomes.append(CaptureOutcome("created", public_id, result.grade, item.tracking_enabled))
        return plan
