"""Staff accounts: Argon2id passwords, the password policy, sign-in checks and one-time reset links.

The boundary (CLI command, page handler) commits; these functions only write in the caller's
transaction. A password is hashed with Argon2id (``argon2-cffi``'s RFC 9106 low-memory profile); a
hash made with older parameters is upgraded at the next successful sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.clock import utcnow
from leadflow.security import repository
from leadflow.security.repository import UserRow
from leadflow.security.user_models import USER_ROLES

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # Argon2 takes any length; a bound keeps a request from costing seconds
# The passwords people pick first (and every password manager's list starts with); longer than the minimum.
COMMON = frozenset(
    {
        "password1234",
        "passwordpassword",
        "123456789012",
        "1234567890123",
        "qwertyuiopas",
        "qwerty123456",
        "letmein12345",
        "welcome12345",
        "administrator",
        "changeme1234",
        "iloveyou1234",
        "leadflow1234",
        "abcdefghijkl",
        "abc123456789",
        "000000000000",
        "111111111111",
    }
)

_hasher = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the e-mail is unknown: the answer takes as long as for a user."""
    return _hasher.hash(secrets.token_urlsafe(16))


class PasswordRejected(ValueError):
    """The password does not meet the policy (the message says why, never echoing it)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_policy(password: str, *, email: str = "", name: str = "") -> None:
    """Refuse short, common or guessable passwords (NIST SP 800-63B: length over composition rules)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    lowered = password.lower()
    if lowered in COMMON or len(set(password)) < 5:
        raise PasswordRejected("the password is too common or too repetitive; choose another")
    local = email.split("@", 1)[0].lower()
    if (len(local) >= 4 and local in lowered) or (name and name.lower().replace(" ", "") == lowered):
        raise PasswordRejected("the password must not contain your e-mail address or name")


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if "@" not in value or any(c.isspace() for c in value) or len(value) > 255:
        raise ValueError(f"{email!r} is not an e-mail address")
    return value


def generate_password() -> str:
    """A random password that meets the policy (the first admin's, printed once)."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class SignIn:
    """The outcome of a sign-in attempt: the user when the e-mail and password match an active account."""

    user: UserRow | None
    reason: str  # ok | unknown | wrong_password | inactive
    account_id: int | None = None  # the account the e-mail belongs to, also when the sign-in failed


async def create_user(
    conn: AsyncConnection,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    member_email: str | None = None,
) -> UserRow:
    """Create an account (ValueError: bad role, taken e-mail, unknown member; PasswordRejected)."""
    if role not in USER_ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(USER_ROLES)}")
    email = normalise_email(email)
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("the name must have 1 to 100 characters")
    check_password_policy(password, email=email, name=name)
    if await repository.user_by_email(conn, email) is not None:
        raise ValueError(f"a user with the e-mail {email} exists already")
    member_id = None
    if member_email is not None:
        member_id = await repository.member_id_by_email(conn, normalise_email(member_email))
        if member_id is None:
            raise ValueError(f"no routing team member has the e-mail {member_email}")
    user_id = await repository.insert_user(
        conn,
        email=email,
        name=name,
        role=role,
        password_hash=hash_password(password),
        member_id=member_id,
        now=utcnow(),
    )
    created = await repository.user_by_id(conn, user_id)
    assert created is not None
    return created


async def authenticate(conn: AsyncConnection, email: str, password: str) -> SignIn:
    """Check an e-mail and password (constant work whether or not the account exists)."""
    try:
        email = normalise_email(email)
    except ValueError:
        email = ""
    user = await repository.user_by_email(conn, email) if email else None
    stored = await repository.password_hash_of(conn, user.id) if user is not None else None
    password = password[:MAX_PASSWORD_LENGTH]
    try:
        _hasher.verify(stored or _dummy_hash(), password)
        matched = stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        matched = False
    if user is None:
        return SignIn(None, "unknown")
    if not matched:
        return SignIn(None, "wrong_password", user.id)
    if not user.active:
        return SignIn(None, "inactive", user.id)
    assert stored is not None
    if _hasher.check_needs_rehash(stored):
        await repository.set_password_hash(conn, user.id, hash_password(password))
    await repository.touch_sign_in(conn, user.id, utcnow())
    return SignIn(user, "ok", user.id)


async def set_password(conn: AsyncConnection, user: UserRow, password: str) -> None:
    """A new password; every session and open reset link of the user stops working."""
    check_password_policy(password, email=user.email, name=user.name)
    await repository.set_password_hash(conn, user.id, hash_password(password))
    await repository.delete_user_sessions(conn, user.id)
    await repository.void_resets(conn, user.id, utcnow())


async def deactivate(conn: AsyncConnection, email: str) -> UserRow | None:
    """Switch an account off: its sessions are deleted at once (every process reads them from the DB)."""
    user = await repository.user_by_email(conn, normalise_email(email))
    if user is None:
        return None
    await repository.set_active(conn, user.id, False)
    await repository.delete_user_sessions(conn, user.id)
    await repository.void_resets(conn, user.id, utcnow())
    return user


# -- one-time reset links -----------------------------------------------------------------------------
RESET_PATH = "/reset-password/"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_reset(conn: AsyncConnection, user: UserRow, valid_for: timedelta) -> str:
    """A new one-time token (earlier open links of the user stop working); returns the token."""
    now = utcnow()
    await repository.void_resets(conn, user.id, now)
    token = secrets.token_urlsafe(32)
    await repository.insert_reset(
        conn, token_hash=_digest(token), user_id=user.id, now=now, expires_at=now + valid_for
    )
    return token


def reset_link(base_url: str, token: str) -> str:
    return base_url.rstrip("/") + RESET_PATH + token


async def reset_user(conn: AsyncConnection, token: str) -> UserRow | None:
    """The active user a usable reset token belongs to (None: unknown, used or expired)."""
    if not token or len(token) > 100:
        return None
    user_id = await repository.usable_reset(conn, _digest(token), utcnow())
    if user_id is None:
        return None
    user = await repository.user_by_id(conn, user_id)
    return user if user is not None and user.active else None


async def complete_reset(conn: AsyncConnection, token: str, password: str) -> UserRow | None:
    """Set the password through a reset token, using the token up (None: the link does not work)."""
    user = await reset_user(conn, token)
    if user is None:
        return None
    check_password_policy(password, email=user.email, name=user.name)
    if not await repository.use_reset(conn, _digest(token), utcnow()):
        return None
    await set_password(conn, user, password)
    return user


FIRST_ADMIN_EMAIL = "admin@leadflow.local"


async def ensure_first_admin(
    conn: AsyncConnection, email: str = FIRST_ADMIN_EMAIL
) -> tuple[UserRow, str] | None:
    """Create an admin account with a generated password when there is no admin yet (``quickstart``);
    returns it and its password the one time it is created, else None."""
    if await repository.count_users(conn, role="admin") > 0:
        return None
    password = generate_password()
    user = await create_user(conn, email=email, name="Administrator", role="admin", password=password)
    return user, password
