"""Key rotation: a new primary key, old ciphertexts still readable, resumable re-encryption.

Progress is kept in ``maintenance_state`` under ``reencrypt``, so a re-encryption that is stopped (a
deploy, a crash) continues where it was. Blind indexes do not change: the blind-index key is pinned
when the first rotation happens.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.config import KeyFile, Settings, decode_key, generate_key
from leadflow.kit.clock import utcnow
from leadflow.security import repository as repo
from leadflow.security.crypto import FieldCipher, derive_blind_index_key

STATE = "reencrypt"


@dataclass(frozen=True, slots=True)
class Rotation:
    new_key: str
    blind_index_key: str
    key_file_updated: bool


def rotate(settings: Settings) -> Rotation:
    """Make a new key primary. With the key file it is rewritten; with ENCRYPTION_KEY the operator
    applies the printed settings (the process cannot change its own environment)."""
    keys = settings.encryption_keys
    blind = settings.blind_key or derive_blind_index_key(keys[0])
    new = generate_key()
    if settings.encryption_key is None:
        path = settings.encryption_key_file
        content = KeyFile([decode_key(new), *keys], blind).render()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(content)
        tmp.chmod(0o600)
        tmp.replace(path)
        return Rotation(new, base64.b64encode(blind).decode(), True)
    return Rotation(new, base64.b64encode(blind).decode(), False)


@dataclass(frozen=True, slots=True)
class BatchResult:
    scanned: int
    rewritten: int
    finished: bool


async def reencrypt_batch(engine: AsyncEngine, cipher: FieldCipher, batch: int = 500) -> BatchResult:
    """Move one batch of rows to the primary key; call until ``finished``."""
    primary = cipher.primary_key_id
    async with engine.begin() as conn:
        progress = await repo.maintenance_value(conn, STATE)
        if progress.get("key_id") != primary:  # a new rotation starts from the beginning
            progress = {"key_id": primary, "last_lead_id": 0, "last_activity_id": 0, "finished": False}
        if progress.get("finished"):
            return BatchResult(0, 0, True)
        rewritten = 0
        rows = await repo.sealed_leads_after(conn, progress["last_lead_id"], batch)
        for row in rows:
            values = {}
            for name, blob in row.fields.items():
                if blob is not None and FieldCipher.key_id_of(blob) != primary:
                    values[name] = cipher.encrypt(cipher.decrypt(blob, name), name)
            if values:
                await repo.set_lead_fields(conn, row.id, values)
                rewritten += 1
        scanned = len(rows)
        if rows:
            progress["last_lead_id"] = rows[-1].id
        else:
            notes = await repo.notes_after(conn, progress["last_activity_id"], batch)
            for note in notes:
                meta = dict(note.metadata or {})
                if "note" in meta:
                    blob = base64.b64decode(meta["note"])
                    if FieldCipher.key_id_of(blob) != primary:
                        sealed = cipher.encrypt(cipher.decrypt(blob, "note"), "note")
                        assert sealed is not None
                        meta["note"] = base64.b64encode(sealed).decode()
                        await repo.set_activity_metadata(conn, note.id, meta)
                        rewritten += 1
            scanned = len(notes)
            if notes:
                progress["last_activity_id"] = notes[-1].id
            else:
                progress["finished"] = True
        await repo.save_maintenance_value(conn, STATE, progress, utcnow())
    return BatchResult(scanned, rewritten, bool(progress["finished"]))


async def reencrypt_all(
    engine: AsyncEngine, cipher: FieldCipher, batch: int = 500, max_batches: int | None = None
) -> int:
    total = 0
    done = 0
    while max_batches is None or done < max_batches:
        result = await reencrypt_batch(engine, cipher, batch)
        total += result.rewritten
        done += 1
        if result.finished:
            break
    return total
