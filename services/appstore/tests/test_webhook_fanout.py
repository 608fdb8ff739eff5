"""Roster events published on NATS reach exactly the apps that subscribed, are installed at the school and were
granted the scopes; people appear only as each app's pseudonym; a duplicated event gives one delivery."""

from __future__ import annotations

import uuid
from datetime import date

from fastapi import FastAPI
from prometheus_client import REGISTRY

from appstore.config import AppStoreSettings
from appstore.subjects import user_pseudonym
from appstore.webhooks.fanout import fan_out
from contracts.events import enrollment as roster_events
from kit.testing import TestCity

from .webhook_factories import (
    Receiver,
    database_of,
    deliveries,
    eventually,
    fast_retries,
    installation,
    publish_enrollment,
    published_app,
    serving,
    vendor,
)

ROSTER_EVENTS = ["roster.class.changed", "roster.class.deleted", "roster.membership.changed"]


def _duplicates_seen() -> float:
    value = REGISTRY.get_sample_value(
        "edu_inbox_handled_total", {"consumer": "appstore-webhooks-rosters", "outcome": "duplicate"}
    )
    return value or 0.0


async def test_roster_events_fan_out_by_subscription_school_and_grant(
    app: FastAPI, city: TestCity, settings: AppStoreSettings
) -> None:
    fast_retries(app)
    database = database_of(app)
    salt = settings.pairwise_salt.get_secret_value()
    vendor_id = vendor(database, city, "developer")
    class_id, other_class = str(uuid.uuid4()), str(uuid.uuid4())
    teacher, pupil = city.people["a1_teacher"].id, str(uuid.uuid4())

    with serving(Receiver()) as full, serving(Receiver()) as classes_only:
        everything = published_app(database, vendor_id, webhook_url=full.url)
        installation(database, city, everything, city.school_a1)
        # Granted roster.read but not roster.students.read: classes, never pupils.
        no_pupils = published_app(database, vendor_id, webhook_url=classes_only.url, events=ROSTER_EVENTS)
        installation(database, city, no_pupils, city.school_a1, scopes=["openid", "roster.read"])
        elsewhere = published_app(database, vendor_id, webhook_url=full.url)
        installation(database, city, elsewhere, city.school_b1)
        not_subscribed = published_app(database, vendor_id, webhook_url=full.url, events=["installation.removed"])
        installation(database, city, not_subscribed, city.school_a1)
        other_class_only = published_app(database, vendor_id, webhook_url=full.url)
        installation(database, city, other_class_only, city.school_a1, class_ids=[other_class])
        duplicates_before = _duplicates_seen()

        changed = roster_events.ClassChangedV1(
            class_id=class_id, school_id=city.school_a1, school_year_id="sy-2026", grade="05", name="五年级（2）班",
            head_teacher_id=teacher, teacher_ids=[teacher],
        )  # fmt: skip
        joined = roster_events.ClassMembershipChangedV1(
            student_id=pupil, school_id=city.school_a1, to_class_id=class_id, effective_on=date(2026, 9, 1),
            reason="assigned",
        )  # fmt: skip
        await publish_enrollment(settings.nats_url, changed, joined, repeat=2)

        await eventually(lambda: len(full.received) == 2 and len(classes_only.received) == 1)
        await eventually(lambda: _duplicates_seen() - duplicates_before >= 2)

    by_type = {received.json()["type"]: received for received in full.received}
    class_body = by_type["roster.class.changed"].json()
    assert class_body["subject"] == class_id and class_body["school_id"] == city.school_a1
    assert class_body["data"]["head_teacher"] == user_pseudonym(salt, everything, teacher)
    assert class_body["data"]["teachers"] == [user_pseudonym(salt, everything, teacher)]
    membership_body = by_type["roster.membership.changed"].json()
    assert membership_body["data"]["student"] == user_pseudonym(salt, everything, pupil)
    assert membership_body["data"]["to_class_id"] == class_id and membership_body["data"]["from_class_id"] is None
    for received in full.received + classes_only.received:
        assert teacher.encode() not in received.body and pupil.encode() not in received.body

    # Another app knows the same teacher by another pseudonym, and gets no pupils without roster.students.read.
    (only_class,) = classes_only.received
    assert only_class.json()["type"] == "roster.class.changed"
    assert only_class.json()["data"]["teachers"] == [user_pseudonym(salt, no_pupils, teacher)]
    assert user_pseudonym(salt, no_pupils, teacher) != user_pseudonym(salt, everything, teacher)

    # Each event was handed over twice, and gave one delivery per app.
    assert len(deliveries(database, everything)) == 2
    for app_id in (elsewhere, not_subscribed, other_class_only):
        assert deliveries(database, app_id) == []


async def test_the_fan_out_applied_twice_to_one_event_queues_nothing_more(
    app: FastAPI, city: TestCity, settings: AppStoreSettings
) -> None:
    database = database_of(app)
    app_id = published_app(database, vendor(database, city, "developer"), webhook_url="http://127.0.0.1:9/hooks")
    installation(database, city, app_id, city.school_a1)
    (envelope,) = await publish_enrollment(
        settings.nats_url,
        roster_events.ClassDeletedV1(class_id=str(uuid.uuid4()), school_id=city.school_a1),
    )
    await eventually(lambda: len(deliveries(database, app_id)) == 1)
    with database.session() as session:
        assert fan_out(session, envelope, salt=settings.pairwise_salt.get_secret_value()) == 0
    assert len(deliveries(database, app_id)) == 1


async def test_a_class_the_school_did_not_open_to_the_app_is_not_named(
    app: FastAPI, city: TestCity, settings: AppStoreSettings
) -> None:
    fast_retries(app)
    database = database_of(app)
    opened, closed = str(uuid.uuid4()), str(uuid.uuid4())
    with serving(Receiver()) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        installation(database, city, app_id, city.school_a1, class_ids=[opened])
        moved = roster_events.ClassMembershipChangedV1(
            student_id=str(uuid.uuid4()), school_id=city.school_a1, from_class_id=closed, to_class_id=opened,
            effective_on=date(2026, 10, 8), reason="transfer",
        )  # fmt: skip
        await publish_enrollment(settings.nats_url, moved)
        await eventually(lambda: len(receiver.received) == 1)
    data = receiver.received[0].json()["data"]
    assert data["to_class_id"] == opened and data["from_class_id"] is None and data["reason"] == "transfer"
