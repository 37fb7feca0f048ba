"""Alert notification state, shared by every process through the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.kit.models import Base, UTCDateTime


class AlertState(Base):
    """One row per alert condition: firing or ok, and when a message was last sent for it.

    A process may send a message only after winning a conditional UPDATE (or the INSERT) on this row,
    so N replicas checking the same condition send one message per throttle period, not N.
    """

    __tablename__ = "alert_state"
    __table_args__ = (CheckConstraint("state IN ('firing', 'ok')", name="state"),)

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(10))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
