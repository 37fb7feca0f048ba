"""The append-only audit log: who read or changed what, when, from where, through which channel.

No code updates these rows and no endpoint changes them; the admin API only lists them. The only
delete is the retention purge (``privacy.repository.purge_before``): entries older than
``RETENTION_DAYS`` go, like the leads they describe.

High-volume accesses that hold no personal data — status look-ups, campaign and analytics reads,
refused requests (401/403/429) — go through :class:`AuditBuffer`: one entry per actor, address, action
and minute, with the count and the distinct targets, so a flood cannot drown the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.kit.clock import utcnow
from leadflow.kit.state import AfterCommit, AfterCommitDep, AppState, AppStateDep, WriteConn
from leadflow.security import repository as repo
from leadflow.security.repository import AuditRow
from leadflow.security.repository import audit as audit  # the table (the SQL is in the repository)
from leadflow.security.tokens import Principal

log = structlog.get_logger("leadflow.audit")


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: str | None
    channel: str  # api | dashboard | cli | worker
    ip: str | None = None
    request_id: str | None = None

    @classmethod
    def from_request(cls, request: Request, principal: Principal | None, channel: str = "api") -> Actor:
        state = request.scope.get("state", {})
        return cls(
            name=principal.actor if principal else "anonymous",
            role=principal.role if principal else None,
            channel=channel,
            ip=state.get("client_ip") or (request.client.host if request.client else None),
            request_id=state.get("request_id"),
        )


CLI = Actor(name="cli", role="admin", channel="cli")


def _row(
    actor: Actor, action: str, target_type: str | None, target_id: str | None, details: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "created_at": utcnow(),
        "actor": actor.name[:100],
        "role": actor.role,
        "channel": actor.channel,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "ip": actor.ip,
        "request_id": actor.request_id,
        "details": details,
    }


async def record(
    conn: AsyncConnection,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one entry in the caller's transaction (a change and its audit entry commit together)."""
    await repo.insert_audit(conn, [_row(actor, action, target_type, target_id, details)])


async def record_now(
    engine: AsyncEngine,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one entry in its own transaction (reads of personal data)."""
    async with engine.begin() as conn:
        await record(conn, actor, action, target_type, target_id, details)


@dataclass(frozen=True, slots=True)
class Change:
    """What a route that changes something receives (``change_dependency(scope)``): the connection whose
    transaction the boundary commits, who acts, the application state and the after-commit hook."""

    conn: AsyncConnection
    actor: Actor
    principal: Principal
    state: AppState
    after: AfterCommit

    async def record(
        self,
        action: str,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """The audit entry of the change, in the same transaction."""
        await record(self.conn, self.actor, action, target_type, target_id, details)


def change_dependency(scope: str) -> Callable[..., Awaitable[Change]]:
    """Dependency: a :class:`Change` for a principal whose role grants ``scope`` (authenticated before
    the connection is taken)."""
    from leadflow.security.auth import require

    async def dependency(
        request: Request,
        *,
        principal: Principal = Depends(require(scope)),
        state: AppStateDep,
        conn: WriteConn,
        after: AfterCommitDep,
    ) -> Change:
        return Change(conn, Actor.from_request(request, principal), principal, state, after)

    dependency.__name__ = f"change_{scope.replace(':', '_')}"
    return dependency


AdminChange = Annotated[Change, Depends(change_dependency("admin"))]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def page(conn: AsyncConnection, flt: AuditFilter, before_id: int | None, limit: int) -> list[AuditRow]:
    equal = (
        ("actor", flt.actor),
        ("action", flt.action),
        ("target_type", flt.target_type),
        ("target_id", flt.target_id),
    )
    return await repo.audit_page(conn, equal, flt.since, flt.until, before_id, limit)


# -- aggregated entries ------------------------------------------------------------------------------
MAX_TARGETS = 50  # distinct target ids kept per aggregated entry (the count covers all)
MAX_BUCKETS = 10_000  # a bound on memory: beyond it, new keys share one overflow entry per minute
TARGET_ID_LENGTH = 100  # audit_log.target_id is VARCHAR(100): a longer made-up id would fail the flush


@dataclass(slots=True)
class _Bucket:
    count: int = 0
    targets: list[str] = field(default_factory=list)
    details: dict[str, Any] | None = None


_Key = tuple[datetime, str, str | None, str, str | None, str, str | None, tuple[tuple[str, str], ...]]


class AuditBuffer:
    """Counts accesses per (minute, actor, role, channel, IP, action, target type, details) in memory and writes
    one audit entry per key once its minute has passed (and everything at shutdown).

    Entries carry ``details = {"aggregated": true, "count": n, "target_ids": [...], ...}`` and the
    minute's start as ``created_at``. Each process writes its own entries (several replicas: one entry
    per replica and minute). Counts of a process that crashes are lost (at most a minute's worth).
    """

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._buckets: dict[_Key, _Bucket] = {}

    def add(
        self,
        actor: Actor,
        action: str,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        minute = self._clock().replace(second=0, microsecond=0)
        variant = tuple(sorted((k, str(v)) for k, v in (details or {}).items()))
        key: _Key = (
            minute,
            actor.name[:100],
            actor.role,
            actor.channel,
            actor.ip,
            action,
            target_type,
            variant,
        )
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                key = (minute, "overflow", None, actor.channel, None, action, target_type, variant)
                bucket = self._buckets.setdefault(key, _Bucket())
            else:
                bucket = self._buckets[key] = _Bucket(details=details)
        bucket.count += 1
        if target_id is not None:
            target_id = target_id[:TARGET_ID_LENGTH]
        if target_id is not None and len(bucket.targets) < MAX_TARGETS and target_id not in bucket.targets:
            bucket.targets.append(target_id)

    def pending(self) -> int:
        return sum(b.count for b in self._buckets.values())

    async def flush(self, engine: AsyncEngine, *, everything: bool = False) -> int:
        """Write the entries of past minutes (all of them with ``everything``); returns how many."""
        current = self._clock().replace(second=0, microsecond=0)
        keys = [k for k in self._buckets if everything or k[0] < current]
        if not keys:
            return 0
        # Taken out before the write: a request counted while the insert runs starts a new bucket
        # instead of adding to one that is about to be dropped; on failure they are put back.
        taken = {key: self._buckets.pop(key) for key in keys}
        rows = []
        for key, bucket in taken.items():
            minute, name, role, channel, ip, action, target_type, _ = key
            rows.append(
                {
                    "created_at": minute,
                    "actor": name,
                    "role": role,
                    "channel": channel,
                    "action": action,
                    "target_type": target_type,
                    "target_id": bucket.targets[0] if len(bucket.targets) == 1 else None,
                    "ip": ip,
                    "request_id": None,
                    "details": {
                        **(bucket.details or {}),
                        "aggregated": True,
                        "count": bucket.count,
                        "window_seconds": 60,
                        "target_ids": bucket.targets,
                    },
                }
            )
        try:
            async with engine.begin() as conn:
                await repo.insert_audit(conn, rows)
        except BaseException:
            for key, bucket in taken.items():
                self._put_back(key, bucket)
            raise
        return len(rows)

    def _put_back(self, key: _Key, bucket: _Bucket) -> None:
        current = self._buckets.get(key)
        if current is None:
            self._buckets[key] = bucket
            return
        current.count += bucket.count
        for target in bucket.targets:
            if len(current.targets) < MAX_TARGETS and target not in current.targets:
                current.targets.append(target)

    async def run(self, engine: AsyncEngine, stop: asyncio.Event, every: float) -> None:
        """Flush past minutes every ``every`` seconds until ``stop``; then flush everything."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
            try:
                await self.flush(engine, everything=stop.is_set())
            except Exception as exc:  # the database is down: keep counting, try again later
                log.warning("audit_flush_failed", exc_type=type(exc).__name__, pending=self.pending())


REFUSALS = {401: "access.unauthorized", 403: "access.forbidden", 429: "access.rate_limited"}


def note_refusal(scope: Any, status: int, error: str) -> None:
    """Count a refused request (401/403/429) in the app's :class:`AuditBuffer` (aggregated per minute)."""
    action = REFUSALS.get(status)
    if action is None:
        return
    from leadflow.kit.state import STATE_KEY, AppState

    app_state = getattr(getattr(scope.get("app"), "state", None), STATE_KEY, None)
    if not isinstance(app_state, AppState):
        return  # the worker's metrics app keeps no audit buffer
    buffer = app_state.audit
    state = scope.get("state") or {}
    principal = state.get("principal")
    route = scope.get("route")
    client = scope.get("client")
    actor = Actor(
        name=principal.actor if isinstance(principal, Principal) else "anonymous",
        role=principal.role if isinstance(principal, Principal) else None,
        channel="api",
        ip=state.get("client_ip") or (client[0] if client else None),
    )
    path = getattr(route, "path", None) or "unmatched"
    buffer.add(actor, action, "route", str(path), {"error": error})
