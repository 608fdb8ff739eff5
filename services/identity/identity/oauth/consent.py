"""Consent: which scopes a person released to a client, and who agreed (PIPL Art. 14, 28, 31).

A child under 14 cannot consent alone to scopes that release personal information (``sensitive``
scopes in the catalogue): those need a linked guardian's consent, which the guardian gives on their
own account page. Until then the child's app gets only what is not sensitive.
Withdrawing consent revokes every token the client holds for that person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from contracts.scopes import SCOPES_BY_ID
from identity.audit import service as audit
from identity.deps import Origin
from identity.oauth import tokens
from identity.oauth.models import Consent, GuardianConsentRequest, OAuthClient, PairwiseSubject
from identity.people.models import GuardianLink, Person
from kit.identifiers import pairwise_subject

AGE_OF_CONSENT = 14


def age_on(birth_date: date, today: date) -> int:
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def needs_guardian(person: Person, *, today: date | None = None) -> bool:
    """A student under 14 (or of unknown age: fail safe) needs a guardian for sensitive scopes."""
    if person.kind != "student":
        return False
    if person.birth_date is None:
        return True
    return age_on(person.birth_date, today or datetime.now(UTC).date()) < AGE_OF_CONSENT


def sensitive(scope_ids: list[str]) -> list[str]:
    return [scope_id for scope_id in scope_ids if (item := SCOPES_BY_ID.get(scope_id)) and item.sensitive]


def active_consent(session: Session, person_id: str, client_id: str) -> Consent | None:
    return session.exec(
        select(Consent).where(
            Consent.person_id == person_id, Consent.client_id == client_id, col(Consent.withdrawn_at).is_(None)
        )
    ).first()


def consented_scopes(session: Session, person_id: str, client_id: str) -> set[str]:
    consent = active_consent(session, person_id, client_id)
    return set(consent.scope.split()) if consent else set()


def grantable(client: OAuthClient, requested: list[str]) -> list[str]:
    """The requested scopes the client is registered for, in request order."""
    allowed = set(client.scope.split())
    return [scope_id for scope_id in dict.fromkeys(requested) if scope_id in allowed]


@dataclass(frozen=True)
class ConsentDecision:
    """What the consent screen asks and what may be released without asking again."""

    to_release: list[str]  # scopes the token will carry
    needs_prompt: bool  # the person must confirm on the consent screen
    withheld_for_guardian: list[str]  # sensitive scopes waiting for a guardian


def decide(session: Session, client: OAuthClient, person: Person, requested: list[str]) -> ConsentDecision:
    wanted = grantable(client, requested)
    if client.first_party:
        return ConsentDecision(to_release=wanted, needs_prompt=False, withheld_for_guardian=[])
    already = consented_scopes(session, person.id, client.client_id)
    if needs_guardian(person):
        withheld = [s for s in sensitive(wanted) if s not in already]
        releasable = [s for s in wanted if s not in withheld]
        # Scopes already put to a guardian are not asked about again at every sign-in of the child.
        asked = guardian_asked(session, person.id, client.client_id)
        return ConsentDecision(
            to_release=releasable,
            needs_prompt=any(s not in already for s in releasable) or any(s not in asked for s in withheld),
            withheld_for_guardian=withheld,
        )
    return ConsentDecision(
        to_release=wanted, needs_prompt=any(s not in already for s in wanted), withheld_for_guardian=[]
    )


def record(
    session: Session, *, person: Person, client: OAuthClient, scopes: list[str], granted_by: str, origin: Origin
) -> Consent:
    """Add ``scopes`` to the person's consent for the client (one active record per pair)."""
    consent = active_consent(session, person.id, client.client_id)
    merged = list(dict.fromkeys([*(consent.scope.split() if consent else []), *scopes]))
    if consent is not None and set(merged) == set(consent.scope.split()):
        return consent
    if consent is not None:
        consent.withdrawn_at = datetime.now(UTC)
        consent.withdrawn_by = granted_by
        session.add(consent)
    fresh = Consent(person_id=person.id, client_id=client.client_id, scope=" ".join(merged), granted_by=granted_by)
    session.add(fresh)
    session.flush()
    audit.record(
        session,
        action="consent.granted",
        actor=origin,
        target_type="person",
        target_id=person.id,
        org_id=person.org_id,
        detail={"client_id": client.client_id, "scopes": scopes, "granted_by": granted_by},
    )
    return fresh


def withdraw(session: Session, *, person: Person, client_id: str, withdrawn_by: str, origin: Origin) -> int:
    """Withdraw consent and revoke the client's tokens for the person; returns tokens revoked."""
    consent = active_consent(session, person.id, client_id)
    if consent is not None:
        consent.withdrawn_at = datetime.now(UTC)
        consent.withdrawn_by = withdrawn_by
        session.add(consent)
    revoked = tokens.revoke_client_tokens(session, client_id, reason="consent_withdrawn", person_id=person.id)
    audit.record(
        session,
        action="consent.withdrawn",
        actor=origin,
        target_type="person",
        target_id=person.id,
        org_id=person.org_id,
        detail={"client_id": client_id, "tokens_revoked": revoked, "withdrawn_by": withdrawn_by},
    )
    return revoked


def guardian_asked(session: Session, student_id: str, client_id: str) -> set[str]:
    """Scopes of this client already put to the child's guardians (pending or decided)."""
    rows = session.exec(
        select(GuardianConsentRequest.scope).where(
            GuardianConsentRequest.student_id == student_id, GuardianConsentRequest.client_id == client_id
        )
    ).all()
    return {scope_id for scope in rows for scope_id in scope.split()}


def request_guardian_consent(session: Session, *, student: Person, client: OAuthClient, scopes: list[str]) -> None:
    scope = " ".join(sorted(scopes))
    existing = session.exec(
        select(GuardianConsentRequest).where(
            GuardianConsentRequest.student_id == student.id,
            GuardianConsentRequest.client_id == client.client_id,
            GuardianConsentRequest.scope == scope,
        )
    ).first()
    if existing is None:
        session.add(GuardianConsentRequest(student_id=student.id, client_id=client.client_id, scope=scope))
        session.flush()


def children_of(session: Session, guardian_id: str) -> list[Person]:
    return list(
        session.exec(
            select(Person)
            .join(GuardianLink, col(GuardianLink.student_id) == col(Person.id))
            .where(GuardianLink.guardian_id == guardian_id, col(GuardianLink.active).is_(True))
            .order_by(col(Person.name))
        ).all()
    )


def is_guardian_of(session: Session, guardian_id: str, student_id: str) -> bool:
    return any(child.id == student_id for child in children_of(session, guardian_id))


def pending_requests(session: Session, student_ids: list[str]) -> list[GuardianConsentRequest]:
    if not student_ids:
        return []
    return list(
        session.exec(
            select(GuardianConsentRequest)
            .where(
                col(GuardianConsentRequest.student_id).in_(student_ids),
                col(GuardianConsentRequest.decided_at).is_(None),
            )
            .order_by(col(GuardianConsentRequest.requested_at))
        ).all()
    )


def decide_request(
    session: Session, request_row: GuardianConsentRequest, *, guardian: Person, approve: bool, origin: Origin
) -> None:
    request_row.decided_at = datetime.now(UTC)
    request_row.decided_by = guardian.id
    request_row.decision = "approved" if approve else "declined"
    session.add(request_row)
    student = session.get(Person, request_row.student_id)
    client = session.get(OAuthClient, request_row.client_id)
    assert student is not None and client is not None
    if approve:
        record(
            session,
            person=student,
            client=client,
            scopes=request_row.scope.split(),
            granted_by=guardian.id,
            origin=origin,
        )
    else:
        audit.record(
            session,
            action="consent.declined",
            actor=origin,
            target_type="person",
            target_id=student.id,
            org_id=student.org_id,
            detail={"client_id": client.client_id, "scopes": request_row.scope.split()},
        )


def consents_of(session: Session, person_id: str) -> list[Consent]:
    return list(
        session.exec(
            select(Consent)
            .where(Consent.person_id == person_id, col(Consent.withdrawn_at).is_(None))
            .order_by(col(Consent.granted_at))
        ).all()
    )


# ---------------------------------------------------------------------------------------- subjects


def subject_for(session: Session, client: OAuthClient, person_id: str, *, salt: str) -> str:
    """The ``sub`` this client knows the person by: pairwise for third parties (OIDC Core 8.1)."""
    if client.subject_type == "public":
        return person_id
    subject = pairwise_subject(salt, client.sector_identifier, person_id)
    if session.get(PairwiseSubject, subject) is None:
        try:
            with session.begin_nested():  # two first sign-ins at once: the second finds the row there
                session.add(
                    PairwiseSubject(subject=subject, sector_identifier=client.sector_identifier, person_id=person_id)
                )
        except IntegrityError:
            pass
    return subject
