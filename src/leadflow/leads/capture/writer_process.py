"""The capture writer's own process (file SQLite): group commits without sharing the server's GIL.

In one ``leadflow serve`` process the event loop (HTTP, validation, encryption) and the SQLite writer
thread (plan, rows, ``INSERT`` ... ``COMMIT``) share one GIL. At 1000 connections the writer is what
requests wait for, and it spent about two thirds of each batch waiting for the GIL rather than
writing. :class:`WriterProcess` runs the same batch writer
(:class:`~leadflow.leads.capture.store.SqliteBatchWriter`, the same plan, rows and transaction) in a
child process, started with ``spawn`` (no state inherited from the server) when the app starts. The
writer thread of :class:`~leadflow.leads.capture.store.SqliteStore` sends it batches over a pipe (up
to two in flight, answered in order) and waits for the answers without the GIL. Durability is unchanged: the child answers after ``COMMIT``
(``synchronous=FULL``), and the server answers the clients after that.

Failure: until the child has said it is ready, and after it is gone, batches are written in the
thread as before, and a new child is started (at most every :attr:`WriterProcess.RESTART_SECONDS`).
A batch the child took and never answered fails as a whole: the capture service retries it lead by
lead in the thread. A lead the child had already committed is then found by de-duplication (the same
person, campaign and window): its client gets 409 ``DUPLICATE_SUBMISSION`` with the lead's id, or,
with its ``Idempotency-Key``, the replay of it. Nothing acknowledged is lost, nothing stored twice.
The child ignores SIGINT and SIGTERM (a terminal's Ctrl+C reaches the whole process group) and ends
when the server closes the pipe, or when the server is gone.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

import structlog

from leadflow.leads.capture.policy import Plan, PreparedLead, Rules, Stored, plan_batch
from leadflow.leads.capture.store import RemoteWriterLost, SqliteBatchWriter, Written

log = structlog.get_logger("leadflow.capture")

READY = "ready"


def _serve(path: str, window_seconds: float, grades: tuple[str, ...], conn: Connection) -> None:
    """The child: write each batch received, in order; answer ("ok", Written) or ("error", exception).

    A thread of its own reads the batches off the pipe into a queue: with batches in flight both ways
    neither side can block the other on a full pipe.
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
    try:
        conn.send((READY, None))
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


class WriterProcess:
    """The server's end of the writer process (used only by the store's writer thread)."""

    RESTART_SECONDS = 5.0

    def __init__(self, path: str, rules: Rules) -> None:
        self._path = path
        self._rules = rules
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._conn: Connection | None = None
        self._ready = False
        self._started_at = float("-inf")
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._available() is not None:
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self._conn is None:
                return False
            self._conn.poll(min(left, 0.05))

    def send(self, items: list[PreparedLead]) -> bool:
        conn = self._available()
        if conn is None:
            return False
        try:
            conn.send(items)
        except (EOFError, OSError):
            self._lost()  # gone before it had this batch: it can be written here
            return False
        return True

    def receive(self) -> Written:
        conn = self._conn
        if conn is None:
            raise RemoteWriterLost("the capture writer process has ended")
        try:
            kind, value = conn.recv()
        except (EOFError, OSError) as exc:
            self._lost()
            raise RemoteWriterLost("the capture writer process ended during a batch") from exc
        if kind == "ok":
            written: Written = value
            return written
        raise value

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the child ends at EOF
            self._conn = None
        process, self._process = self._process, None
        if process is not None:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        self._ready = False

    # -- inside
    def _available(self) -> Connection | None:
        """The pipe of a ready child; else None (starting one when due)."""
        if self._process is not None and not self._process.is_alive():
            self._lost()
        if self._process is None:
            if time.monotonic() - self._started_at >= self.RESTART_SECONDS:
                self._start()
            return None
        conn = self._conn
        assert conn is not None
        if not self._ready:
            try:
                if not conn.poll(0):
                    return None
                kind, _ = conn.recv()
            except (EOFError, OSError):
                self._lost()
                return None
            self._ready = kind == READY
        return conn if self._ready else None

    def _start(self) -> None:
        self._started_at = time.monotonic()
        context = multiprocessing.get_context("spawn")
        mine, theirs = context.Pipe()
        window = self._rules.dedup_window.total_seconds()
        grades = tuple(sorted(self._rules.qualifying_grades))
        process = context.Process(
            target=_serve,
            args=(self._path, window, grades, theirs),
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
            theirs.close()
        self._process, self._conn, self._ready = process, mine, False
        self.starts += 1
        if self.starts > 1:
            log.warning("capture_writer_process_restarted", starts=self.starts)

    def _lost(self) -> None:
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ready = False
        if process is not None:
            process.join(timeout=1)
            log.warning("capture_writer_process_ended", exitcode=process.exitcode)
