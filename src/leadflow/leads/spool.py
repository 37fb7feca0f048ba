"""Capture while the database is down: a local, fsync'd, encrypted spool of prepared leads.

When the capture writer cannot reach PostgreSQL/MySQL, the batch's prepared leads (their personal
fields already encrypted by :func:`leadflow.leads.capture.prepare`) are given lead ids, appended to a
spool file of this process and fsync'd; only then does the client get ``202`` with its ``lead_id``.
A replayer task probes the database and, once it answers, writes the spooled leads back in the order
they were spooled, through the capture writer's own batch write (same lead ids; a lead id already in
the database is skipped, so a replay interrupted by a crash is simply repeated), then deletes the file.

File format (one file per process and rotation, ``<ns>-<pid>-<random>.spool`` in ``CAPTURE_SPOOL_DIR``):
an 8-byte magic ``LFSPOOL1``, the 4-byte id of the key, then records: a 4-byte big-endian length and
``nonce (12) | AES-256-GCM(payload)``. The key is HKDF-SHA256 of an ``ENCRYPTION_KEY`` (info
``leadflow capture spool v1``): after a key rotation old files stay readable as long as their key is in
``ENCRYPTION_OLD_KEYS``. The payload is a pickle; it is only unpickled after GCM has authenticated it
under our own key, so nobody without the key can make us load anything. A record cut short by a crash
during its write was never acknowledged (the 202 waits for fsync) and is ignored.

Each file is held with an exclusive ``flock`` by the process writing or replaying it; at start-up a
process adopts every spool file in the directory that nobody holds (those of a process that died), so
a spool survives restarts of its host. It does not survive the loss of that host's disk: that is the
trade-off (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import pickle
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from leadflow.kit.ids import new_lead_ids

if TYPE_CHECKING:
    from leadflow.leads.capture import PreparedLead

log = structlog.get_logger("leadflow.spool")

MAGIC = b"LFSPOOL1"
AAD = b"leadflow capture spool v1"
SUFFIX = ".spool"
_LENGTH = struct.Struct(">I")
MAX_RECORD = 16 * 1024 * 1024


class SpoolUnavailable(RuntimeError):
    """The spool cannot take more leads (full, or its disk fails): the lead is not acknowledged."""


def spool_key(encryption_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=AAD).derive(encryption_key)


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


@dataclass(frozen=True, slots=True)
class Spooled:
    """One spooled lead: its ids were given to the client with the 202."""

    uuid: str
    public_id: str
    lead: PreparedLead


class _File:
    """A spool file held (flock) by this process."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self.handle = handle
        self.records = 0

    @classmethod
    def create(cls, directory: Path, kid: bytes) -> _File:
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        path = directory / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle = os.fdopen(fd, "r+b", buffering=0)
        handle.write(MAGIC + kid)
        os.fsync(fd)
        _fsync_directory(directory)
        return cls(path, handle)

    @classmethod
    def adopt(cls, path: Path) -> _File | None:
        """Open another process's file if nobody holds it (None when it is in use)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if not path.exists():  # replayed and deleted by its holder between our listing and our lock
            os.close(fd)
            return None
        return cls(path, os.fdopen(fd, "r+b", buffering=0))

    def close(self) -> None:
        self.handle.close()  # releases the flock


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path, keys: Sequence[bytes]) -> Iterator[Spooled]:
    """The records of a spool file in order; a torn last record (crash mid-write) is ignored."""
    data = path.read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise ValueError(f"{path.name} is not a capture spool file")
    kid = data[len(MAGIC) : len(MAGIC) + 4]
    key = next((k for k in keys if key_id(k) == kid), None)
    if key is None:
        raise ValueError(f"{path.name} was written with a key that is not configured (ENCRYPTION_OLD_KEYS?)")
    aead = AESGCM(key)
    offset = len(MAGIC) + 4
    while offset + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, offset)
        start = offset + _LENGTH.size
        if size > MAX_RECORD or start + size > len(data):
            log.warning("spool_torn_record", file=path.name, offset=offset)
            return
        blob = data[start : start + size]
        plain = aead.decrypt(blob[:12], blob[12:], AAD)  # InvalidTag: tampered or corrupt
        yield pickle.loads(plain)  # noqa: S301 - authenticated by AES-GCM under our key just above
        offset = start + size


class CaptureSpool:
    """The spool of one process: append (fsync'd) while the database is down, replay when it is back."""

    def __init__(self, directory: Path, encryption_keys: Sequence[bytes], *, max_bytes: int) -> None:
        self.directory = directory
        self._keys = [spool_key(k) for k in encryption_keys]  # primary first: it writes
        self._kid = key_id(self._keys[0])
        self._aead = AESGCM(self._keys[0])
        self._max_bytes = max_bytes
        self._active: _File | None = None
        self._sealed: list[_File] = []  # full files of this process or adopted ones, oldest first
        self._lock = asyncio.Lock()  # one append or rotation at a time
        self._ids: set[str] = set()  # lead ids spooled and not yet replayed (this process)
        self._bytes = 0
        self.spooled_total = 0
        self.replayed_total = 0
        self.down_until = 0.0  # monotonic: skip the database until then (set after a failure)
        self.broken = False  # the last append failed on the disk
        self.replay_waits = 0  # replay attempts that found the database still unreachable
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- state --------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Leads in this process's spool files (written, not yet replayed)."""
        return (self._active.records if self._active else 0) + sum(f.records for f in self._sealed)

    def holds(self, public_id: str) -> bool:
        return public_id in self._ids

    def accepting(self) -> bool:
        """Whether the spool can take more leads (not full, its last write did not fail)."""
        return not self.broken and self._bytes < self._max_bytes

    def database_suspect(self) -> bool:
        """True shortly after the database failed: capture goes straight to the spool meanwhile."""
        return time.monotonic() < self.down_until

    def mark_down(self, seconds: float = 1.0) -> None:
        self.down_until = time.monotonic() + seconds

    def adopt_orphans(self) -> int:
        """Take over the spool files of processes that are gone (at start-up); returns the lead count."""
        found = 0
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if any(f.path == path for f in self._sealed) or (self._active and self._active.path == path):
                continue
            adopted = _File.adopt(path)
            if adopted is None:
                continue
            try:
                adopted.records = sum(1 for _ in read_records(path, self._keys))
            except (ValueError, InvalidTag) as exc:
                log.error("spool_unreadable", file=path.name, error=str(exc))
                adopted.close()
                continue
            self._sealed.append(adopted)
            self._bytes += path.stat().st_size
            found += adopted.records
        if found:
            log.warning("spool_adopted", leads=found, files=len(self._sealed))
        return found

    # -- writing ------------------------------------------------------------------------------------
    async def append(self, items: Sequence[PreparedLead]) -> list[Spooled]:
        """Give each lead its ids, append them all and fsync; raises :class:`SpoolUnavailable`."""
        records = []
        for item in items:
            uuid, public_id = item.lead_ids or new_lead_ids()
            records.append(Spooled(uuid, public_id, replace(item, lead_ids=(uuid, public_id))))
        blobs = []
        for record in records:
            nonce = secrets.token_bytes(12)
            sealed = nonce + self._aead.encrypt(nonce, pickle.dumps(record, protocol=5), AAD)
            blobs.append(_LENGTH.pack(len(sealed)) + sealed)
        payload = b"".join(blobs)
        async with self._lock:
            if self._bytes + len(payload) > self._max_bytes:
                raise SpoolUnavailable("the capture spool is full (CAPTURE_SPOOL_MAX_MB)")
            try:
                await asyncio.to_thread(self._write, payload)
            except OSError as exc:
                self.broken = True
                if self._active is not None:  # it may end in a partial record: nothing more goes after it
                    self._sealed.append(self._active)
                    self._active = None
                raise SpoolUnavailable(f"the capture spool cannot be written: {exc.strerror}") from exc
            self.broken = False
            assert self._active is not None
            self._active.records += len(records)
            self._bytes += len(payload)
        self._ids.update(r.public_id for r in records)
        self.spooled_total += len(records)
        log.warning("capture_spooled", leads=len(records), pending=self.pending)
        return records

    def _write(self, payload: bytes) -> None:
        if self._active is None:
            self._active = _File.create(self.directory, self._kid)
            self._bytes += len(MAGIC) + 4
        handle = self._active.handle
        handle.write(payload)
        os.fsync(handle.fileno())

    # -- replay -------------------------------------------------------------------------------------
    async def replay(self, write: Callable[[list[Spooled]], Awaitable[None]], *, batch: int = 256) -> int:
        """Write every spooled lead back, oldest first, ``batch`` at a time; delete each file when done.

        ``write`` must be idempotent (the capture writer skips lead ids it already has). Raises what
        ``write`` raises (the database went away again): the file stays and the next call starts it
        over. Returns how many leads were replayed.
        """
        async with self._lock:
            if self._active is not None and self._active.records:
                self._sealed.append(self._active)  # new leads go to a new file meanwhile
                self._active = None
        done = 0
        while self._sealed:
            current = self._sealed[0]
            try:
                records = list(read_records(current.path, self._keys))
            except (ValueError, InvalidTag) as exc:
                # Damaged on disk (or a key that is no longer configured): keep it aside for a person.
                aside = current.path.with_suffix(".corrupt")
                current.path.rename(aside)
                current.close()
                self._sealed.pop(0)
                log.error("spool_corrupt", file=aside.name, leads=current.records, error=type(exc).__name__)
                continue
            for start in range(0, len(records), batch):
                await write(records[start : start + batch])
            size = current.path.stat().st_size
            current.path.unlink()
            _fsync_directory(self.directory)
            current.close()
            self._sealed.pop(0)
            self._bytes -= size
            self._ids.difference_update(r.public_id for r in records)
            done += len(records)
            self.replayed_total += len(records)
            log.info("spool_replayed", leads=len(records), file=current.path.name)
        return done

    async def run(
        self,
        stop: asyncio.Event,
        probe: Callable[[], Awaitable[None]],
        write: Callable[[list[Spooled]], Awaitable[None]],
        interval: float = 1.0,
    ) -> None:
        """Until ``stop``: while anything is spooled, probe the database and replay once it answers."""
        while not stop.is_set():
            if self.pending:
                try:
                    await probe()
                    self.down_until = 0.0
                    await self.replay(write)
                except Exception as exc:
                    self.replay_waits += 1
                    self.mark_down(interval)
                    log.info("spool_replay_waiting", pending=self.pending, exc_type=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def close(self) -> None:
        """Release the files (they stay on disk for the next start to replay)."""
        for f in [*self._sealed, *([self._active] if self._active else [])]:
            if f.records == 0 and f is self._active:
                f.path.unlink(missing_ok=True)
            f.close()
        self._sealed.clear()
        self._active = None
