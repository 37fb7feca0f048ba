"""Which stored slots cover a period at a given time (pure: ``rollup.expected_slots``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from leadflow.campaigns import repository as repo
from leadflow.campaigns import rollup


def test_the_slots_that_cover_a_period() -> None:
    """Closed days whole; on an open day closed hours, then closed ten minutes; the rest is live."""
    day = date(2026, 3, 10)
    now = datetime.combine(day, time(12, 34), tzinfo=UTC)
    slots = rollup.expected_slots(day - timedelta(days=2), day, now)
    tenths = [repo.TENTHS + 6 * 12, repo.TENTHS + 6 * 12 + 1]  # 12:00-12:10 and 12:10-12:20
    assert slots == [
        (day - timedelta(days=2), repo.WHOLE_DAY),
        (day - timedelta(days=1), repo.WHOLE_DAY),
        *[(day, h) for h in range(12)],
        *[(day, t) for t in tenths],
    ]
    assert rollup.live_from(now) == datetime.combine(day, time(12, 20), tzinfo=UTC)
    assert rollup.bounds(day, tenths[1]) == (
        datetime.combine(day, time(12, 10), tzinfo=UTC),
        datetime.combine(day, time(12, 20), tzinfo=UTC),
    )
    # Five past midnight: yesterday is not closed yet (its last ten minutes end at 00:00 + 10).
    now = datetime.combine(day, time(0, 5), tzinfo=UTC)
    slots = rollup.expected_slots(day - timedelta(days=1), day, now)
    yesterday = day - timedelta(days=1)
    assert slots == [
        *[(yesterday, h) for h in range(23)],
        *[(yesterday, repo.TENTHS + 6 * 23 + k) for k in range(5)],
    ]
    assert rollup.live_from(now) == datetime.combine(yesterday, time(23, 50), tzinfo=UTC)
