"""Login and account security: checking passwords, locking accounts, changing passwords, who needs a second factor.

The functions write the failures, lockouts and audit entries they cause into the caller's session and
*return* an outcome instead of raising, so the caller can commit them and then show the refusal: a
refused login must still count. Both the login pages and the OAuth provider call these.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from identity.accounts import passwords
from identity.accounts.models import LoginThrottle
from identity.accounts.passwords import PolicyViolation, WeakPassword
from identity.accounts.sessions import aware, utcnow
from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.deps import Actor, Origin
from identity.people.models import Person, RoleGrant
from kit.crypto import FieldCipher
from kit.db import Database
from kit.errors import FieldError

# Holders of these roles (while active) must use a TOTP second factor.
MFA_ROLES = ("city_admin", "district_admin", "school_admin", "auditor")
# A clean period this long (no failure, no lockout running) starts the lockout escalation over.
ESCALATION_RESET = timedelta(hours=24)
ACCOUNT_KEY_PURPOSE = "login_account"
MAX_USERNAME_LENGTH = 64


def normalise_username(username: str) -> str:
    """The form a username is compared and keyed by: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def account_key(cipher: FieldCipher, username: str) -> str:
    """The lockout key of a username: a keyed hash, the same whether or not anyone holds the name."""
    return cipher.lookup_hash(ACCOUNT_KEY_PURPOSE, normalise_username(username))


def find_by_username(session: Session, username: str) -> Person | None:
    """The person with this username, ignoring case (through the unique index: no scan)."""
    typed = unicodedata.normalize("NFKC", username).strip()
    if not typed or len(typed) > MAX_USERNAME_LENGTH:
        return None
    candidates = {typed, typed.lower(), typed.upper()}
    rows = list(session.exec(select(Person).where(col(Person.username).in_(candidates))))
    if not rows:
        return None
    exact = [row for row in rows if row.username == typed]
    return exact[0] if exact else rows[0]


# ---------------------------------------------------------------------------------------------- lockout


def lock_status(session: Session, key: str, *, now: datetime | None = None) -> datetime | None:
    """When the lockout of ``key`` ends, or None if it is not locked."""
    now = now or utcnow()
    row = session.get(LoginThrottle, key)
    if row is not None and row.locked_until is not None and aware(row.locked_until) > now:
        return aware(row.locked_until)
    return None


def _throttle_row(session: Session, key: str) -> LoginThrottle:
    row = session.get(LoginThrottle, key, with_for_update=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = LoginThrottle(account_key=key)
            session.add(row)
        return row
    except IntegrityError:  # another request created it just now
        row = session.get(LoginThrottle, key, with_for_update=True, populate_existing=True)
        assert row is not None
        return row


def record_failure(
    session: Session,
    settings: IdentitySettings,
    key: str,
    *,
    origin: Origin | None,
    person: Person | None = None,
    now: datetime | None = None,
) -> datetime | None:
    """Count one failed password or code for ``key``; returns the lockout's end if this failure locked it."""
    now = now or utcnow()
    row = _throttle_row(session, key)
    # Quiet since the last failure, or since the last lockout ran out, whichever is later.
    moments = [aware(moment) for moment in (row.last_failure_at, row.locked_until) if moment is not None]
    if not moments or now - max(moments) > ESCALATION_RESET:
        row.lockouts = 0
    window = timedelta(seconds=settings.login_failure_window_seconds)
    if row.window_started_at is None or now - aware(row.window_started_at) > window:
        row.window_started_at, row.failures = now, 0
    row.failures += 1
    row.last_failure_at = now
    locked_until = None
    if row.failures >= settings.login_failure_threshold:
        steps = settings.lockout_seconds
        duration = steps[min(row.lockouts, len(steps) - 1)]
        locked_until = now + timedelta(seconds=duration)
        row.lockouts += 1
        row.locked_until, row.failures, row.window_started_at = locked_until, 0, None
        _audit(
            session, "login.lockout", actor=origin, person=person, result="denied",
            detail={"account_key": key, "lockout": row.lockouts, "seconds": duration,
                    "until": locked_until.isoformat(timespec="seconds")},
        )  # fmt: skip
    session.add(row)
    session.flush()
    return locked_until


def clear_failures(session: Session, key: str) -> None:
    """A success: the failure count starts over (the escalation level waits for a clean period)."""
    row = session.get(LoginThrottle, key)
    if row is not None and (row.failures or row.window_started_at is not None):
        row.failures, row.window_started_at = 0, None
        session.add(row)
        session.flush()


def lift_lockout(session: Session, key: str) -> None:
    """An administrator reset the account: any lockout ends and failures start over."""
    row = session.get(LoginThrottle, key)
    if row is not None:
        row.failures, row.window_started_at, row.locked_until = 0, None, None
        session.add(row)
        session.flush()


# ------------------------------------------------------------------------------------------------ login

LoginStatus = Literal["ok", "invalid", "locked", "disabled"]


@dataclass(frozen=True)
class LoginOutcome:
    """What a password check came to. ``invalid`` never says whether the account exists."""

    status: LoginStatus
    person: Person | None = None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _audit(
    session: Session,
    action: str,
    *,
    actor: Actor | Origin | None,
    person: Person | None,
    result: str = "success",
    detail: dict[str, object] | None = None,
) -> None:
    audit.record(
        session, action=action, actor=actor, result=result, target_type="person" if person else None,
        target_id=person.id if person else None, org_id=person.org_id if person else None, detail=detail,
    )  # fmt: skip


def _acting_as(origin: Origin, person: Person | None) -> Origin:
    return replace(origin, person_id=person.id if person else None)


def _login_failure(
    session: Session, origin: Origin, key: str, person: Person | None, reason: str, **detail: object
) -> None:
    # An unknown name is recorded by its keyed hash only: the audit log never holds typed-in names.
    extra = {} if person is not None else {"account_key": key}
    _audit(session, "login.failure", actor=_acting_as(origin, person), person=person, result="denied",
           detail={"reason": reason, **extra, **detail})  # fmt: skip


@dataclass(frozen=True)
class PasswordCheck:
    """A password verified before the login's transaction: against which hash, with what result."""

    password_hash: str | None
    verified: bool


def check_password_outside_transaction(database: Database, settings: IdentitySettings, username: str,
                                       password: str) -> PasswordCheck:  # fmt: skip
    """Verify the password (the slow part of a login) holding no database lock.

    On SQLite a login's transaction holds the single write lock; hashing inside it made concurrent
    logins queue for the whole 80-90 ms of argon2id each. ``authenticate`` trusts this result only if
    the account's hash is still the one checked here.
    """
    with database.read_session() as session:
        person = find_by_username(session, username)
        password_hash = person.password_hash if person else None
    verified = passwords.verify_password(passwords.hasher_for(settings), password_hash, password)
    return PasswordCheck(password_hash=password_hash, verified=verified)


def authenticate(
    session: Session,
    settings: IdentitySettings,
    cipher: FieldCipher,
    *,
    username: str,
    password: str,
    origin: Origin,
    now: datetime | None = None,
    checked: PasswordCheck | None = None,
) -> LoginOutcome:
    """Check a username and password, counting failures and locking as configured; everything is audited.

    Unknown names, wrong passwords and (until the password is right) deactivated accounts take the
    same path and the same time: an unknown name is checked against a dummy hash.
    """
    now = now or utcnow()
    key = account_key(cipher, username)
    person = find_by_username(session, username)
    locked_until = lock_status(session, key, now=now)
    if locked_until is not None:
        _login_failure(session, origin, key, person, "locked", until=locked_until.isoformat(timespec="seconds"))
        return LoginOutcome("locked", locked_until=locked_until)
    hasher = passwords.hasher_for(settings)
    current_hash = person.password_hash if person else None
    if checked is not None and checked.password_hash == current_hash:
        verified = checked.verified
    else:
        verified = passwords.verify_password(hasher, current_hash, password)
    if not verified or person is None:
        locked_until = record_failure(session, settings, key, origin=_acting_as(origin, person), person=person, now=now)
        _login_failure(session, origin, key, person, "unknown_account" if person is None else "bad_password")
        if locked_until is not None:
            return LoginOutcome("locked", locked_until=locked_until)
        return LoginOutcome("invalid")
    if not person.active:
        _login_failure(session, origin, key, person, "inactive")
        return LoginOutcome("disabled", person=person)
    clear_failures(session, key)
    if person.password_hash and passwords.needs_rehash(hasher, person.password_hash):
        person.password_hash = passwords.hash_password(hasher, password)
        session.add(person)
        session.flush()
    _audit(session, "login.password_verified", actor=_acting_as(origin, person), person=person,
           detail={"must_change_password": person.must_change_password})  # fmt: skip
    return LoginOutcome("ok", person=person)


def mfa_required(session: Session, person_id: str) -> bool:
    """Whether the person holds an active role that requires a second factor."""
    query = select(RoleGrant.id).where(
        RoleGrant.person_id == person_id, col(RoleGrant.active).is_(True), col(RoleGrant.role).in_(MFA_ROLES)
    )
    return session.exec(query.limit(1)).first() is not None


# ------------------------------------------------------------------------------------------- passwords


def set_password(
    session: Session,
    settings: IdentitySettings,
    person: Person,
    password: str,
    *,
    must_change: bool,
    actor: Actor | Origin | None,
    now: datetime | None = None,
) -> None:
    """Set a password (an administrator's initial one, or the person's own); raises WeakPassword.

    The policy is the same whoever sets it. ``must_change`` makes the person choose their own at
    their next login.
    """
    hasher = passwords.hasher_for(settings)
    violations = passwords.check_policy(password, username=person.username)
    if violations:
        raise WeakPassword(
            "The password does not meet the policy; see errors[].",
            errors=[FieldError(field="password", message=f"{v.zh} / {v.en}", code=v.code) for v in violations],
        )
    now = now or utcnow()
    person.password_hash = passwords.hash_password(hasher, password)
    person.password_changed_at = now
    person.must_change_password = must_change
    person.updated_at = now
    session.add(person)
    session.flush()
    _audit(session, "account.password_set", actor=actor, person=person, detail={"must_change_password": must_change})


PasswordChangeStatus = Literal["ok", "wrong_current", "weak", "locked"]


@dataclass(frozen=True)
class PasswordChange:
    status: PasswordChangeStatus
    violations: list[PolicyViolation] = field(default_factory=list)
    locked_until: datetime | None = None


def change_password(
    session: Session,
    settings: IdentitySettings,
    cipher: FieldCipher,
    person: Person,
    *,
    current_password: str,
    new_password: str,
    origin: Origin,
    now: datetime | None = None,
) -> PasswordChange:
    """A person changes their own password; a wrong current password counts toward the lockout."""
    now = now or utcnow()
    key = account_key(cipher, person.username or person.id)
    actor = _acting_as(origin, person)
    locked_until = lock_status(session, key, now=now)
    if locked_until is not None:
        return PasswordChange("locked", locked_until=locked_until)
    hasher = passwords.hasher_for(settings)
    if not passwords.verify_password(hasher, person.password_hash, current_password):
        locked_until = record_failure(session, settings, key, origin=actor, person=person, now=now)
        _audit(session, "account.password_change", actor=actor, person=person, result="denied",
               detail={"reason": "bad_password"})  # fmt: skip
        return PasswordChange("locked" if locked_until else "wrong_current", locked_until=locked_until)
    violations = passwords.check_policy(
        new_password, username=person.username, current_hash=person.password_hash, hasher=hasher
    )
    if violations:
        _audit(session, "account.password_change", actor=actor, person=person, result="denied",
               detail={"reason": "policy", "violations": [v.code for v in violations]})  # fmt: skip
        return PasswordChange("weak", violations=violations)
    clear_failures(session, key)
    forced = person.must_change_password
    person.password_hash = passwords.hash_password(hasher, new_password)
    person.password_changed_at = now
    person.must_change_password = False
    person.updated_at = now
    session.add(person)
    session.flush()
    _audit(session, "account.password_change", actor=actor, person=person, detail={"forced": forced})
    return PasswordChange("ok")
