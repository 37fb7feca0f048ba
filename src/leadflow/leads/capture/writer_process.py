"""The capture writer's own process (file SQLite): group commits without sharing the server's GIL.

In one ``leadflow serve`` process the event loop (HTTP, validation, encryption) and a SQLite writer
thread (plan, rows, ``INSERT`` ... ``COMMIT``) share one GIL. At 1000 connections the writer is what
requests wait for, and it spent about two thirds of each batch waiting for the GIL rather than
writing. :class:`WriterProcess` runs the same batch writer
(:class:`~leadflow.leads.capture.store.SqliteBatchWriter`, the same plan, rows and transaction) in a
child process, started with ``spawn`` (no state inherited from the server) when the app starts. The
event loop sends it batches over a socket pair (:class:`_Channel`, an asyncio protocol speaking
:class:`~multiprocessing.connection.Connection`'s framing; up to two batches in flight, answered in
order) and reads the answers as they come: no thread of the server is involved. Durability is
unchanged: the child answers after ``COMMIT`` (``synchronous=FULL``), and the server answers the
clients after that.

Failure: until the child has said it is ready, and after it is gone, batches are written in the
store's writer thread as before, and a new child is started (at most every
:attr:`WriterProcess.RESTART_SECONDS`). A batch the child took and never answered fails as a whole
(the socket's end fails every batch in flight): the capture service retries it lead by lead in the
thread. A lead the child had already committed is then found by de-duplication (the same person,
campaign and window): its client gets 409 ``DUPLICATE_SUBMISSION`` with the lead's id, or, with its
``Idempotency-Key``, the replay of it. Nothing acknowledged is lost, nothing stored twice. The child
ignores SIGINT and SIGTERM (a terminal's Ctrl+C reaches the whole process group) and ends when the
server closes its end, or when the server is gone.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import multiprocessing
import pickle
import queue
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any, cast

import structlog

from leadflow.kit.process import DEFAULT_GC, GcTuning, settle_gc
from leadflow.leads.capture.policy import Plan, PreparedLead, Rules, Stored, plan_batch
from leadflow.leads.capture.store import RemoteWriterLost, SqliteBatchWriter, Written

log = structlog.get_logger("leadflow.capture")

READY = "ready"
_HEAD = struct.Struct("!i")  # multiprocessing.connection's frame header
_LONG = struct.Struct("!Q")


def _serve(
    path: str, window_seconds: float, grades: tuple[str, ...], gc_tuning: GcTuning, conn: Connection
) -> None:
    """The child: write each batch received, in order; answer ("ok", Written) or ("error", exception).

    A thread of its own reads the batches off the pipe into a queue: with batches in flight both ways
    neither side can block the other on a full pipe. Before it says READY it settles its garbage
    collector as the server does (``GC_FREEZE``, ``GC_YOUNG_THRESHOLD``): with Python's defaults its
    full collections walked everything the imports loaded and held a batch up to ~100 ms.
    """
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    rules = Rules(timedelta(seconds=window_seconds), frozenset(grades))

    def planner(items: Sequence[PreparedLead], stored: Stored, now: Any, breakdown: Any) -> Plan:
        return plan_batch(items, stored, rules, now, breakdown)

    inbox: queue.SimpleQueue[list[PreparedLead] | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                inbox.put(conn.recv())
        except (EOFError, OSError):
            inbox.put(None)  # the server closed the pipe or is gone

    # SQLAlchemy's aiosqlite dialect binds values with pysqlite's processors: the same rows.
    writer = SqliteBatchWriter(path, SQLiteDialect_pysqlite())
    settle_gc(freeze=gc_tuning[0], young_threshold=gc_tuning[1])
    try:
        conn.send((READY, {"gc_threshold": gc.get_threshold(), "gc_frozen": gc.get_freeze_count()}))
    except OSError:  # the server closed the pipe while this process was starting
        writer.close()
        return
    threading.Thread(target=read, name="leadflow-capture-inbox", daemon=True).start()
    try:
        while (items := inbox.get()) is not None:
            try:
                answer: tuple[str, Any] = ("ok", writer.write(items, planner))
            except Exception as exc:
                answer = ("error", exc)
            try:
                conn.send(answer)
            except (EOFError, OSError):
                return
            except Exception as exc:  # an exception that cannot be pickled
                conn.send(("error", RuntimeError(f"{type(exc).__name__} in the capture writer process")))
    finally:
        writer.close()


class _Channel(asyncio.Protocol):
    """The server's end of the pipe, on the event loop: frames as :class:`Connection` writes them
    (a 4-byte big-endian length, or -1 and an 8-byte one, then the pickle), answers in order."""

    def __init__(self, on_answer: Callable[[], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.ready = False  # the child said READY
        self.hello: dict[str, Any] = {}  # what it said with it (its garbage collector's settings)
        self.lost = False
        self.waiting: deque[asyncio.Future[Written]] = deque()
        self._buffer = bytearray()
        self._on_answer = on_answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        at = 0
        answered = False
        while len(buffer) - at >= 4:
            (size,) = _HEAD.unpack_from(buffer, at)
            head = 4
            if size == -1:
                if len(buffer) - at < 12:
                    break
                (size,) = _LONG.unpack_from(buffer, at + 4)
                head = 12
            if len(buffer) - at - head < size:
                break
            kind, value = pickle.loads(buffer[at + head : at + head + size])  # noqa: S301 - our own child
            at += head + size
            if kind == READY:
                self.ready, self.hello = True, value
            elif self.waiting:
                future = self.waiting.popleft()
                if kind == "ok":
                    future.set_result(value)
                else:
                    future.set_exception(value)
            answered = True
        del buffer[:at]
        if answered:
            self._on_answer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            self.waiting.popleft().set_exception(
                RemoteWriterLost("the capture writer process ended during a batch")
            )
        self._on_answer()

    def send(self, payload: bytes) -> asyncio.Future[Written]:
        assert self.transport is not None
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        head = (
            _HEAD.pack(len(payload))
            if len(payload) < 0x7FFFFFFF
            else _HEAD.pack(-1) + _LONG.pack(len(payload))
        )
        self.transport.writelines((head, payload))
        self.waiting.append(future)
        return future


class WriterProcess:
    """The server's end of the writer process, on the event loop (:class:`SqliteStore`'s remote)."""

    RESTART_SECONDS = 5.0

    def __init__(self, path: str, rules: Rules, gc_tuning: GcTuning = DEFAULT_GC) -> None:
        self._path = path
        self._rules = rules
        self._gc_tuning = gc_tuning
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._channel: _Channel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # connecting the pipe, reaping an ended child
        self._started_at = float("-inf")
        self.starts = 0
        self.on_answer: Callable[[], None] = lambda: None  # set by the store: an answer (or the end) came

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def hello(self) -> dict[str, Any]:
        """What the ready child said of itself (``gc_threshold``, ``gc_frozen``); empty until then."""
        return self._channel.hello if self._channel is not None else {}

    @property
    def wants_loop(self) -> bool:
        """It became ready, it ended, or a restart is due (flags only: read from the store's thread)."""
        channel = self._channel
        if channel is None:
            return self._process is None and time.monotonic() - self._started_at >= self.RESTART_SECONDS
        return channel.ready or channel.lost

    def available(self) -> bool:
        """Whether the child takes batches now; starts one when none runs and one is due."""
        channel = self._channel
        if channel is not None:
            if channel.ready and not channel.lost:
                return True
            if not channel.lost and self._process is not None and self._process.is_alive():
                return False  # starting
            self._lost()
        if self._process is None and time.monotonic() - self._started_at >= self.RESTART_SECONDS:
            self._start()
        return False

    async def ready(self, wait_seconds: float) -> bool:
        """Whether the child takes batches, waiting up to ``wait_seconds`` (starting it when due)."""
        deadline = time.monotonic() + wait_seconds
        while not self.available():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(left, 0.02))
        return True

    def send(self, items: list[PreparedLead]) -> asyncio.Future[Written]:
        """Hand a batch to the child; the future is its answer (:class:`RemoteWriterLost` if it ends)."""
        channel = self._channel
        if channel is None or not channel.ready or channel.lost:
            raise RemoteWriterLost("the capture writer process is not running")
        return channel.send(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))

    async def close(self) -> None:
        """Close the pipe (the child ends at EOF) and wait for the child."""
        await asyncio.gather(*self._tasks, return_exceptions=True)  # a connect, a reap: both bounded
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            channel.transport.close()
        process, self._process = self._process, None
        if process is not None:
            await asyncio.to_thread(_join, process, 10)

    # -- inside
    def _start(self) -> None:
        self._started_at = time.monotonic()
        context = multiprocessing.get_context("spawn")
        mine, theirs = socket.socketpair()
        child_end = Connection(theirs.detach())
        window = self._rules.dedup_window.total_seconds()
        grades = tuple(sorted(self._rules.qualifying_grades))
        process = context.Process(
            target=_serve,
            args=(self._path, window, grades, self._gc_tuning, child_end),
            name="leadflow-capture-writer",
            daemon=True,
        )
        try:
            process.start()
        except Exception as exc:
            log.warning("capture_writer_process_failed", exc_type=type(exc).__name__)
            mine.close()
            return
        finally:
            child_end.close()
        channel = _Channel(lambda: self.on_answer())
        self._process, self._channel = process, channel
        self.starts += 1
        if self.starts > 1:
            log.warning("capture_writer_process_restarted", starts=self.starts)
        mine.setblocking(False)
        loop = asyncio.get_running_loop()
        connecting = loop.create_task(loop.create_unix_connection(lambda: channel, sock=mine))
        connecting.add_done_callback(functools.partial(_connected, channel))
        self._track(connecting)

    def _lost(self) -> None:
        process, self._process = self._process, None
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            channel.transport.close()
        if process is not None:
            self._track(asyncio.get_running_loop().create_task(_reap(process)))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _connected(channel: _Channel, task: asyncio.Task[Any]) -> None:
    """The loop could not take the socket: the child is given up (and a new one started when due)."""
    if task.cancelled() or task.exception() is not None:
        exc = None if task.cancelled() else task.exception()
        log.warning("capture_writer_process_failed", exc_type=type(exc).__name__ if exc else "CancelledError")
        channel.lost = True


def _join(process: Any, timeout: float) -> None:
    process.join(timeout=timeout)
    if process.is_alive():
        process.kill()
        process.join(timeout=5)


async def _reap(process: Any) -> None:
    await asyncio.to_thread(_join, process, 5)
    log.warning("capture_writer_process_ended", exitcode=process.exitcode)
