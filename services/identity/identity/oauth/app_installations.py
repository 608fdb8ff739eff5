"""Follows the app store: an app's tokens end with its installation, its suspension or its retirement.

* ``InstallationRemovedV1``: the app's access and refresh tokens held by people of that school (its staff and
  pupils, anyone with a role there, and the guardians of its pupils) are revoked.
* ``AppStatusChangedV1`` to ``suspended`` or ``retired``: every token of the app's client is revoked; a retired
  app's client is disabled for good. The app store announces the change when it takes effect.

Revocations go through :mod:`identity.oauth.tokens`, which announces them to the gateway. Re-applying an event
finds nothing left to revoke, so the handler is idempotent beyond the inbox's own deduplication.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from contracts.envelope import EventEnvelope
from contracts.events.appstore import AppStatusChangedV1, InstallationRemovedV1
from identity.oauth import tokens
from identity.oauth.models import IssuedAccessToken, OAuthClient, RefreshToken
from identity.people.models import GuardianLink, Person, RoleGrant

logger = logging.getLogger("identity.app_installations")

APPSTORE_SUBJECTS = [InstallationRemovedV1.subject(), AppStatusChangedV1.subject()]


def people_of_school(session: Session, school_id: str) -> set[str]:
    """Everyone whose tokens act at the school: its members, its role holders and its pupils' guardians."""
    members = set(session.exec(select(Person.id).where(Person.org_id == school_id)).all())
    members |= set(session.exec(select(RoleGrant.person_id).where(RoleGrant.org_id == school_id)).all())
    pupils = select(Person.id).where(Person.org_id == school_id, Person.kind == "student")
    members |= set(session.exec(select(GuardianLink.guardian_id).where(col(GuardianLink.student_id).in_(pupils))).all())
    return members


def holders_of(session: Session, client_id: str) -> set[str]:
    """People holding a live access or refresh token of the client."""
    now = datetime.now(UTC)
    access = session.exec(
        select(IssuedAccessToken.person_id)
        .where(
            IssuedAccessToken.client_id == client_id,
            col(IssuedAccessToken.revoked_at).is_(None),
            col(IssuedAccessToken.expires_at) > now,
            col(IssuedAccessToken.person_id).is_not(None),
        )
        .distinct()
    ).all()
    refresh = session.exec(
        select(RefreshToken.person_id)
        .where(RefreshToken.client_id == client_id, col(RefreshToken.revoked_at).is_(None))
        .distinct()
    ).all()
    return {person_id for person_id in (*access, *refresh) if person_id is not None}


def installation_removed(session: Session, event: InstallationRemovedV1) -> int:
    """Revoke the app's tokens held by the school's people; returns how many access tokens were revoked."""
    holders = holders_of(session, event.client_id)
    if not holders:
        return 0
    affected = holders & people_of_school(session, event.school_id)
    revoked = sum(
        # The school withdrew its grant: for its people this is consent withdrawn on their behalf.
        tokens.revoke_client_tokens(session, event.client_id, reason="app_uninstalled", person_id=person_id)
        for person_id in sorted(affected)
    )
    logger.info(
        "app %s removed from school %s: %d access tokens of %d people revoked",
        event.app_id, event.school_id, revoked, len(affected),
    )  # fmt: skip
    return revoked


def app_status_changed(session: Session, event: AppStatusChangedV1) -> int:
    """Suspended or retired: revoke every token of the app's client; retired: disable the client too."""
    if event.status not in ("suspended", "retired"):
        return 0
    client = session.get(OAuthClient, event.client_id) if event.client_id else None
    if client is None:
        client = session.exec(select(OAuthClient).where(OAuthClient.app_id == event.app_id)).first()
    if client is None:
        logger.info("app %s %s: it has no OAuth client here", event.app_id, event.status)
        return 0
    if event.status == "retired" and client.active:
        client.active = False
        client.updated_at = datetime.now(UTC)
        session.add(client)
    return tokens.revoke_client_tokens(session, client.client_id, reason="app_suspended")


def apply_appstore_event(session: Session, envelope: EventEnvelope) -> None:
    """The consumer's handler for the app store's installation and app-status events."""
    data = envelope.data or {}
    if envelope.type == InstallationRemovedV1.event_type():
        installation_removed(session, InstallationRemovedV1.model_validate(data))
    elif envelope.type == AppStatusChangedV1.event_type():
        app_status_changed(session, AppStatusChangedV1.model_validate(data))
