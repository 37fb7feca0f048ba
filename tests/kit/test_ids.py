"""Lead identifiers: a time-ordered UUID (version 7) and an independent random public id."""

from __future__ import annotations

import time
import uuid

from leadflow.kit.ids import LEAD_ID_RE, new_lead_ids, uuid7


def test_uuid7_has_the_rfc_9562_layout() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after  # the first 48 bits: Unix time in milliseconds
    assert str(uuid.UUID(str(value))) == str(value)


def test_uuid7_sorts_by_time_and_stays_unique() -> None:
    earlier = [uuid7() for _ in range(2000)]
    time.sleep(0.002)
    later = [uuid7() for _ in range(2000)]
    assert len({*earlier, *later}) == 4000
    assert max(str(u) for u in earlier) < min(str(u) for u in later)  # as text too (the column)


def test_lead_ids_public_id_is_random_and_independent_of_the_uuid() -> None:
    pairs = [new_lead_ids() for _ in range(5000)]
    assert all(LEAD_ID_RE.match(public) for _, public in pairs)
    assert all(uuid.UUID(u).version == 7 for u, _ in pairs)
    publics = [public for _, public in pairs]
    assert len(set(publics)) == len(publics)
    assert all(public[5:] not in u.replace("-", "") for u, public in pairs)
    assert sorted(publics) != publics  # made within the same few ms, yet in no time order
