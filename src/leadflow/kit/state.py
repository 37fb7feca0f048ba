"""The application's typed state, and the request dependencies that hand it (and a connection) to routes.

Starlette's ``app.state`` is an untyped bag: ``request.app.state.engnie`` passes ``mypy --strict`` and
fails in production. Everything a route needs lives instead in one typed object stored under a single
key (``app.state.leadflow``) when the application starts:

* :class:`CoreState` — what authentication and ``/metrics`` need; the worker's small metrics app has it.
* :class:`AppState` — the API application: the core plus the caches, the capture writer, the audit
  buffer and the worker's wake-up call.

Routes receive them through dependencies (``state: AppStateDep``) and, for database work, a
connection whose transaction the boundary owns (``conn: WriteConn`` commits when the route returns and
rolls back when it raises, *before* the response is sent, so a 2xx always means committed;
``conn: ReadConn`` is a plain connection for reads). A route never opens ``engine.begin()`` itself.

What must wait until the writes are visible — dropping a cache entry (dropped before the commit, a
concurrent reader could cache the old row again), waking the worker, scrubbing the SQLite WAL — the
route hands to ``after: AfterCommitDep``: ``write_connection`` runs those callbacks once the
transaction has committed, and none of them when it rolls back. A route that answers a failure with a
response instead of raising (a page, not the error shape) calls ``after.cancel()`` to roll back.

Dependencies resolve in the order of the route's parameters: declare the principal
(``principal: Annotated[Principal, Depends(require(...))]``) *before* the connection, so a bad token
costs no connection and token look-ups never wait for the one the route holds (SQLite pools one).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ParamSpec

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.types import Scope

if TYPE_CHECKING:
    from leadflow.campaigns.analytics import AnalyticsCache
    from leadflow.campaigns.service import CampaignCache
    from leadflow.config import Settings
    from leadflow.db import PointReader
    from leadflow.leads.capture.service import CaptureWriter
    from leadflow.observability.metrics import Exposition
    from leadflow.security.audit import AuditBuffer
    from leadflow.security.clientip import Network
    from leadflow.security.crypto import FieldCipher
    from leadflow.security.ratelimit import Guard
    from leadflow.security.tokens import TokenStore


STATE_KEY = "leadflow"
P = ParamSpec("P")


@dataclass(slots=True, kw_only=True)
class CoreState:
    """What every Leadflow HTTP application has: settings, the engine, token look-ups, the guard, metrics."""

    settings: Settings
    engine: AsyncEngine
    tokens: TokenStore
    guard: Guard
    metrics: Exposition
    metrics_open_networks: tuple[Network, ...] = ()
    metrics_trusted: tuple[Network, ...] = ()


@dataclass(slots=True, kw_only=True)
class AppState(CoreState):
    """The API application's state (``create_app``)."""

    cipher: FieldCipher
    catalog: frozenset[str]
    point_reader: PointReader | None
    campaigns: CampaignCache
    analytics: AnalyticsCache
    audit: AuditBuffer
    writer: CaptureWriter
    wake_worker: Callable[[], None] = lambda: None

    def reads(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for short indexed reads (a session, one lead and its rows): on SQLite the
        inline :class:`~leadflow.db.PointReader` (no thread hand-offs, and not the engine's one pooled
        connection, which writes hold until their commit); elsewhere the engine's pool. Scans use
        ``engine.connect()``: an inline read blocks the event loop while it runs."""
        reader = self.point_reader
        return reader.connect() if reader is not None else self.engine.connect()


def install(app: FastAPI, state: CoreState) -> None:
    """Store ``state`` as the application's one state object."""
    setattr(app.state, STATE_KEY, state)


def core_of(app: object) -> CoreState:
    """The state of a Leadflow application (``app`` is the FastAPI/Starlette application)."""
    state = getattr(getattr(app, "state", None), STATE_KEY, None)
    if not isinstance(state, CoreState):
        raise RuntimeError("the application has not started (no Leadflow state): is the lifespan running?")
    return state


def state_of(app: object) -> AppState:
    """The API application's state (raises if ``app`` is another application, e.g. the metrics one)."""
    state = core_of(app)
    if not isinstance(state, AppState):
        raise RuntimeError("this application has no API state")
    return state


def scope_state(scope: Scope) -> AppState:
    """The API state from a raw ASGI scope (for pure-ASGI handlers)."""
    return state_of(scope["app"])


# The dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread
# pool, a thread hand-off per request for an attribute look-up.
async def core_state(request: Request) -> CoreState:
    """Dependency: the core state (authentication, metrics)."""
    return core_of(request.app)


async def app_state(request: Request) -> AppState:
    """Dependency: the API application's state."""
    return state_of(request.app)


class AfterCommit:
    """What a route wants done once its transaction has committed (``write_connection`` runs it).

    Callbacks run in the order they were added, after the commit and before the response is sent; a
    callback may be a coroutine function. Nothing runs when the transaction rolls back.
    """

    __slots__ = ("_callbacks", "cancelled")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], Awaitable[object] | object]] = []
        self.cancelled = False

    def add(
        self, callback: Callable[P, Awaitable[object] | object], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Call ``callback(*args, **kwargs)`` after the commit."""
        self._callbacks.append(lambda: callback(*args, **kwargs))

    def cancel(self) -> None:
        """Roll the transaction back when the route returns (it answered a failure without raising)."""
        self.cancelled = True

    async def run(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            result = callback()
            if inspect.isawaitable(result):
                await result


def after_commit() -> AfterCommit:
    """Dependency: the request's :class:`AfterCommit` (one per request, shared with ``write_connection``)."""
    return AfterCommit()


async def write_connection(
    request: Request, after: Annotated[AfterCommit, Depends(after_commit)]
) -> AsyncIterator[AsyncConnection]:
    """Dependency: a connection in a transaction that commits when the route returns, rolls back when it
    raises (or called ``after.cancel()``); after a commit, the route's :class:`AfterCommit` callbacks run."""
    async with state_of(request.app).engine.connect() as conn:
        await conn.begin()
        try:
            yield conn
        except BaseException:
            await conn.rollback()
            raise
        if after.cancelled:
            await conn.rollback()
            return
        await conn.commit()
    await after.run()


async def read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """Dependency: a connection for reads (no transaction is committed)."""
    async with state_of(request.app).engine.connect() as conn:
        yield conn


CoreStateDep = Annotated[CoreState, Depends(core_state)]
AppStateDep = Annotated[AppState, Depends(app_state)]
# scope="function": the exit code (commit or rollback) runs when the route returns, before the response
# is sent (FastAPI >= 0.121); with the default scope it would run after the client already has a 2xx.
WriteConn = Annotated[AsyncConnection, Depends(write_connection, scope="function")]
ReadConn = Annotated[AsyncConnection, Depends(read_connection, scope="function")]
AfterCommitDep = Annotated[AfterCommit, Depends(after_commit)]
