"""LTI Advantage Names and Role Provisioning Services 2.0: a class's roster for a tool installed at its school.

Members are named by their pairwise pseudonym at the app; names appear only when the school granted the app
``roster.read`` (teachers) or ``roster.students.read`` (pupils). Every read that lists pupils is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from appstore.apps.models import App
from appstore.config import AppStoreSettings
from appstore.installations.models import Installation
from appstore.launch.errors import ContextNotFound, InstallationNotFound
from appstore.launch.schemas import NrpsContext, NrpsMember, NrpsMembershipContainer
from appstore.launch.service import (
    INSTRUCTOR,
    LEARNER,
    class_teachers,
    open_to_class,
    platform_url,
    with_query,
)
from appstore.launch.tokens import ServiceCaller
from appstore.roster.models import RosterClass, RosterMembership, RosterOrganisation, RosterPerson
from appstore.subjects import user_pseudonym
from kit import audit

MAX_LIMIT = 500


@dataclass(frozen=True)
class MembershipPage:
    container: NrpsMembershipContainer
    next_url: str | None
    learners: int


def _role_filter(role: str | None) -> str | None:
    """The LIS context role a ``role`` parameter asks for: a full URI or its short name, in any case (tool
    libraries may lower-case the next-page link they follow)."""
    if not role:
        return None
    wanted = role.strip().lower()
    for uri in (INSTRUCTOR, LEARNER):
        if wanted in (uri.lower(), uri.rsplit("#", 1)[1].lower()):
            return uri
    return "unknown"


def memberships(
    session: Session,
    settings: AppStoreSettings,
    caller: ServiceCaller,
    deployment_id: str,
    context_id: str,
    *,
    role: str | None,
    limit: int | None,
    offset: int,
) -> MembershipPage:
    """One page of the class's members, teachers first, for a tool whose deployment is at the class's school."""
    installation = session.get(Installation, deployment_id)
    if installation is None or installation.app_id != caller.app_id or installation.status != "active":
        raise InstallationNotFound(deployment_id, field="deployment_id")
    app = session.get(App, caller.app_id)
    if app is None or app.status != "listed":
        raise InstallationNotFound(deployment_id, field="deployment_id")
    klass = session.get(RosterClass, context_id)
    if klass is None or not klass.active or klass.school_id != installation.school_id:
        raise ContextNotFound(context_id)
    if not open_to_class(installation, klass):
        raise ContextNotFound(context_id)
    granted = set(installation.scopes.split())
    salt = settings.pairwise_salt.get_secret_value()
    wanted = _role_filter(role)

    teacher_ids = class_teachers(klass)
    pupil_ids = list(
        session.exec(select(RosterMembership.student_id).where(RosterMembership.class_id == klass.id)).all()
    )
    people = {
        person.id: person
        for person in session.exec(
            select(RosterPerson).where(col(RosterPerson.id).in_(teacher_ids + pupil_ids), col(RosterPerson.active))
        ).all()
    }
    members: list[NrpsMember] = []
    if wanted in (None, INSTRUCTOR):
        members += _members(teacher_ids, people, INSTRUCTOR, salt, app.id, named="roster.read" in granted)
    if wanted in (None, LEARNER):
        pupils = _members(pupil_ids, people, LEARNER, salt, app.id, named="roster.students.read" in granted)
        members += sorted(pupils, key=lambda member: member.user_id)

    size = min(limit or MAX_LIMIT, MAX_LIMIT)
    page = members[offset : offset + size]
    school = session.get(RosterOrganisation, klass.school_id)
    base = platform_url(settings, f"/lti/nrps/{installation.id}/contexts/{klass.id}/memberships")
    query: dict[str, str] = {"role": role} if role else {}
    this_url = with_query(base, {**query, "limit": str(size), "offset": str(offset)}) if limit or offset else base
    next_url = None
    if offset + size < len(members):
        next_url = with_query(base, {**query, "limit": str(size), "offset": str(offset + size)})
    container = NrpsMembershipContainer(
        id=this_url,
        context=NrpsContext(id=klass.id, label=klass.name, title=f"{school.name if school else ''}{klass.name}"),
        members=page,
    )
    learners = sum(1 for member in page if LEARNER in member.roles)
    return MembershipPage(container=container, next_url=next_url, learners=learners)


def _members(
    ids: list[str], people: dict[str, RosterPerson], role: str, salt: str, app_id: str, *, named: bool
) -> list[NrpsMember]:
    found = []
    for person_id in dict.fromkeys(ids):
        person = people.get(person_id)
        if person is None:
            continue
        found.append(
            NrpsMember(
                user_id=user_pseudonym(salt, app_id, person.id), roles=[role], name=person.name if named else None
            )
        )
    return found


def audit_pupils_read(
    session: Session, caller: ServiceCaller, installation_id: str, context_id: str, page: MembershipPage
) -> None:
    """Record that a tool read pupils of a class (how many, and whether with names)."""
    installation = session.get(Installation, installation_id)
    audit.append(
        session,
        action="lti.nrps.pupils_read",
        actor_id=None,
        actor_client=caller.client_id,
        target_type="class",
        target_id=context_id,
        org_id=installation.school_id if installation else None,
        detail={
            "app_id": caller.app_id,
            "deployment_id": installation_id,
            "pupils": page.learners,
            "names": any(member.name for member in page.container.members if LEARNER in member.roles),
        },
    )
