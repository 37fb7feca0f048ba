"""Consent history and used unsubscribe links (migration 0008)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.kit.models import Base, BigId, UTCDateTime

CONSENT_ACTIONS = ("grant", "withdraw", "do_not_sell", "allow_sale")
CONSENT_CHANNELS = ("api", "cli", "unsubscribe_link", "one_click", "lead_update")


class ConsentEvent(Base):
    """One change of a person's consent or sale/sharing opt-out after capture.

    Keyed by the e-mail blind index (a person may have several leads); the consent given on the form
    itself is the lead's ``consent_given``/``consent_at`` and is shown first in the history.
    """

    __tablename__ = "consent_events"
    __table_args__ = (
        Index("idx_consent_events_person", "email_hash", "created_at"),
        Index("idx_consent_events_created", "created_at"),
        CheckConstraint(f"action IN {CONSENT_ACTIONS}", name="consent_action"),
        CheckConstraint(f"channel IN {CONSENT_CHANNELS}", name="consent_channel"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email_hash: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    action: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class UnsubscribeUse(Base):
    """An unsubscribe link that was used (each link works once): SHA-256 of the token."""

    __tablename__ = "unsubscribe_uses"
    __table_args__ = (Index("idx_unsubscribe_uses_used", "used_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime)
