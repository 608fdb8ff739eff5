"""Apply the app store's and identity's events to metering's projections.

Facts that arrive after the usage they cover (an installation or a price plan consumed later than the launches it
admits) release that usage: see :func:`metering.usage.service.reconsider_app`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlmodel import Session, select

from contracts.envelope import EventEnvelope
from contracts.events import appstore as appstore_events
from contracts.events import identity as identity_events
from metering.config import MeteringSettings
from metering.projections.models import (
    InstallationSpan,
    MeteredApp,
    MeteredOrganisation,
    MeteredVendor,
    PopulationMember,
    PricePlan,
    VendorDeveloper,
)
from metering.usage.service import REASON_NO_PLAN, REASON_NOT_INSTALLED, REASON_UNKNOWN_APP, reconsider_app

IDENTITY_SUBJECTS = [
    identity_events.OrganisationCreatedV1.subject(),
    identity_events.OrganisationUpdatedV1.subject(),
    identity_events.PersonCreatedV1.subject(),
    identity_events.PersonUpdatedV1.subject(),
    identity_events.PersonDeactivatedV1.subject(),
    identity_events.RoleGrantedV1.subject(),
    identity_events.RoleRevokedV1.subject(),
]

Apply = Callable[[Session, dict[str, object], MeteringSettings], None]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ----------------------------------------------------------------------------------------------- the app store


def _vendor_registered(session: Session, data: dict[str, object], settings: MeteringSettings) -> None:
    event = appstore_events.VendorRegisteredV1.model_validate(data)
    session.merge(MeteredVendor(vendor_id=event.vendor_id, name=event.name))


def _member_added(session: Session, data: dict[str, object], settings: MeteringSettings) -> None:
    event = appstore_events.VendorMemberAddedV1.model_validate(data)
    session.merge(VendorDeveloper(vendor_id=event.vendor_id, person_id=event.person_id))


def _member_removed(session: Session, data: dict[str, object], settings: MeteringSettings) -> None:
    event = appstore_events.VendorMemberRemovedV1.model_validate(data)
    member = session.get(VendorDeveloper, (event.vendor_id, event.person_id))
    if member is not None:
        session.delete(member)


def _app_published(session: Session, data: dict[str, object], settings: MeteringSettings) -> None:
    event = appstore_events.AppPublishedV1.model_validate(data)
    app = session.get(MeteredApp, event.app_id) or MeteredApp(app_id=event.app_id, vendor_id=event.vendor_id)
    app.vendor_id = event.vendor_id
    app.client_id = event.client_id
    if event.app_name:
        app.name = event.app_name
    session.add(app)
    existing = session.exec(
        select(PricePlan).where(PricePlan.app_id == event.app_id, PricePlan.version_id == event.version_id)
    ).first()
    if existing is None:
        session.add(
            PricePlan(
                app_id=event.app_id, version_id=event.version_id, app_version=event.app_version,
                unit=event.pricing_unit, unit_price_fen=event.unit_price_fen,
                monthly_cap_fen_per_school=event.monthly_cap_fen_per_school,
                reported_unit_name=event.reported_unit_name, effective_at=event.effective_at,
            )
        )  # fmt: skip
    session.flush()
    reconsider_app(
        session, event.app_id, max_reported_units_per_launch=settings.max_reported_units_per_launch,
        reasons=(REASON_UNKNOWN_APP, REASON_NO_PLAN),
    )  # fmt: skip


def _app_status_changed(session: Session, data: dict[str, object], settings: MeteringSettings) -> None:
    event = appstore_events.AppStatusChangedV1.model_validate(data)
    app = session.get(MeteredApp, event.app_id)
    if app is not None:
        app.status = event.status
        session.add(app)


def _installation_granted(session: Session, data: dict[str, object], settings: MeteringSettings) -> None:
    event = appstore_events.InstallationGrantedV1.model_validate(data)
    span = session.get(InstallationSpan, event.installation_id)
    if span is None:
        span = InstallationSpan(
            installation_id=event.installation_id, app_id=event.app_id, school_id=event.school_id,
            granted_at=event.granted_at,
        )  # fmt: skip
    elif _aware(event.granted_at) < _aware(span.granted_at):
        span.granted_at = event.granted_at  # a re-grant keeps the installation's first moment
    session.add(span)
    session.flush()
    reconsider_app(
        session, event.app_id, max_reported_units_per_launch=settings.max_reported_units_per_launch,
        school_id=event.school_id, reasons=(REASON_NOT_INSTALLED,),
    )  # fmt: skip


def _installation_removed(session: Session, data: dict[str, object], settings: MeteringSettings) -> None:
    event = appstore_events.InstallationRemovedV1.model_validate(data)
    span = session.get(InstallationSpan, event.installation_id)
    if span is None:
        # The removal overtook the grant (or the grant predates metering): the span still ends here.
        span = InstallationSpan(
            installation_id=event.installation_id, app_id=event.app_id, school_id=event.school_id,
            granted_at=event.removed_at,
        )  # fmt: skip
    span.removed_at = event.removed_at
    session.add(span)


APPSTORE_HANDLERS: dict[str, Apply] = {
    appstore_events.VendorRegisteredV1.event_type(): _vendor_registered,
    appstore_events.VendorMemberAddedV1.event_type(): _member_added,
    appstore_events.VendorMemberRemovedV1.event_type(): _member_removed,
    appstore_events.AppPublishedV1.event_type(): _app_published,
    appstore_events.AppStatusChangedV1.event_type(): _app_status_changed,
    appstore_events.InstallationGrantedV1.event_type(): _installation_granted,
    appstore_events.InstallationRemovedV1.event_type(): _installation_removed,
}

# ------------------------------------------------------------------------------------------------- identity


def _organisation_created(session: Session, data: dict[str, object]) -> None:
    event = identity_events.OrganisationCreatedV1.model_validate(data)
    district_id = None
    if event.kind == "district":
        district_id = event.org_id
    elif event.parent_id is not None:
        parent = session.get(MeteredOrganisation, event.parent_id)
        if parent is not None:
            district_id = parent.district_id
    session.merge(
        MeteredOrganisation(
            org_id=event.org_id, parent_id=event.parent_id, kind=event.kind, name=event.name, path=event.path,
            district_id=district_id,
        )
    )  # fmt: skip


def _organisation_updated(session: Session, data: dict[str, object]) -> None:
    event = identity_events.OrganisationUpdatedV1.model_validate(data)
    organisation = session.get(MeteredOrganisation, event.org_id)
    if organisation is not None:
        organisation.name = event.name
        session.add(organisation)


def _person_created(session: Session, data: dict[str, object]) -> None:
    event = identity_events.PersonCreatedV1.model_validate(data)
    if event.kind == "student" and event.org_id:
        session.merge(
            PopulationMember(member_key=f"person:{event.person_id}", person_id=event.person_id,
                             school_id=event.org_id, kind="student")
        )  # fmt: skip


def _person_updated(session: Session, data: dict[str, object]) -> None:
    event = identity_events.PersonUpdatedV1.model_validate(data)
    member = session.get(PopulationMember, f"person:{event.person_id}")
    if member is not None and event.org_id and member.school_id != event.org_id:
        member.school_id = event.org_id  # a pupil who changed school counts at the new one
        session.add(member)


def _person_deactivated(session: Session, data: dict[str, object]) -> None:
    event = identity_events.PersonDeactivatedV1.model_validate(data)
    for member in session.exec(select(PopulationMember).where(PopulationMember.person_id == event.person_id)):
        member.active = False
        session.add(member)


def _role_granted(session: Session, data: dict[str, object]) -> None:
    event = identity_events.RoleGrantedV1.model_validate(data)
    if event.role == "teacher":
        session.merge(
            PopulationMember(member_key=f"grant:{event.grant_id}", person_id=event.person_id,
                             school_id=event.org_id, kind="teacher")
        )  # fmt: skip


def _role_revoked(session: Session, data: dict[str, object]) -> None:
    event = identity_events.RoleRevokedV1.model_validate(data)
    member = session.get(PopulationMember, f"grant:{event.grant_id}")
    if member is not None:
        member.active = False
        session.add(member)


_IDENTITY_HANDLERS: dict[str, Callable[[Session, dict[str, object]], None]] = {
    identity_events.OrganisationCreatedV1.event_type(): _organisation_created,
    identity_events.OrganisationUpdatedV1.event_type(): _organisation_updated,
    identity_events.PersonCreatedV1.event_type(): _person_created,
    identity_events.PersonUpdatedV1.event_type(): _person_updated,
    identity_events.PersonDeactivatedV1.event_type(): _person_deactivated,
    identity_events.RoleGrantedV1.event_type(): _role_granted,
    identity_events.RoleRevokedV1.event_type(): _role_revoked,
}


def apply_identity_event(session: Session, envelope: EventEnvelope) -> None:
    handler = _IDENTITY_HANDLERS.get(envelope.type)
    if handler is not None:
        handler(session, envelope.data)
