"""The worker's re-score reads every scoring input from the stored lead (none falls back to a default)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from leadflow.leads import tasks
from leadflow.leads.models import OPTIONAL_FIELDS
from leadflow.scoring import rules


def _stored(**overrides: object) -> SimpleNamespace:
    row = {
        "phone": b"sealed",
        "company": None,
        "service_interest": "nextcloud installation",
        "urgency": "high",
        "budget_range": "5000-10000",
        "message": b"sealed",
        "timeline": None,
        "time_on_page_seconds": 120,
        "returning_visitor": 1,
        "channel": "Paid Search",
    }
    row.update(overrides)
    return SimpleNamespace(**row)


def test_every_score_input_is_read_from_the_stored_lead() -> None:
    supplied = set(tasks.stored_score_fields(_stored(), "business", frozenset()))
    assert supplied == {f.name for f in dataclasses.fields(rules.ScoreInput)}


def test_stored_lead_maps_to_its_inputs() -> None:
    score = tasks.score_input(_stored(), "business", frozenset({"nextcloud installation"}))
    assert score.phone and not score.company
    assert score.filled_optional == frozenset(
        {"phone", "service_interest", "urgency", "budget_range", "message"}
    )
    assert score.filled_optional <= set(OPTIONAL_FIELDS)
    assert score.returning_visitor is True and score.channel == "Paid Search"
    assert tasks.score_input(_stored(channel=None), "free", frozenset()).channel == "Unassigned"
