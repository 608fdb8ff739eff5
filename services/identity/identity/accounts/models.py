"""Tables of login and account security: lockout counters, TOTP credentials, browser sessions."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from identity.organisations.models import new_id, utcnow


class LoginThrottle(SQLModel, table=True):
    """Failed-login counter and lockout of one account key.

    The key is a keyed hash of the normalised username, never the name itself, and a row exists for
    names nobody holds as well: an unknown name locks exactly like a real one, so lockout reveals nothing.
    """

    __tablename__ = "login_throttle"

    account_key: str = Field(primary_key=True, max_length=64)
    failures: int = 0  # within the current window
    window_started_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_failure_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    lockouts: int = 0  # successive lockouts so far: picks the next lockout's length
    locked_until: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class TotpCredential(SQLModel, table=True):
    """A person's TOTP secret (RFC 6238), encrypted at rest; unconfirmed until the first code is accepted."""

    __tablename__ = "totp_credential"

    person_id: str = Field(foreign_key="person.id", primary_key=True, max_length=36)
    secret_cipher: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    confirmed_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    # The last time step a code was accepted for: that step and earlier ones are never accepted again.
    last_used_step: int | None = Field(default=None, sa_type=sa.BigInteger)


class BrowserSession(SQLModel, table=True):
    """A login in a browser. Only the SHA-256 of the cookie's token is stored; the token itself never is."""

    __tablename__ = "browser_session"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    token_hash: str = Field(max_length=64, unique=True)
    person_id: str = Field(foreign_key="person.id", index=True, max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    password_verified_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    mfa_required: bool = False
    mfa_verified_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    password_change_pending: bool = False
    ended_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    end_reason: str | None = Field(default=None, max_length=16)  # logout | idle | absolute | reauth | ...
    source_ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=200)
