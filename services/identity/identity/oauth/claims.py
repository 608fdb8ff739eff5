"""The claims an ID token and userinfo release, scope by scope (and only for consented scopes)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from identity.organisations.models import Organisation
from identity.people.models import GuardianLink, Person, RoleGrant
from kit.crypto import FieldCipher
from kit.identifiers import mask_student_number


def school_role_claims(session: Session, person: Person) -> dict[str, Any]:
    """``school_id`` and ``roles`` (role names held there) for a vendor's app: what ``openid`` releases to apps
    (its personal fields ``school_membership`` and ``role_grants``). The school is the person's home school, or
    else the first school where they hold a role (a parent's child's school); no school, no claims."""
    grants = session.exec(
        select(RoleGrant).where(RoleGrant.person_id == person.id, col(RoleGrant.active).is_(True))
        .order_by(col(RoleGrant.granted_at))
    ).all()  # fmt: skip
    candidates = [person.org_id, *(grant.org_id for grant in grants if grant.org_id != person.org_id)]
    for org_id in candidates:
        organisation = session.get(Organisation, org_id)
        if organisation is not None and organisation.kind == "school" and organisation.active:
            roles = sorted({grant.role for grant in grants if grant.org_id == org_id})
            if person.kind == "student" and "student" not in roles:
                roles.append("student")
            return {"school_id": org_id, "roles": roles}
    return {}


def person_claims(
    session: Session, cipher: FieldCipher, person: Person, scopes: set[str], *, for_app: bool = False
) -> dict[str, Any]:
    """Claims beyond ``sub`` for the granted scopes; nothing for a scope that was not granted.

    ``for_app``: the client is a vendor's app from the app store, to which ``openid`` also releases the user's
    school and roles there.
    """
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
    if for_app and "openid" in scopes:
        claims.update(school_role_claims(session, person))
    return claims
