"""Staff accounts of the workspace, their server-side sessions and one-time password-reset tokens.

Staff e-mail addresses are stored in plaintext (lower-cased): they are the staff's work addresses,
the sign-in name an admin types and reads in ``leadflow users list``, not personal data of leads
(which is encrypted, DESIGN.md rule 5). Secrets are never stored: the password as an Argon2id hash,
session ids and reset tokens as SHA-256 digests.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, true
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.kit.models import Base, BigId, UTCDateTime

USER_ROLES = ("admin", "manager", "sales", "analyst")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN {USER_ROLES}", name="role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    member_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("team_members.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserSession(Base):
    """A signed-in browser: the cookie holds the id, the table its SHA-256 (shared by every process)."""

    __tablename__ = "sessions"
    __table_args__ = (Index("idx_sessions_user", "user_id"), Index("idx_sessions_expires", "expires_at"))

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    csrf_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # absolute: created + SESSION_MAX_HOURS


class PasswordReset(Base):
    """A one-time, expiring link to set a new password (SHA-256 of the token stored)."""

    __tablename__ = "password_resets"
    __table_args__ = (Index("idx_password_resets_user", "user_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
