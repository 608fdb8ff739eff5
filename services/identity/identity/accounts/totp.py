"""TOTP second factor (RFC 6238): enrolment with a QR code, verification with replay protection."""

from __future__ import annotations

import hmac
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import pyotp
import segno
from sqlmodel import Session

from identity.accounts import service
from identity.accounts.models import TotpCredential
from identity.accounts.sessions import utcnow
from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.deps import Origin
from identity.people.models import Person
from kit.crypto import FieldCipher

SECRET_PURPOSE = "totp_secret"  # noqa: S105 - the FieldCipher associated data: the ciphertext is only valid in this column
DIGITS = 6
INTERVAL = 30
# Codes of the previous and the next time step are accepted too (clock drift, slow typing).
DRIFT_STEPS = 1


def credential(session: Session, person_id: str) -> TotpCredential | None:
    return session.get(TotpCredential, person_id)


def is_enrolled(session: Session, person_id: str) -> bool:
    row = credential(session, person_id)
    return row is not None and row.confirmed_at is not None


def pending_secret(session: Session, cipher: FieldCipher, person: Person) -> str:
    """The secret being enrolled: the same one on every reload until a code confirms it."""
    row = credential(session, person.id)
    if row is not None and row.confirmed_at is not None:
        raise ValueError("already enrolled")
    if row is None:
        row = TotpCredential(person_id=person.id, secret_cipher=cipher.encrypt(SECRET_PURPOSE, pyotp.random_base32()))
        session.add(row)
        session.flush()
    return cipher.decrypt(SECRET_PURPOSE, row.secret_cipher)


def provisioning_uri(secret: str, *, account_name: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(name=account_name, issuer_name=issuer)


def qr_data_uri(uri: str) -> str:
    """An SVG QR code of ``uri`` as a ``data:`` URI, drawn on the server (the page's CSP allows data: images)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def grouped(secret: str) -> str:
    """``ABCD EFGH ...``: easier to type into an authenticator by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def clean_code(code: str) -> str | None:
    """Six digits, or None; full-width digits and spaces (``123 456``) are accepted."""
    digits = "".join(unicodedata.normalize("NFKC", code).split())
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


def matching_step(secret: str, code: str, *, now: datetime) -> int | None:
    """The time step (within the allowed drift) whose code ``code`` is, or None."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    current = totp.timecode(now)
    match = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Compare every candidate (no early exit): the time taken says nothing about which matched.
        if hmac.compare_digest(totp.generate_otp(step), code) and match is None:
            match = step
    return match


OtpStatus = Literal["ok", "invalid", "replayed", "locked"]


@dataclass(frozen=True)
class OtpOutcome:
    status: OtpStatus
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _audit(session: Session, action: str, origin: Origin, person: Person, result: str, **detail: object) -> None:
    audit.record(
        session, action=action, actor=replace(origin, person_id=person.id), result=result, target_type="person",
        target_id=person.id, org_id=person.org_id, detail=dict(detail),
    )  # fmt: skip


def confirm_enrolment(
    session: Session,
    cipher: FieldCipher,
    person: Person,
    code: str,
    *,
    origin: Origin,
    now: datetime | None = None,
) -> OtpOutcome:
    """Confirm the pending secret with a first code; from then on every login asks for one."""
    now = now or utcnow()
    row = credential(session, person.id)
    cleaned = clean_code(code)
    if row is None or row.confirmed_at is not None:
        return OtpOutcome("invalid")
    step = matching_step(cipher.decrypt(SECRET_PURPOSE, row.secret_cipher), cleaned, now=now) if cleaned else None
    if step is None:
        _audit(session, "mfa.enrol", origin, person, "denied", reason="bad_code")
        return OtpOutcome("invalid")
    row.confirmed_at = now
    row.last_used_step = step
    session.add(row)
    session.flush()
    _audit(session, "mfa.enrol", origin, person, "success", method="totp")
    return OtpOutcome("ok")


def verify(
    session: Session,
    settings: IdentitySettings,
    cipher: FieldCipher,
    person: Person,
    code: str,
    *,
    origin: Origin,
    now: datetime | None = None,
) -> OtpOutcome:
    """Check a login code; a wrong or replayed code counts toward the account's lockout like a wrong password."""
    now = now or utcnow()
    key = service.account_key(cipher, person.username or person.id)
    locked_until = service.lock_status(session, key, now=now)
    if locked_until is not None:
        _audit(session, "mfa.failure", origin, person, "denied", reason="locked")
        return OtpOutcome("locked", locked_until=locked_until)
    row = credential(session, person.id)
    if row is None or row.confirmed_at is None:
        return OtpOutcome("invalid")
    cleaned = clean_code(code)
    step = matching_step(cipher.decrypt(SECRET_PURPOSE, row.secret_cipher), cleaned, now=now) if cleaned else None
    replayed = step is not None and row.last_used_step is not None and step <= row.last_used_step
    if step is None or replayed:
        reason = "replayed_code" if replayed else "bad_code"
        _audit(session, "mfa.failure", origin, person, "denied", reason=reason)
        failing_origin = replace(origin, person_id=person.id)
        locked_until = service.record_failure(session, settings, key, origin=failing_origin, person=person, now=now)
        if locked_until is not None:
            return OtpOutcome("locked", locked_until=locked_until)
        return OtpOutcome("replayed" if replayed else "invalid")
    row.last_used_step = step
    session.add(row)
    session.flush()
    service.clear_failures(session, key)
    _audit(session, "mfa.verified", origin, person, "success", method="totp")
    return OtpOutcome("ok")
