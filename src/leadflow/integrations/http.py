"""Shared HTTP handling for connectors: one status-code policy, Retry-After, trimmed responses."""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from leadflow.integrations.base import Outcome, PermanentError, RetriableError

EXCERPT = 500


def excerpt(text: str | None, limit: int = EXCERPT) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str | None, *secrets: str | None) -> str | None:
    """The text without these personal values (vendors echo submitted values in answers and errors)."""
    if text is None:
        return None
    for value in secrets:
        if value and len(value) >= 3:
            text = text.replace(value, "[redacted]").replace(value.lower(), "[redacted]")
    return text


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def check(
    response: httpx.Response,
    *,
    external_id: str | None = None,
    summary: Callable[[httpx.Response], str] | None = None,
    pii: Sequence[str | None] = (),
) -> Outcome:
    """Map a vendor response to an Outcome or raise Retriable/Permanent errors.

    A failure's excerpt is ``summary(response)`` when given (the vendor's error in a line, instead of
    its whole body) with the personal values ``pii`` redacted (vendors echo what was submitted).
    """
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(status_code=code, response_excerpt=excerpt(response.text), external_id=external_id)
    body = excerpt(redact(summary(response) if summary is not None else response.text, *pii))
    if code in (408, 425, 429) or code >= 500:
        raise RetriableError(
            f"{response.request.method} {response.request.url.host} answered {code}",
            status_code=code,
            response_excerpt=body,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    raise PermanentError(
        f"{response.request.method} {response.request.url.host} refused the request ({code})",
        status_code=code,
        response_excerpt=body,
    )


async def send(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """Send a request; network failures and timeouts are retriable."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetriableError(f"timeout talking to {httpx.URL(url).host}") from exc
    except httpx.TransportError as exc:
        raise RetriableError(f"network error talking to {httpx.URL(url).host}: {type(exc).__name__}") from exc
