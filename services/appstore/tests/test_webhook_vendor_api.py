"""Only developers of the app's vendor read its deliveries, replay them and rotate its secret; bad input is refused
with the field to fix; reading a delivery's body and every change is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from appstore.webhooks.models import WebhookSecret
from kit.audit import AuditEntry
from kit.testing import TestCity

from .webhook_factories import (
    database_of,
    deliveries,
    eventually,
    granted_event,
    installation,
    publish,
    published_app,
    vendor,
)

ENDPOINTS = [
    ("POST", "/apps/{app}/webhook-secret", None),
    ("GET", "/apps/{app}/webhook-deliveries", None),
    ("GET", "/apps/{app}/webhook-deliveries/{delivery}", None),
    ("POST", "/apps/{app}/webhook-deliveries/replay", {"from_cursor": 0}),
    ("POST", "/apps/{app}/webhook-deliveries/{delivery}/redeliver", None),
    ("GET", "/apps/{app}/webhook-dead-letters", None),
]


async def _app_with_a_delivery(app: FastAPI, city: TestCity) -> tuple[str, str]:
    database = database_of(app)
    app_id = published_app(database, vendor(database, city, "developer"), webhook_url="http://127.0.0.1:9/hooks")
    publish(app, granted_event(installation(database, city, app_id, city.school_a1)))
    (delivery,) = await eventually(lambda: deliveries(database, app_id))
    return app_id, delivery.id


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_who_may_call(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, method: str, path: str, body: dict[str, int] | None
) -> None:
    app_id, delivery_id = await _app_with_a_delivery(app, city)
    vendor(database_of(app), city, "other_developer")
    url = path.format(app=app_id, delivery=delivery_id)

    anonymous = await client.request(method, url, json=body)
    assert anonymous.status_code == 401
    other_vendor = await client.request(method, url, json=body, headers=city.token("other_developer"))
    assert other_vendor.status_code == 403, other_vendor.text
    assert other_vendor.headers["content-type"] == "application/problem+json"
    school_admin = await client.request(method, url, json=body, headers=city.token("a1_admin"))
    assert school_admin.status_code == 403
    no_scope = await client.request(method, url, json=body, headers=city.token("developer", scopes="apps.read"))
    assert no_scope.status_code == 403 and no_scope.json()["required_scope"] == "apps.develop"
    unknown_app = await client.request(
        method, path.format(app="no-such-app", delivery=delivery_id), json=body, headers=city.token("developer")
    )
    assert unknown_app.status_code == 404
    own = await client.request(method, url, json=body, headers=city.token("developer"))
    # The one delivery is still queued (its endpoint refuses connections): redelivering it is a conflict.
    expected = 409 if path.endswith("/redeliver") else 201 if path.endswith("/webhook-secret") else 200
    assert own.status_code == expected, own.text


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/apps/{app}/webhook-deliveries/replay", {"from_cursor": 5, "to_cursor": 2}, "body"),
        ("POST", "/apps/{app}/webhook-deliveries/replay", {"from_cursor": -1}, "from_cursor"),
        ("POST", "/apps/{app}/webhook-deliveries/replay", {"from_cursor": 1, "status": ["pending"]}, "status.0"),
        ("POST", "/apps/{app}/webhook-deliveries/replay", {"to_cursor": 3}, "from_cursor"),
        ("GET", "/apps/{app}/webhook-deliveries?status=lost", None, "query.status"),
        ("GET", "/apps/{app}/webhook-deliveries?limit=0", None, "query.limit"),
        ("GET", "/apps/{app}/webhook-dead-letters?cursor=-3", None, "query.cursor"),
    ],
)
async def test_bad_input_names_the_field(
    app: FastAPI,
    client: httpx.AsyncClient,
    city: TestCity,
    method: str,
    path: str,
    body: dict[str, object] | None,
    field: str,
) -> None:
    app_id, _ = await _app_with_a_delivery(app, city)
    response = await client.request(method, path.format(app=app_id), json=body, headers=city.token("developer"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(error["field"].startswith(field) for error in response.json()["errors"]), response.json()


async def test_unknown_delivery_and_another_apps_delivery_are_not_found(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    app_id, delivery_id = await _app_with_a_delivery(app, city)
    database = database_of(app)
    sibling = published_app(database, vendor(database, city, "developer2"), webhook_url="http://127.0.0.1:9/hooks")
    headers = city.token("developer")
    missing = await client.get(f"/apps/{app_id}/webhook-deliveries/msg_nothing", headers=headers)
    assert missing.status_code == 404 and missing.json()["type"].endswith("webhook-delivery-not-found")
    # developer2's app: developer is no member of its vendor.
    assert (await client.get(f"/apps/{sibling}/webhook-deliveries/{delivery_id}", headers=headers)).status_code == 403
    theirs = await client.get(f"/apps/{sibling}/webhook-deliveries/{delivery_id}", headers=city.token("developer2"))
    assert theirs.status_code == 404


async def test_rotation_shows_the_new_secret_once_and_audits(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    app_id, delivery_id = await _app_with_a_delivery(app, city)
    headers = city.token("developer")
    first = (await client.post(f"/apps/{app_id}/webhook-secret", headers=headers)).json()
    second = (await client.post(f"/apps/{app_id}/webhook-secret", headers=headers)).json()
    assert first["secret"] != second["secret"]
    signs_until = datetime.fromisoformat(second["previous_secret_signs_until"])
    assert abs(signs_until - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)
    await client.get(f"/apps/{app_id}/webhook-deliveries/{delivery_id}", headers=headers)

    database = database_of(app)
    with database.read_session() as session:
        stored = session.exec(select(WebhookSecret).where(WebhookSecret.app_id == app_id)).all()
        assert all(second["secret"] not in row.secret_encrypted for row in stored)  # encrypted at rest
        actions = [entry.action for entry in session.exec(select(AuditEntry)).all()]
    assert actions.count("webhook.secret.rotated") == 2
    assert "webhook.delivery.read" in actions
