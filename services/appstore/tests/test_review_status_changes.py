"""The city suspends, reinstates or retires (淘汰) an app, now or later: schools are told, installations end, the
catalog drops it, and a retired app never comes back."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone

import httpx
from sqlmodel import select

from appstore.installations.models import Installation
from appstore.review.models import AppStatusChange
from appstore.review.service import apply_due_changes
from appstore.review.worker import StatusChangeWorker
from contracts.events.appstore import AppStatusChangedV1, InstallationRemovedV1
from kit.audit import AuditEntry
from kit.natsserver import NatsServer
from kit.outbox import utcnow
from kit.testing import TestCity

from .store_factories import StoreApp, install_at, nats_events, outbox_events, publish_app, submit_app


async def _order(client: httpx.AsyncClient, city: TestCity, app_id: str, status: str, *, who: str = "city_admin",
                 **body: object) -> httpx.Response:  # fmt: skip
    return await client.post(
        f"/apps/{app_id}/status-changes",
        json={"status": status, "reason": "用户投诉集中，需整改", **body},
        headers=city.token(who),
    )


async def _listed(client: httpx.AsyncClient, city: TestCity, app_id: str) -> bool:
    response = await client.get(f"/catalog/apps/{app_id}", headers=city.token("a1_admin"))
    return response.status_code == 200


def _installed(city: TestCity, app: StoreApp, school_key: str = "school_a1") -> str:
    school_id = getattr(city, school_key)
    return install_at(city.database, app=app, school_id=school_id, school_path=city.paths[school_id],
                      by=city.people["a1_admin"].id)  # fmt: skip


async def test_only_city_reviewers_order_status_changes(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    assert (await client.post(f"/apps/{app.app_id}/status-changes", json={})).status_code == 401
    for person in ("a1_admin", "district_a_admin", "developer"):
        assert (await _order(client, city, app.app_id, "suspended", who=person)).status_code == 403, person
    bad = await client.post(f"/apps/{app.app_id}/status-changes", json={"status": "paused", "reason": ""},
                            headers=city.token("city_admin"))  # fmt: skip
    assert bad.status_code == 422
    assert (await _order(client, city, "nope", "suspended")).status_code == 404


async def test_suspension_now_removes_installations_notifies_and_delists(
    client: httpx.AsyncClient, city: TestCity, nats_server: NatsServer
) -> None:
    app = await publish_app(client, city)
    installation_id = _installed(city, app)
    assert await _listed(client, city, app.app_id)

    response = await _order(client, city, app.app_id, "suspended")
    assert response.status_code == 201, response.text
    change = response.json()
    assert change["outcome"] == "applied" and change["installations_removed"] == 1 and change["schools_notified"] == 1
    assert not await _listed(client, city, app.app_id)
    with city.database.read_session() as session:
        installation = session.get(Installation, installation_id)
        assert installation is not None and installation.status == "removed"
        assert installation.removal_reason == "app_suspended"
        assert session.exec(select(AuditEntry).where(AuditEntry.action == "app.status_suspended")).first()
    events = outbox_events(city.database, AppStatusChangedV1.event_type())
    assert [(e["app_id"], e["status"], e["client_id"]) for e in events] == [(app.app_id, "suspended", app.client_id)]
    removed = outbox_events(city.database, InstallationRemovedV1.event_type())
    assert [(e["installation_id"], e["reason"]) for e in removed] == [(installation_id, "app_suspended")]
    on_nats = await nats_events(nats_server.url, AppStatusChangedV1.subject(), expected=1)
    assert [event["data"]["status"] for event in on_nats] == ["suspended"]

    notices = await client.get(f"/schools/{city.school_a1}/notices", headers=city.token("a1_admin"))
    assert notices.status_code == 200
    assert [(n["kind"], n["app_name"]) for n in notices.json()] == [("app_suspended", "口算小达人")]
    assert "用户投诉集中" in notices.json()[0]["message"]
    assert (await client.get(f"/schools/{city.school_b1}/notices", headers=city.token("b1_admin"))).json() == []

    reinstated = await _order(client, city, app.app_id, "listed", reason="整改完成，恢复上架")
    assert reinstated.status_code == 201 and reinstated.json()["outcome"] == "applied"
    assert await _listed(client, city, app.app_id)
    kinds = [n["kind"] for n in (await client.get(f"/schools/{city.school_a1}/notices",
                                                  headers=city.token("a1_admin"))).json()]  # fmt: skip
    assert sorted(kinds) == ["app_reinstated", "app_suspended"]


async def test_retirement_is_final(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    assert (await _order(client, city, app.app_id, "listed")).status_code == 409  # it is not suspended
    assert (await _order(client, city, app.app_id, "retired", reason="产品停止运营")).status_code == 201
    for status in ("listed", "suspended", "retired"):
        response = await _order(client, city, app.app_id, status)
        assert response.status_code == 409, status
        assert "淘汰" in response.json()["detail"]
    assert not await _listed(client, city, app.app_id)
    new_version = await client.post(f"/apps/{app.app_id}/versions", json={"version": "9.0.0"},
                                    headers=city.token("developer"))  # fmt: skip
    assert new_version.status_code == 409


async def test_a_future_change_waits_for_its_time_and_applies_once(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    _installed(city, app)
    later = utcnow() + timedelta(days=30)
    response = await _order(client, city, app.app_id, "retired", effective_at=later.isoformat())
    assert response.status_code == 201
    assert response.json()["applied_at"] is None and response.json()["schools_notified"] == 1
    assert await _listed(client, city, app.app_id)
    notice = (await client.get(f"/schools/{city.school_a1}/notices", headers=city.token("a1_admin"))).json()[0]
    beijing = later.astimezone(timezone(timedelta(hours=8)))
    assert notice["kind"] == "app_retired" and beijing.strftime("%Y-%m-%d %H:%M（北京时间）") in notice["message"]
    # A second order while one is pending is refused; it can be withdrawn.
    assert (await _order(client, city, app.app_id, "suspended")).status_code == 409

    with city.database.session() as session:
        assert apply_due_changes(session) == 0  # not yet
    with city.database.session() as session:
        assert apply_due_changes(session, now=later + timedelta(seconds=1)) == 1
    with city.database.session() as session:
        assert apply_due_changes(session, now=later + timedelta(seconds=2)) == 0  # applied once
    assert not await _listed(client, city, app.app_id)
    events = outbox_events(city.database, AppStatusChangedV1.event_type())
    assert [e["status"] for e in events] == ["retired"]
    assert len(outbox_events(city.database, InstallationRemovedV1.event_type())) == 1


async def test_the_worker_applies_due_changes(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    soon = utcnow() + timedelta(seconds=1)
    response = await _order(client, city, app.app_id, "suspended", effective_at=soon.isoformat())
    assert response.json()["applied_at"] is None
    outcome = None
    for _ in range(50):
        with city.database.read_session() as session:
            outcome = session.exec(select(AppStatusChange.outcome)).one()
        if outcome is not None:
            break
        await asyncio.sleep(0.2)
    assert outcome == "applied"
    assert not await _listed(client, city, app.app_id)
    # A restarted (or second) worker finds nothing left to do: the change was applied once.
    assert StatusChangeWorker(city.database).run_once() == 0
    assert [e["status"] for e in outbox_events(city.database, AppStatusChangedV1.event_type())] == ["suspended"]


async def test_a_pending_change_can_be_withdrawn(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    _installed(city, app)
    later = (utcnow() + timedelta(days=7)).isoformat()
    change_id = (await _order(client, city, app.app_id, "suspended", effective_at=later)).json()["id"]
    withdrawn = await client.delete(f"/apps/{app.app_id}/status-changes/{change_id}", headers=city.token("city_admin"))
    assert withdrawn.status_code == 200 and withdrawn.json()["outcome"] == "cancelled"
    notices = (await client.get(f"/schools/{city.school_a1}/notices", headers=city.token("a1_admin"))).json()
    assert sorted(n["kind"] for n in notices) == ["app_suspended", "change_withdrawn"]
    assert (await client.delete(f"/apps/{app.app_id}/status-changes/{change_id}",
                                headers=city.token("city_admin"))).status_code == 409  # fmt: skip
    history = await client.get(f"/apps/{app.app_id}/status-changes", headers=city.token("developer"))
    assert [c["outcome"] for c in history.json()] == ["cancelled"]
    by_reviewer = await client.get(f"/apps/{app.app_id}/status-changes", headers=city.token("city_admin"))
    assert by_reviewer.status_code == 200 and by_reviewer.json() == history.json()
    assert (await client.get(f"/apps/{app.app_id}/status-changes",
                             headers=city.token("other_developer"))).status_code == 403  # fmt: skip
    assert (await client.get(f"/apps/{app.app_id}/status-changes", headers=city.token("a1_admin"))).status_code == 403


async def test_a_draft_app_cannot_be_suspended(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await submit_app(client, city)
    assert (await _order(client, city, app.app_id, "suspended")).status_code == 409


async def test_notices_are_read_by_the_schools_own_administrators(client: httpx.AsyncClient, city: TestCity) -> None:
    path = f"/schools/{city.school_a1}/notices"
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=city.token("b1_admin"))).status_code == 403
    assert (await client.get(path, headers=city.token("a1_teacher"))).status_code == 403
    assert (await client.get(path, headers=city.token("district_a_admin"))).status_code == 200
    assert (await client.get(path, headers=city.token("city_admin"))).status_code == 200
    assert (await client.get(path, headers=city.token("a1_admin", "apps.install"))).status_code == 403
    assert (await client.get("/schools/nope/notices", headers=city.token("a1_admin"))).status_code == 404
    assert (await client.get(path, params={"limit": 0}, headers=city.token("a1_admin"))).status_code == 422
