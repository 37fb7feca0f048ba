"""Public identifiers."""

from __future__ import annotations

import os
import re
import time
import uuid

LEAD_ID_RE = re.compile(r"^lead_[0-9a-f]{12}$")

_VERSION_BITS = 0xF << 76
_VARIANT_BITS = 0x3 << 62


def uuid7() -> uuid.UUID:
    """An RFC 9562 version 7 UUID: the Unix time in milliseconds (48 bits), then 74 random bits.

    Python 3.14 has ``uuid.uuid7``; this is the same layout for 3.11. Ids made later sort after ids
    made earlier (to the millisecond), so a unique index on them grows at its end, as the lead table
    does, instead of taking each new id at a random place: with a random (version 4) UUID every
    captured lead dirtied its own page of that index, written to the WAL at every commit.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = value & ~_VERSION_BITS | 7 << 76  # version 7
    value = value & ~_VARIANT_BITS | 0x2 << 62  # the RFC 4122/9562 variant
    return uuid.UUID(int=value)


def new_lead_ids() -> tuple[str, str]:
    """A (uuid, public lead id) pair.

    The UUID is time-ordered (:func:`uuid7`) and unique across installations (74 random bits); the
    public id is ``lead_`` + 12 random hex characters, independent of it, so it tells nobody when the
    lead came or how many came since.
    """
    return str(uuid7()), "lead_" + os.urandom(6).hex()
