"""The capture spool file: encrypted, fsync'd appends, ordered idempotent replay, crash and restart."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from leadflow.campaigns.service import CaptureCampaign
from leadflow.leads.capture import PreparedLead, prepare
from leadflow.leads.schemas import CaptureRequest
from leadflow.leads.spool import CaptureSpool, Spooled, SpoolUnavailable, read_records, spool_key
from leadflow.security.crypto import FieldCipher
from tests.conftest import TEST_KEY, example_lead

KEY = base64.b64decode(TEST_KEY)
CAMPAIGN = CaptureCampaign("spool-campaign", "Spool Campaign Name", "active", None, frozenset(), ())
CIPHER = FieldCipher([KEY])


def _item(email: str, utm: str = "utm-marker-in-clear") -> PreparedLead:
    body = example_lead(email=email)
    body["tracking"]["utm_campaign"] = utm
    request = CaptureRequest.model_validate(body, context={"phone_region": "US"})
    return prepare(request, CAMPAIGN, CIPHER, frozenset({"nextcloud installation"}), "203.0.113.1", None)


def _spool(directory: Path, keys: list[bytes] | None = None, max_bytes: int = 10**8) -> CaptureSpool:
    return CaptureSpool(directory, keys or [KEY], max_bytes=max_bytes)


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


async def test_append_gives_ids_writes_encrypted_records_and_replays_them_in_order(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    items = [_item(f"spool{n}@company.com") for n in range(5)]
    first = await spool.append(items[:3])
    second = await spool.append(items[3:])
    ids = [r.public_id for r in [*first, *second]]
    assert len(set(ids)) == 5 and all(i.startswith("lead_") for i in ids)
    assert spool.pending == 5 and all(spool.holds(i) for i in ids)
    (path,) = _files(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    raw = path.read_bytes()
    for clear in (
        b"utm-marker-in-clear",
        b"Spool Campaign Name",
        items[0].email_hash.encode(),
        ids[0].encode(),
    ):
        assert clear not in raw  # everything is encrypted, not only the personal fields
    assert [r.public_id for r in read_records(path, [spool_key(KEY)])] == ids

    written: list[list[Spooled]] = []

    async def write(batch: list[Spooled]) -> None:
        written.append(batch)

    assert await spool.replay(write, batch=2) == 5
    assert [[r.public_id for r in b] for b in written] == [ids[0:2], ids[2:4], ids[4:5]]
    assert written[0][0].lead.values == items[0].values  # ciphertexts kept as prepared
    assert written[0][0].lead.lead_ids == (written[0][0].uuid, ids[0])
    assert spool.pending == 0 and not spool.holds(ids[0]) and _files(tmp_path) == []


async def test_a_failed_replay_keeps_the_file_and_a_retry_writes_it_all(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    ids = [r.public_id for r in await spool.append([_item("a@company.com"), _item("b@company.com")])]
    calls: list[list[str]] = []

    async def flaky(batch: list[Spooled]) -> None:
        calls.append([r.public_id for r in batch])
        if len(calls) == 2:
            raise ConnectionRefusedError("database went away again")

    with pytest.raises(ConnectionRefusedError):
        await spool.replay(flaky, batch=1)
    assert spool.pending == 2 and len(_files(tmp_path)) == 1
    later = await spool.append([_item("c@company.com")])  # goes to a new file meanwhile
    assert len(_files(tmp_path)) == 2
    calls.clear()

    async def ok(batch: list[Spooled]) -> None:
        calls.append([r.public_id for r in batch])

    assert await spool.replay(ok, batch=10) == 3
    # The interrupted file again from its start (the writer skips ids it has), then the newer file.
    assert calls == [ids, [later[0].public_id]]
    assert _files(tmp_path) == []


async def test_a_torn_last_record_was_never_acknowledged_and_is_ignored(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    kept = await spool.append([_item("a@company.com")])
    await spool.append([_item("b@company.com")])
    (path,) = _files(tmp_path)
    with path.open("r+b") as handle:  # a crash in the middle of the second write
        handle.truncate(path.stat().st_size - 7)
    assert [r.public_id for r in read_records(path, [spool_key(KEY)])] == [kept[0].public_id]


async def test_another_process_adopts_a_dead_process_spool_but_not_a_live_one(tmp_path: Path) -> None:
    live = _spool(tmp_path)
    await live.append([_item("a@company.com")])
    other = _spool(tmp_path)
    assert other.adopt_orphans() == 0  # held (flock) by a live process
    dead = _spool(tmp_path)
    spooled = await dead.append([_item("b@company.com"), _item("c@company.com")])
    dead.close()  # the process is gone; its file stays
    assert other.adopt_orphans() == 2
    written: list[str] = []

    async def write(batch: list[Spooled]) -> None:
        written.extend(r.public_id for r in batch)

    assert await other.replay(write) == 2
    assert written == [r.public_id for r in spooled]
    assert len(_files(tmp_path)) == 1  # the live process's file is untouched
    live.close()


async def test_files_stay_readable_after_a_key_rotation_and_never_with_an_unknown_key(tmp_path: Path) -> None:
    old = _spool(tmp_path)
    await old.append([_item("a@company.com")])
    old.close()
    new_key = secrets.token_bytes(32)
    assert _spool(tmp_path / "elsewhere", [new_key]).adopt_orphans() == 0
    assert _spool(tmp_path, [new_key]).adopt_orphans() == 0  # cannot read it: left alone, logged
    assert _spool(tmp_path, [new_key, KEY]).adopt_orphans() == 1  # the old key is still configured


async def test_a_full_spool_refuses_instead_of_acknowledging(tmp_path: Path) -> None:
    spool = _spool(tmp_path, max_bytes=4096)
    await spool.append([_item("a@company.com")])
    with pytest.raises(SpoolUnavailable, match="full"):
        await spool.append([_item(f"x{n}@company.com") for n in range(20)])
    assert spool.pending == 1


async def test_an_unwritable_spool_refuses(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = _spool(directory)
    directory.rmdir()
    directory.write_text("not a directory any more")  # the disk under the spool fails
    with pytest.raises(SpoolUnavailable, match="cannot be written"):
        await spool.append([_item("a@company.com")])
    assert spool.pending == 0
