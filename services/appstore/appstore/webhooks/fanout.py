"""Turns platform events into webhook deliveries for the apps that subscribed.

An app gets an event when its published manifest lists the type, it has an active installation at the event's
school, and that installation granted the scopes the type needs (``WEBHOOK_EVENT_SCOPES``). The deliveries are
written in the consumer's transaction, which the kit inbox commits with the event's dedup record: an event is
turned into deliveries exactly once, however often NATS hands it over. Payloads are minimal; a person appears
only as the app's pairwise pseudonym, never by platform id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from appstore.apps.models import App
from appstore.config import AppStoreSettings
from appstore.installations.models import Installation
from appstore.roster.models import RosterClass
from appstore.subjects import user_pseudonym
from appstore.webhooks import service
from appstore.webhooks.models import WebhookInstallationSeen
from appstore.webhooks.subscriptions import granted, published_webhook, reaches_class
from contracts.envelope import EventEnvelope
from contracts.events import appstore as appstore_events
from contracts.events import enrollment as roster_events
from kit.inbox import Handler

APPSTORE_SUBJECTS: list[str] = ["edu.appstore.installation.>", "edu.appstore.app.status_changed"]
ENROLLMENT_SUBJECTS: list[str] = ["edu.enrollment.class.>", "edu.enrollment.membership.>"]

# An app's installations removed by its suspension or retirement still hear why, if removed this close to the event.
_REMOVED_WITH_STATUS_CHANGE = timedelta(minutes=5)


class _Fanout:
    def __init__(self, session: Session, envelope: EventEnvelope, salt: str) -> None:
        self.session = session
        self.envelope = envelope
        self.salt = salt
        self.queued = 0

    def subscribers(
        self, installations: list[Installation], event_type: str
    ) -> Iterator[tuple[App, Installation, str]]:
        """(app, installation, webhook url) for each installation whose app subscribed and was granted the type."""
        for installation in installations:
            app = self.session.get(App, installation.app_id)
            if app is None:
                continue
            webhook = published_webhook(self.session, app)
            if webhook is None or event_type not in webhook.events or not granted(installation, event_type):
                continue
            yield app, installation, webhook.url

    def queue(
        self, app: App, installation: Installation, url: str, event_type: str, subject: str | None, data: dict[str, Any]
    ) -> None:
        delivery = service.enqueue(
            self.session, app=app, installation=installation, url=url, source_event_id=self.envelope.id,
            event_type=event_type, time=self.envelope.time, subject=subject, data=data,
        )  # fmt: skip
        if delivery is not None:
            self.queued += 1

    def pseudonym(self, app: App, person_id: str) -> str:
        return user_pseudonym(self.salt, app.id, person_id)

    def roster_installations(self, school_id: str) -> list[Installation]:
        """Active installations at the school of apps that may receive school data (listed ones)."""
        rows = self.session.exec(
            select(Installation)
            .join(App, col(App.id) == col(Installation.app_id))
            .where(Installation.school_id == school_id, Installation.status == "active", App.status == "listed")
            .order_by(col(Installation.id))
        ).all()
        return list(rows)

    # -- app store events

    def installation_granted(self, data: dict[str, Any]) -> None:
        event = appstore_events.InstallationGrantedV1.model_validate(data)
        seen = self.session.get(WebhookInstallationSeen, event.installation_id)
        if seen is None:
            self.session.add(
                WebhookInstallationSeen(installation_id=event.installation_id, first_event_id=self.envelope.id)
            )
            event_type = "installation.created"
        else:
            event_type = "installation.created" if seen.first_event_id == self.envelope.id else "installation.updated"
        installation = self.session.get(Installation, event.installation_id)
        if installation is None or installation.status != "active":
            return  # removed since: its removal notice is what the app hears next
        for app, target, url in self.subscribers([installation], event_type):
            self.queue(app, target, url, event_type, event.installation_id, {
                "installation_id": event.installation_id, "school_id": event.school_id, "scopes": sorted(event.scopes),
                "grades": event.grades, "class_ids": event.class_ids,
                "granted_at": event.granted_at.isoformat().replace("+00:00", "Z"),
            })  # fmt: skip

    def installation_removed(self, data: dict[str, Any]) -> None:
        event = appstore_events.InstallationRemovedV1.model_validate(data)
        service.cancel_for_removed_installation(
            self.session, event.installation_id, reason=f"installation removed ({event.reason})"
        )
        installation = self.session.get(Installation, event.installation_id)
        if installation is None:
            return
        for app, target, url in self.subscribers([installation], "installation.removed"):
            self.queue(app, target, url, "installation.removed", event.installation_id, {
                "installation_id": event.installation_id, "school_id": event.school_id, "reason": event.reason,
                "removed_at": event.removed_at.isoformat().replace("+00:00", "Z"),
                "delete_data_by": event.delete_data_by.isoformat(),
            })  # fmt: skip

    def app_status_changed(self, data: dict[str, Any]) -> None:
        event = appstore_events.AppStatusChangedV1.model_validate(data)
        since = self.envelope.time - _REMOVED_WITH_STATUS_CHANGE
        installations = [
            installation
            for installation in self.session.exec(
                select(Installation).where(Installation.app_id == event.app_id).order_by(col(Installation.id))
            ).all()
            if installation.status == "active"
            or (
                installation.removal_reason in ("app_suspended", "app_retired")
                and installation.removed_at is not None
                and service.aware(installation.removed_at) >= since
            )
        ]
        for app, target, url in self.subscribers(installations, "app.status_changed"):
            self.queue(app, target, url, "app.status_changed", event.app_id, {
                "app_id": event.app_id, "status": event.status, "reason": event.reason,
                "effective_at": event.effective_at.isoformat().replace("+00:00", "Z"),
            })  # fmt: skip

    # -- enrollment events

    def class_changed(self, data: dict[str, Any]) -> None:
        event = roster_events.ClassChangedV1.model_validate(data)
        installations = [
            installation
            for installation in self.roster_installations(event.school_id)
            if reaches_class(installation, event.class_id, event.grade)
        ]
        for app, installation, url in self.subscribers(installations, "roster.class.changed"):
            head = self.pseudonym(app, event.head_teacher_id) if event.head_teacher_id else None
            teachers = sorted(self.pseudonym(app, teacher) for teacher in event.teacher_ids)
            self.queue(app, installation, url, "roster.class.changed", event.class_id, {
                "class_id": event.class_id, "school_id": event.school_id, "school_year_id": event.school_year_id,
                "grade": event.grade, "name": event.name, "head_teacher": head, "teachers": teachers,
            })  # fmt: skip

    def class_deleted(self, data: dict[str, Any]) -> None:
        event = roster_events.ClassDeletedV1.model_validate(data)
        known = self.session.get(RosterClass, event.class_id)
        grade = known.grade if known is not None else None
        installations = [
            installation
            for installation in self.roster_installations(event.school_id)
            if reaches_class(installation, event.class_id, grade)
        ]
        for app, installation, url in self.subscribers(installations, "roster.class.deleted"):
            self.queue(app, installation, url, "roster.class.deleted", event.class_id,
                       {"class_id": event.class_id, "school_id": event.school_id})  # fmt: skip

    def membership_changed(self, data: dict[str, Any]) -> None:
        event = roster_events.ClassMembershipChangedV1.model_validate(data)
        grades: dict[str, str | None] = {}
        for class_id in (event.from_class_id, event.to_class_id):
            if class_id is not None:
                known = self.session.get(RosterClass, class_id)
                grades[class_id] = known.grade if known is not None else None
        for installation in self.roster_installations(event.school_id):
            # A class outside what the school opened the app to is not named to the app.
            visible = {class_id for class_id, grade in grades.items() if reaches_class(installation, class_id, grade)}
            if not visible:
                continue
            for app, target, url in self.subscribers([installation], "roster.membership.changed"):
                student = self.pseudonym(app, event.student_id)
                self.queue(app, target, url, "roster.membership.changed", student, {
                    "student": student, "school_id": event.school_id,
                    "from_class_id": event.from_class_id if event.from_class_id in visible else None,
                    "to_class_id": event.to_class_id if event.to_class_id in visible else None,
                    "effective_on": event.effective_on.isoformat(), "reason": event.reason,
                })  # fmt: skip


_BY_TYPE: dict[str, Callable[[_Fanout, dict[str, Any]], None]] = {
    appstore_events.InstallationGrantedV1.event_type(): _Fanout.installation_granted,
    appstore_events.InstallationRemovedV1.event_type(): _Fanout.installation_removed,
    appstore_events.AppStatusChangedV1.event_type(): _Fanout.app_status_changed,
    roster_events.ClassChangedV1.event_type(): _Fanout.class_changed,
    roster_events.ClassDeletedV1.event_type(): _Fanout.class_deleted,
    roster_events.ClassMembershipChangedV1.event_type(): _Fanout.membership_changed,
}


def fan_out(session: Session, envelope: EventEnvelope, *, salt: str) -> int:
    """Write the deliveries one event causes; the number queued (0 for an event applied before)."""
    step = _BY_TYPE.get(envelope.type)
    if step is None:
        return 0
    fanout = _Fanout(session, envelope, salt)
    step(fanout, envelope.data or {})
    if fanout.queued:
        session.flush()
        service.wake_after_commit(session)
    return fanout.queued


def build_handler(settings: AppStoreSettings) -> Handler:
    """The consumers' handler: deliveries for one event, in the consumer's transaction."""
    salt = settings.pairwise_salt.get_secret_value()

    def handle_event(session: Session, envelope: EventEnvelope) -> None:
        fan_out(session, envelope, salt=salt)

    return handle_event
