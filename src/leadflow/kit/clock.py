"""The one place that reads the wall clock, so tests can move time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """An aware UTC datetime (naive means UTC); years outside 1900-2999 are refused as nonsense."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date is out of range") from exc
    if not 1900 <= value.year <= 2999:
        raise ValueError("date is out of range (years 1900-2999)")
    return value


# For request fields and query parameters: validated, normalised to UTC.
UtcDateTime = Annotated[datetime, AfterValidator(to_utc)]
