"""The claims an ID token and userinfo release, scope by scope (and only for consented scopes)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from identity.people.models import GuardianLink, Person
from kit.crypto import FieldCipher
from kit.identifiers import mask_student_number


def person_claims(session: Session, cipher: FieldCipher, person: Person, scopes: set[str]) -> dict[str, Any]:
    """Claims beyond ``sub`` for the granted scopes; nothing for a scope that was not granted."""
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims["name"] = person.name
        claims["person_kind"] = person.kind
        claims["locale"] = "zh-CN"
    if "phone" in scopes and person.phone_cipher:
        claims["phone_number"] = "+86" + cipher.decrypt("phone", person.phone_cipher)
        claims["phone_number_verified"] = False
    if "roster.read" in scopes or "org.read" in scopes:
        claims["school_id"] = person.org_id
    if "student.identity.read" in scopes and person.kind == "student":
        claims["resident_id_number_masked"] = person.resident_id_masked
        if person.student_number:
            claims["student_number"] = mask_student_number(person.student_number)
    if "guardian.read" in scopes and person.kind == "guardian":
        links = session.exec(
            select(GuardianLink).where(GuardianLink.guardian_id == person.id, col(GuardianLink.active).is_(True))
        ).all()
        claims["guardian_of"] = [{"relationship": link.relationship} for link in links]
    return claims
