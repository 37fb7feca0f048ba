"""The SQLite capture writer's own process: it writes the batches, and losing it loses no lead.

In-process tests drive :class:`~leadflow.leads.capture.CaptureWriter` with ``writer_process=True``;
one test runs a real ``leadflow serve`` (its default: the writer process on) and kills the writer
process under load.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import time
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.config import Settings
from leadflow.leads.capture import CaptureWriter
from leadflow.leads.capture.policy import CaptureOutcome
from leadflow.leads.capture.store import SqliteStore
from leadflow.leads.capture.writer_process import WriterProcess
from leadflow.scoring.rules import ScoreInput
from tests.conftest import Harness, example_lead
from tests.leads.test_capture_writer import _item
from tests.scoring.test_rules import SPEC_EXAMPLE
from tests.test_shutdown import BIN, _env, _free_port, _reap, _wait_until_up


async def _writer(engine: AsyncEngine) -> tuple[CaptureWriter, SqliteStore, WriterProcess]:
    writer = CaptureWriter(
        engine, dedup_window=timedelta(hours=24), qualifying_grades=("A", "B"), writer_process=True
    )
    store = writer.store
    assert isinstance(store, SqliteStore)
    assert await store.remote_ready(wait_seconds=60), "the writer process did not start"
    remote = store._remote
    assert isinstance(remote, WriterProcess) and remote.pid is not None
    return writer, store, remote


@pytest.mark.parametrize("tuning", [(True, 12_345), (False, 0)])
async def test_the_writer_process_settles_its_garbage_collector(
    harness: Harness, campaign: dict[str, Any], tuning: tuple[bool, int]
) -> None:
    """As the server does (GC_FREEZE, GC_YOUNG_THRESHOLD): what its imports loaded is frozen out of
    full collections, and young collections come every ``threshold`` allocations (0: Python's 700)."""
    writer = CaptureWriter(
        harness.engine,
        dedup_window=timedelta(hours=24),
        qualifying_grades=("A", "B"),
        writer_process=True,
        writer_process_gc=tuning,
    )
    store = writer.store
    assert isinstance(store, SqliteStore) and await store.remote_ready(wait_seconds=60)
    assert isinstance(store._remote, WriterProcess)
    hello = store._remote.hello
    freeze, threshold = tuning
    assert hello["gc_threshold"][0] == (threshold or 700)
    assert (hello["gc_frozen"] > 10_000) if freeze else (hello["gc_frozen"] == 0)
    await writer.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def test_batches_go_to_the_writer_process(harness: Harness, campaign: dict[str, Any]) -> None:
    writer, store, remote = await _writer(harness.engine)
    pid = remote.pid
    assert pid is not None and pid != os.getpid()
    outcomes = await asyncio.gather(*(writer.submit(_item(f"p{i}@company.com")) for i in range(40)))
    assert {o.kind for o in outcomes} == {"created"}
    assert store.remote_batches >= 1
    await writer.close()
    assert not _alive(pid)  # it ends with the writer
    assert await harness.scalar("SELECT count(*) FROM leads") == 40
    assert await harness.scalar("SELECT count(*) FROM jobs") == 40


async def test_what_is_queued_is_shared_between_the_pipelines_places(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    """40 leads waiting and an idle process: two batches of 20 (the process writes one while the
    loop answers the other), not one batch that keeps every request in step."""
    writer, store, _ = await _writer(harness.engine)
    outcomes = await asyncio.gather(*(writer.submit(_item(f"q{i}@company.com")) for i in range(40)))
    assert {o.kind for o in outcomes} == {"created"}
    assert store.remote_batches == 2 and writer.batches == 2 and writer.leads_written == 40
    await writer.close()
    assert await harness.scalar("SELECT count(*) FROM leads") == 40


def test_what_crosses_the_pipe_pickles_every_field() -> None:
    """PreparedLead, ScoreInput and CaptureOutcome pickle their fields in order (``__reduce__``): a
    field added to one of them and left out there would not reach the writer process."""
    item = replace(
        _item("pickle@company.com", key="k-pickle", visitor="vis_p"),
        created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        lead_ids=("0190d9a8-0000-7000-8000-000000000000", "lead_0123456789ab"),
        returning_hint=True,
    )
    outcome = CaptureOutcome("created", "lead_0123456789ab", "A", True)
    score_input = replace(SPEC_EXAMPLE, time_on_page_seconds=150, returning_visitor=True)
    for value in (item, item.score_input, outcome, score_input):
        assert len(value.__reduce__()[1]) == len(fields(value))
        assert pickle.loads(pickle.dumps(value)) == value  # noqa: S301 - our own bytes
    # Every optional field above differs from its default, so a field dropped in pickling would show.
    assert all(getattr(score_input, f.name) != f.default for f in fields(ScoreInput)[1:])


async def test_take_shares_what_is_queued(harness: Harness) -> None:
    """``_take(share)``: the queue's ``1/share`` part rounded up, never more than ``batch_max``."""
    writer = CaptureWriter(
        harness.engine, dedup_window=timedelta(hours=24), qualifying_grades=("A",), batch_max=8
    )
    loop = asyncio.get_running_loop()
    item = _item("t@company.com")

    def sizes(share: int) -> list[int]:
        writer._queue.extend((item, loop.create_future()) for _ in range(11))
        taken: list[int] = []
        while (batch := writer._take(share)) is not None:
            taken.append(len(batch.items))
        return taken

    assert sizes(2) == [6, 3, 1, 1]  # half of 11, of 5, of 2 (rounded up), then the last one
    assert sizes(1) == [8, 3]  # all of it, in batches of at most batch_max
    assert sizes(3) == [4, 3, 2, 1, 1]
    await writer.close()


async def test_a_writer_process_killed_with_a_batch_loses_no_lead(
    harness: Harness, campaign: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch it held fails as a whole and is written lead by lead in the thread; a new process
    takes over (here at once: RESTART_SECONDS = 0)."""
    monkeypatch.setattr(WriterProcess, "RESTART_SECONDS", 0.0)
    writer, store, remote = await _writer(harness.engine)
    first = remote.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # it takes the batch off the pipe only once resumed: never
    try:
        submitted = [asyncio.ensure_future(writer.submit(_item(f"k{i}@company.com"))) for i in range(20)]
        await asyncio.sleep(0.3)
        assert not any(s.done() for s in submitted)  # the batch is with the stopped process
        os.kill(first, signal.SIGKILL)
        outcomes = await asyncio.wait_for(asyncio.gather(*submitted), 30)
    finally:
        if _alive(first):
            os.kill(first, signal.SIGKILL)
    assert [o.kind for o in outcomes] == ["created"] * 20
    assert await harness.scalar("SELECT count(*) FROM leads") == 20
    # A new writer process starts and takes the next batches.
    assert await store.remote_ready(wait_seconds=60)
    assert remote.pid not in (None, first) and remote.starts == 2
    before = store.remote_batches
    again = await asyncio.gather(*(writer.submit(_item(f"n{i}@company.com")) for i in range(5)))
    assert {o.kind for o in again} == {"created"} and store.remote_batches > before
    await writer.close()
    assert await harness.scalar("SELECT count(*) FROM leads") == 25


def _children(pid: int) -> list[int]:
    """The writer processes of ``pid`` (multiprocessing's resource tracker, also a child, is not)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in found if b"spawn_main" in _cmdline(c)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_served_capture_survives_its_writer_process_being_killed(
    harness: Harness, campaign: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    """A real ``leadflow serve``: the writer process is its child; SIGKILL to it under load, and every
    201 is stored; SIGTERM to the server, and the writer process is gone too."""
    port = _free_port()
    log_file = tmp_path / "server.log"  # a file, not a pipe nobody reads while the load runs
    with log_file.open("w") as log_out:
        server = subprocess.Popen(
            [str(BIN), "serve", "--port", str(port), "--no-worker"],
            env=_env(settings),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log_out,
            text=True,
        )
    acknowledged: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = await _wait_until_up(client, server)
            while not (children := _children(server.pid)):
                assert time.monotonic() < deadline, "no writer process"
                await asyncio.sleep(0.05)
            [child] = children
            # Ready: after READY it starts the thread that reads batches off the pipe.
            while len(list(Path(f"/proc/{child}/task").iterdir())) < 2:
                assert time.monotonic() < deadline, "the writer process did not get ready"
                await asyncio.sleep(0.05)

            async def load(n: int, count: int) -> None:
                for i in range(count):
                    answer = await client.post(
                        "/v1/api/leads", json=example_lead(email=f"s{n}-{i}@company.com")
                    )
                    # A batch the child committed and was killed before answering is retried lead by
                    # lead: de-duplication then finds each of its leads, 409 with that lead's id (the
                    # documented answer; the lead is stored once).
                    ok = answer.status_code == 201 or (
                        answer.status_code == 409 and answer.json()["error"] == "DUPLICATE_SUBMISSION"
                    )
                    assert ok, answer.text
                    acknowledged.append(answer.json()["lead_id"])

            clients = [asyncio.create_task(load(n, 60)) for n in range(8)]
            while len(acknowledged) < 100:
                assert time.monotonic() < deadline, "no load got through"
                await asyncio.sleep(0.01)
            os.kill(child, signal.SIGKILL)
            await asyncio.gather(*clients)
            await load(99, 5)  # after the loss too
        writers = [child, *_children(server.pid)]  # a new one, if it has started already
        server.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, server.wait, 60)
    finally:
        _reap(server)
    log = log_file.read_text()
    assert server.returncode in (0, -signal.SIGTERM), log[-2000:]
    assert "capture_writer_process_ended" in log and "Traceback" not in log
    assert len(acknowledged) == 8 * 60 + 5 == len(set(acknowledged))
    stored = await harness.scalar("SELECT count(*) FROM leads")
    assert stored == len(acknowledged)
    async with harness.engine.connect() as conn:
        ids = set((await conn.execute(text("SELECT public_id FROM leads"))).scalars())
    assert ids == set(acknowledged)  # every id a client was given is a stored lead
    await asyncio.sleep(0.2)
    assert not any(_alive(pid) for pid in writers)


async def test_a_pipe_the_loop_cannot_take_gives_the_process_up(
    harness: Harness, campaign: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the event loop refuse the child's socket, the child is given up (its leads are written in
    the thread meanwhile) and the next one is started when due."""
    loop = asyncio.get_running_loop()

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("refused")

    monkeypatch.setattr(loop, "create_unix_connection", refuse)
    writer = CaptureWriter(
        harness.engine, dedup_window=timedelta(hours=24), qualifying_grades=("A", "B"), writer_process=True
    )
    store = writer.store
    assert isinstance(store, SqliteStore) and isinstance(store._remote, WriterProcess)
    assert not await store.remote_ready(wait_seconds=0.5)
    first = store._remote.starts
    assert first == 1
    outcomes = await asyncio.gather(*(writer.submit(_item(f"r{i}@company.com")) for i in range(5)))
    assert {o.kind for o in outcomes} == {"created"} and store.remote_batches == 0
    monkeypatch.undo()  # the loop's own method again
    monkeypatch.setattr(WriterProcess, "RESTART_SECONDS", 0.0)  # the next child at once
    assert await store.remote_ready(wait_seconds=60)
    assert store._remote.starts > first
    again = await asyncio.gather(*(writer.submit(_item(f"s{i}@company.com")) for i in range(5)))
    assert {o.kind for o in again} == {"created"} and store.remote_batches >= 1
    await writer.close()
    assert await harness.scalar("SELECT count(*) FROM leads") == 10
