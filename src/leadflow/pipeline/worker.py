"""The outbox worker: claims due jobs with a lease, runs their handler, retries or dead-letters.

Any number of workers on any number of hosts share the queue on PostgreSQL and MySQL (claims use
``SELECT … FOR UPDATE SKIP LOCKED``); SQLite runs one worker. Leases are short (``WORKER_LEASE_SECONDS``,
15 s) and a heartbeat renews them every third of a lease while the jobs run. A worker that dies stops
renewing: its leases run out within one lease and another worker takes the jobs again, so every job
finishes; deliveries are idempotent at the receiver (upserts, dedup keys), which makes a repeated
attempt harmless. A worker that is stopped (SIGTERM) lets its running jobs finish for
``SHUTDOWN_GRACE_SECONDS``, then gives the rest back at once (:func:`repository.release`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.config import Settings
from leadflow.integrations.base import DeliveryError, PermanentError, RetriableError
from leadflow.integrations.http import excerpt
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.observability import metrics
from leadflow.pipeline import repository as repo
from leadflow.pipeline.retry import next_run_at
from leadflow.pipeline.scheduler import next_slot
from leadflow.security.crypto import FieldCipher

log = structlog.get_logger("leadflow.worker")


@dataclass(slots=True)
class WorkerContext:
    """What handlers get: shared clients built once per worker."""

    engine: AsyncEngine
    settings: Settings
    cipher: FieldCipher
    http: httpx.AsyncClient
    worker_id: str
    services: dict[str, Any] = field(default_factory=dict)  # e.g. the enricher


@dataclass(frozen=True, slots=True)
class Staged:
    """Work a handler leaves for the transaction that records its job as done.

    The worker hands every staged item of a batch to the committer registered for ``group`` at once
    (see :class:`Worker`), so e.g. routing locks the team once for a whole batch of leads.
    """

    group: str
    item: Any


# Work a handler leaves for the worker's transaction, run with its connection (e.g. a retention
# batch); returns follow-up jobs that depend on what it wrote.
Write = Callable[[AsyncConnection], Awaitable[Sequence[repo.NewJob]]]


@dataclass(frozen=True, slots=True)
class HandlerResult:
    """What a handler did and what it wants written.

    A handler never opens a transaction of its own: everything below is written in the transaction
    that marks its job done, and only if this worker still holds the job (its lease).
    """

    status_code: int | None = None
    response_excerpt: str | None = None
    connector: str = ""
    activities: tuple[dict[str, Any], ...] = ()  # lead_activities rows
    jobs: tuple[repo.NewJob, ...] = ()  # follow-up jobs
    staged: Staged | None = None  # batched with the other jobs' items of its group (a committer)
    payload: dict[str, Any] | None = None  # the job's new payload (e.g. personal data scrubbed)
    write: Write | None = None  # anything else, given the worker's connection


class RetryLater(RetriableError):
    """Retry the job later and store ``payload`` as its payload meanwhile (under the lease check),
    e.g. the channels that already took a message, so the retry skips them."""

    def __init__(self, message: str, *, payload: dict[str, Any]) -> None:
        super().__init__(message)
        self.payload = payload


Handler = Callable[[AnyRow, WorkerContext], Awaitable[HandlerResult]]
# Applies the staged items of one group inside the batch transaction; raising fails the whole batch,
# which is then recorded job by job (so one bad item only retries its own job).
Committer = Callable[[AsyncConnection, list[Any], WorkerContext], Awaitable[None]]
# What a domain adds to the transaction that gives up on a job: (job, connector, error, ctx, now) →
# activities and follow-up jobs (e.g. a ``delivery_failed`` activity on the lead, an alert digest).
DeadLetterHook = Callable[[AnyRow, str, str, WorkerContext, datetime], HandlerResult]
# Stores the activity rows handlers return (the leads domain registers it).
ActivityWriter = Callable[[AsyncConnection, list[dict[str, Any]]], Awaitable[None]]


@dataclass(slots=True)
class _Finished:
    job: AnyRow
    started: datetime
    duration: float
    result: HandlerResult | None
    error: BaseException | None
    done: asyncio.Future[None]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Claims due jobs, runs up to ``concurrency`` at once, and records them in group commits.

    Handlers do their network work concurrently; what they want written (activities, follow-up
    jobs, staged items such as routing decisions) comes back in their :class:`HandlerResult` and is
    committed together with the job's completion and its attempt record. Jobs that finish while a
    commit is running are recorded together in the next one, so a busy worker writes a whole batch of
    jobs per transaction instead of several transactions per job.
    """

    def __init__(
        self,
        ctx: WorkerContext,
        handlers: Mapping[str, Handler],
        *,
        committers: Mapping[str, Committer] | None = None,
        periodic: Mapping[str, timedelta] | None = None,
        dead_letter_hooks: Sequence[DeadLetterHook] = (),
        activity_writer: ActivityWriter | None = None,
        concurrency: int | None = None,
        lease_seconds: float | None = None,
        poll_seconds: float | None = None,
        job_timeout_seconds: float | None = None,
        grace_seconds: float | None = None,
    ) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.handlers = dict(handlers)
        self.committers = dict(committers or {})
        self.periodic = dict(periodic or {})
        self.dead_letter_hooks = tuple(dead_letter_hooks)
        self.activity_writer = activity_writer
        self.concurrency = concurrency or settings.worker_concurrency
        self.lease = timedelta(seconds=lease_seconds or settings.worker_lease_seconds)
        self.poll = poll_seconds if poll_seconds is not None else settings.worker_poll_seconds
        self.job_timeout = job_timeout_seconds or settings.worker_job_timeout_seconds
        self.grace = grace_seconds if grace_seconds is not None else settings.shutdown_grace_seconds
        self._held: dict[int, AnyRow] = {}  # claimed and not yet recorded: their leases are renewed
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._finished: list[_Finished] = []
        self._committing = False
        self.processed = 0

    def wake(self) -> None:
        """Tell an idle worker there is new work (capture calls this in the same process)."""
        self._wake.set()

    async def heartbeat(self) -> None:
        """Renew the leases of the jobs this worker holds, every third of a lease, until cancelled."""
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            ids = sorted(self._held)
            if not ids:
                continue
            now = utcnow()
            try:
                async with self.ctx.engine.begin() as conn:
                    held = await repo.renew(conn, self.ctx.worker_id, ids, now + self.lease, now)
            except Exception as exc:  # the database is away: the leases may run out, jobs are retaken
                log.warning("lease_renewal_failed", jobs=len(ids), exc_type=type(exc).__name__)
                continue
            if held < len(ids):
                log.warning("lease_lost", jobs=len(ids) - held, worker=self.ctx.worker_id)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker_started", worker=self.ctx.worker_id, concurrency=self.concurrency)
        beat = asyncio.create_task(self.heartbeat())
        try:
            await self._loop(stop)
        finally:
            await self.shutdown()
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        log.info("worker_stopped", worker=self.ctx.worker_id, processed=self.processed)

    async def shutdown(self) -> None:
        """Stop: let running jobs finish for ``grace`` seconds, then cancel the rest and give them back."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=self.grace)
        late = [t for t in self._running if not t.done()]
        if late:
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.drain()  # a group commit handed over to a new task
        ids = sorted(self._held)
        if ids:
            now = utcnow()
            try:
                async with self.ctx.engine.begin() as conn:
                    released = await repo.release(conn, self.ctx.worker_id, ids, now)
            except Exception as exc:  # their leases run out instead
                log.error("lease_release_failed", jobs=len(ids), exc_type=type(exc).__name__)
            else:
                log.info("jobs_released", jobs=released, worker=self.ctx.worker_id)
            self._held.clear()

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            metrics.WORKER_HEARTBEAT.set(time.time())
            try:
                claimed = await self.tick()
            except Exception as exc:  # the database went away: keep the loop alive
                log.error("worker_tick_failed", exc_type=type(exc).__name__, exc_info=exc)
                claimed = 0
            if claimed == 0:
                self._wake.clear()
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
                await asyncio.wait(waiters, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()

    async def drain(self) -> None:
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def run_until_idle(self, max_seconds: float = 30.0) -> int:
        """Process until nothing is due and nothing runs (tests, ``leadflow worker --once``)."""
        deadline = time.monotonic() + max_seconds
        before = self.processed
        beat = asyncio.create_task(self.heartbeat())
        try:
            while time.monotonic() < deadline:
                claimed = await self.tick()
                if claimed == 0 and not self._running:
                    break
                if claimed == 0:
                    await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            await self.drain()
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        return self.processed - before

    async def tick(self) -> int:
        """Claim what fits; with jobs running, wait until a quarter of the slots are free (fewer,
        larger claims)."""
        free = self.concurrency - len(self._running)
        if self._running and free < max(1, self.concurrency // 4):
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            return 1
        now = utcnow()
        async with self.ctx.engine.begin() as conn:
            rows = await repo.claim(conn, self.ctx.worker_id, free, self.lease, now)
        for row in rows:
            self._held[row.id] = row
            task = asyncio.create_task(self._run_one(row))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(rows)

    async def _run_one(self, job: AnyRow) -> None:
        started = utcnow()
        clock = time.perf_counter()
        handler = self.handlers.get(job.kind)
        connector = str((job.payload or {}).get("connector", ""))
        result: HandlerResult | None = None
        error: BaseException | None = None
        try:
            if handler is None:
                raise PermanentError(f"no handler for job kind {job.kind!r}")
            result = await asyncio.wait_for(handler(job, self.ctx), timeout=self.job_timeout)
            if result.staged is not None and result.staged.group not in self.committers:
                raise PermanentError(f"no committer for staged work {result.staged.group!r}")
        except TimeoutError:
            error = RetriableError(f"the job ran longer than {self.job_timeout:g} s")
        except Exception as exc:
            error = exc
        duration = time.perf_counter() - clock
        metrics.JOB_DURATION.labels(job.kind, connector).observe(duration)
        finished = _Finished(
            job, started, duration, result, error, asyncio.get_running_loop().create_future()
        )
        self._finished.append(finished)
        if not self._committing:
            await self._lead()
        await finished.done
        self._held.pop(job.id, None)
        self.processed += 1

    async def _lead(self) -> None:
        """Group commit: the first job to finish records everything that finished meanwhile."""
        self._committing = True
        try:
            while self._finished:
                batch, self._finished = self._finished, []
                try:
                    await self._commit(batch)
                finally:
                    for item in batch:
                        if not item.done.done():
                            item.done.set_result(None)
        finally:
            self._committing = False
            if self._finished:  # the leader was cancelled with others waiting: hand over
                task = asyncio.get_running_loop().create_task(self._lead())
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _commit(self, batch: list[_Finished]) -> None:
        """Record a batch in one transaction; if that fails, record each job on its own."""
        try:
            outcomes = await self._write_batch(batch)
        except Exception as exc:
            if len(batch) > 1:
                log.warning("job_batch_commit_failed", jobs=len(batch), exc_type=type(exc).__name__)
            outcomes = {}
            for item in batch:
                outcomes.update(await self._commit_alone(item, exc if len(batch) == 1 else None))
        for item in batch:
            outcome = outcomes.get(item.job.id)
            if outcome is not None:
                kind, connector = item.job.kind, str((item.job.payload or {}).get("connector", ""))
                metrics.JOBS_FINISHED.labels(kind, connector, outcome).inc()

    async def _commit_alone(self, item: _Finished, failure: BaseException | None) -> dict[int, str]:
        if failure is None:
            try:
                return await self._write_batch([item])
            except Exception as exc:
                failure = exc
        if item.error is None:
            # Its own writes failed (e.g. the lead was erased meanwhile): the job is retried.
            log.warning("job_commit_failed", job_id=item.job.id, exc_type=type(failure).__name__)
            item = _Finished(item.job, item.started, item.duration, None, failure, item.done)
            try:
                return await self._write_batch([item])
            except Exception as exc:
                failure = exc
        # The database itself is failing: the lease runs out and the job is taken again.
        log.error("job_record_failed", job_id=item.job.id, exc_type=type(failure).__name__, exc_info=failure)
        return {}

    async def _write_batch(self, batch: list[_Finished]) -> dict[int, str]:
        now = utcnow()
        outcomes: dict[int, str] = {}
        attempts: list[dict[str, Any]] = []
        woken = False
        async with self.ctx.engine.begin() as conn:
            states = await repo.claim_states(conn, sorted({item.job.id for item in batch}))

            def holds(item: _Finished) -> bool:
                state = states.get(item.job.id)
                return (
                    state is not None
                    and state.locked_by == self.ctx.worker_id
                    and state.status == "running"
                    and state.attempts == item.job.attempts
                )

            held = [item for item in batch if holds(item)]
            done = [item for item in held if item.error is None]
            groups: dict[str, list[Any]] = {}
            for item in done:
                assert item.result is not None
                if item.result.staged is not None:
                    groups.setdefault(item.result.staged.group, []).append(item.result.staged.item)
            for group, items in groups.items():
                await self.committers[group](conn, items, self.ctx)
            results = [item.result for item in done if item.result is not None]
            follow_ups: list[repo.NewJob] = []
            for result in results:
                if result.write is not None:
                    follow_ups += await result.write(conn)
            await repo.finish_many(conn, [item.job.id for item in done], now)
            payloads = {
                item.job.id: item.result.payload
                for item in done
                if item.result is not None and item.result.payload is not None
            }
            await repo.set_payloads(conn, payloads, now)
            follow_ups += [j for result in results for j in result.jobs]
            follow_ups += [
                j for item in done for j in next_slot(item.job.kind, item.job.dedup_key, self.periodic, now)
            ]
            await self._apply(conn, [a for result in results for a in result.activities], follow_ups, now)
            woken = any(j.run_at <= now for j in follow_ups)
            for item in batch:
                if item.job.id not in states:
                    # The job was deleted meanwhile (its lead was erased): nothing to record it on.
                    outcomes[item.job.id] = "deleted"
                    continue
                owned = holds(item)
                if item.error is None:
                    outcome = "success" if owned else "lost_lease"
                else:
                    outcome = await self._failed(conn, item, now) if owned else "lost_lease"
                outcomes[item.job.id] = outcome
                attempts.append(self._attempt(item, outcome))
            await repo.add_attempts(conn, attempts)
        if woken or groups:
            self._wake.set()
        return outcomes

    async def _apply(
        self,
        conn: AsyncConnection,
        activities: list[dict[str, Any]],
        follow_ups: list[repo.NewJob],
        now: datetime,
    ) -> None:
        if activities:
            if self.activity_writer is None:
                raise PermanentError("no activity writer registered for the activities this job returned")
            await self.activity_writer(conn, activities)
        if follow_ups:
            await repo.enqueue(conn, follow_ups, now)

    def _attempt(self, item: _Finished, outcome: str) -> dict[str, Any]:
        error = item.error
        answer: HandlerResult | DeliveryError | None = (
            item.result if item.result is not None else error if isinstance(error, DeliveryError) else None
        )
        return {
            "job_id": item.job.id,
            "attempt": item.job.attempts,
            "worker": self.ctx.worker_id,
            "duration_ms": int(item.duration * 1000),
            "started_at": item.started,
            "outcome": outcome,
            "status_code": answer.status_code if answer is not None else None,
            "response_excerpt": answer.response_excerpt if answer is not None else None,
            "error": _describe(error) if error is not None else None,
        }

    async def _failed(self, conn: AsyncConnection, item: _Finished, now: datetime) -> str:
        """Retry later or dead-letter a job this worker holds; returns the attempt's outcome."""
        job, error = item.job, item.error
        assert error is not None
        connector = str((job.payload or {}).get("connector", ""))
        message = _describe(error)
        retry_after = error.retry_after if isinstance(error, RetriableError) else None
        when = None
        if not isinstance(error, PermanentError):
            when = next_run_at(job.attempts, job.max_attempts, now, retry_after=retry_after)
        if isinstance(error, RetryLater):
            await repo.set_payloads(conn, {job.id: error.payload}, now)
        if when is None:
            await repo.bury(conn, job.id, self.ctx.worker_id, message, now)
            # What the domains add when a job is given up on (e.g. an activity on the lead, a digest).
            noted = [hook(job, connector, message, self.ctx, now) for hook in self.dead_letter_hooks]
            await self._apply(
                conn, [a for r in noted for a in r.activities], [j for r in noted for j in r.jobs], now
            )
            outcome = "dead" if not isinstance(error, PermanentError) else "permanent"
            log.warning(
                "job_dead",
                job_id=job.id,
                kind=job.kind,
                connector=connector,
                attempts=job.attempts,
                error=message,
            )
        else:
            await repo.reschedule(conn, job.id, self.ctx.worker_id, when, message, now)
            outcome = "retry"
            log.info(
                "job_retry",
                job_id=job.id,
                kind=job.kind,
                connector=connector,
                attempt=job.attempts,
                retry_in_s=round((when - now).total_seconds(), 1),
            )
        if not isinstance(error, DeliveryError):
            log.error(
                "job_error", job_id=job.id, kind=job.kind, exc_type=type(error).__name__, trace=_trace(error)
            )
        return outcome


def _describe(error: BaseException) -> str:
    """The error as stored on the job: for our own errors their message, else only the type.

    Third-party exception messages can carry request data, so they are not stored verbatim.
    """
    if isinstance(error, DeliveryError):
        return excerpt(str(error), 1000) or type(error).__name__
    return f"{type(error).__name__} (see worker log)"


def _trace(error: BaseException) -> str:
    """File and line of each frame, without exception messages or local values."""
    frames = traceback.extract_tb(error.__traceback__)
    return " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in reversed(frames))
