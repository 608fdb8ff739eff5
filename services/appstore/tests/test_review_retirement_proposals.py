"""Metering's benefit flags become retirement proposals (淘汰建议) that the city's reviewers retire or dismiss; retiring
schedules the app's retirement exactly as a status-change order does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import col, select

from appstore.review.models import RetirementProposal
from appstore.review.proposals import apply_benefit_event
from contracts.envelope import EventEnvelope
from contracts.events.metering import AppBenefitFlaggedV1, AppBenefitRecoveredV1
from kit.audit import AuditEntry
from kit.natsserver import NatsServer
from kit.outbox import build_envelope, utcnow
from kit.testing import TestCity, publish_events

from .store_factories import StoreApp, install_at, problem_fields, publish_app
from .webhook_factories import eventually

PROPOSALS = "/review/retirement-proposals"


def _flag(
    app: StoreApp, *, periods: list[str] | None = None, reasons: list[str] | None = None, active_rate: float = 0.02,
    cost: int | None = 4_800, flagged_at: datetime | None = None,
) -> EventEnvelope:  # fmt: skip
    payload = AppBenefitFlaggedV1.model_validate(
        {
            "app_id": app.app_id, "vendor_id": app.vendor_id, "periods": periods or ["2026-09", "2026-10"],
            "reasons": reasons or ["low_active_rate", "high_cost_per_active_user"], "active_rate": active_rate,
            "cost_per_active_user_fen": cost, "flagged_at": flagged_at or datetime(2026, 11, 3, 2, tzinfo=UTC),
        }
    )  # fmt: skip
    return EventEnvelope.model_validate_json(
        build_envelope(payload, subject_id=app.app_id, carrier={}).model_dump_json()
    )


def _recovery(app: StoreApp, *, flagged_period: str = "2026-10", period: str = "2026-11") -> EventEnvelope:
    payload = AppBenefitRecoveredV1(
        app_id=app.app_id, vendor_id=app.vendor_id, flagged_period=flagged_period, period=period, active_rate=0.4,
        cost_per_active_user_fen=120, recovered_at=datetime(2026, 12, 3, 2, tzinfo=UTC),
    )  # fmt: skip
    return EventEnvelope.model_validate_json(
        build_envelope(payload, subject_id=app.app_id, carrier={}).model_dump_json()
    )


def _feed(city: TestCity, *envelopes: EventEnvelope) -> None:
    """Deliver flags as the appstore-benefit-flags consumer does: each in its own transaction, through the handler."""
    for envelope in envelopes:
        with city.database.session() as session:
            apply_benefit_event(session, envelope)


def _proposal_rows(city: TestCity) -> list[dict[str, Any]]:
    with city.database.read_session() as session:
        rows = session.exec(select(RetirementProposal).order_by(col(RetirementProposal.created_at))).all()
        return [row.model_dump() for row in rows]


async def _flagged(client: httpx.AsyncClient, city: TestCity, **flag: Any) -> tuple[StoreApp, dict[str, Any]]:
    """A listed app flagged by metering, and its proposal as reviewers see it."""
    app = await publish_app(client, city)
    _feed(city, _flag(app, **flag))
    items = (await client.get(PROPOSALS, headers=city.token("city_admin"))).json()["items"]
    return app, next(item for item in items if item["app_id"] == app.app_id)


async def _decide(client: httpx.AsyncClient, city: TestCity, proposal_id: str, decision: str, *,
                  who: str = "city_admin", **body: object) -> httpx.Response:  # fmt: skip
    return await client.post(
        f"{PROPOSALS}/{proposal_id}/decision",
        json={"decision": decision, "reason": "连续两个月活跃率过低，人均成本过高", **body},
        headers=city.token(who),
    )


async def test_only_city_reviewers_see_and_decide_proposals(client: httpx.AsyncClient, city: TestCity) -> None:
    _, proposal = await _flagged(client, city)
    assert (await client.get(PROPOSALS)).status_code == 401
    assert (await client.post(f"{PROPOSALS}/{proposal['id']}/decision", json={})).status_code == 401
    for person in ("a1_admin", "district_a_admin", "developer"):
        assert (await client.get(PROPOSALS, headers=city.token(person))).status_code == 403, person
        assert (await _decide(client, city, proposal["id"], "dismiss", who=person)).status_code == 403, person
    # A city administrator without apps.review is no reviewer either.
    no_scope = await client.get(PROPOSALS, headers=city.token("city_admin", "apps.read"))
    assert no_scope.status_code == 403
    assert _proposal_rows(city)[0]["state"] == "open"


async def test_a_flag_opens_one_proposal_per_app_and_later_flags_refresh_it(
    client: httpx.AsyncClient, city: TestCity
) -> None:
    app = await publish_app(client, city)
    first = _flag(app, reasons=["low_active_rate"], active_rate=0.031, cost=None)
    _feed(city, first, first)  # a redelivered event has no second effect

    response = await client.get(PROPOSALS, headers=city.token("city_admin"))
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 1
    proposal = page["items"][0]
    assert proposal["app_id"] == app.app_id and proposal["app_name"] == "口算小达人"
    assert proposal["app_status"] == "listed" and proposal["vendor"]["id"] == app.vendor_id
    assert proposal["vendor"]["name"]
    assert proposal["source"] == "metering_benefit" and proposal["state"] == "open"
    assert proposal["periods"] == ["2026-09", "2026-10"]
    assert proposal["reasons"] == ["low_active_rate"] and proposal["reasons_zh"] == ["低活跃率"]
    assert proposal["active_rate"] == 0.031 and proposal["cost_per_active_user_fen"] is None

    # The next month's flag updates the open proposal rather than opening a second one.
    newer = _flag(app, periods=["2026-10", "2026-11"], active_rate=0.012, cost=9_900,
                  flagged_at=datetime(2026, 12, 3, 2, tzinfo=UTC))  # fmt: skip
    older = _flag(app, periods=["2026-08"], flagged_at=datetime(2026, 10, 3, 2, tzinfo=UTC))
    _feed(city, newer, older)  # an older flag arriving late changes nothing
    (refreshed,) = (await client.get(PROPOSALS, headers=city.token("city_admin"))).json()["items"]
    assert refreshed["id"] == proposal["id"]
    assert refreshed["periods"] == ["2026-09", "2026-10", "2026-11"]
    assert refreshed["reasons_zh"] == ["低活跃率", "人均成本过高"]
    assert (refreshed["active_rate"], refreshed["cost_per_active_user_fen"]) == (0.012, 9_900)
    assert refreshed["flagged_at"].startswith("2026-12-03T02:00")
    assert [row["event_id"] for row in _proposal_rows(city)] == [newer.id]


async def test_flags_for_unknown_or_retired_apps_are_ignored(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    ghost = StoreApp(vendor_id=app.vendor_id, app_id="no-such-app", version_id=app.version_id, client_id=app.client_id)
    retired = await client.post(f"/apps/{app.app_id}/status-changes", json={"status": "retired", "reason": "停止运营"},
                                headers=city.token("city_admin"))  # fmt: skip
    assert retired.status_code == 201
    _feed(city, _flag(ghost), _flag(app))
    assert _proposal_rows(city) == []
    assert (await client.get(PROPOSALS, headers=city.token("city_admin"))).json()["items"] == []


async def test_listing_puts_open_proposals_first_and_filters_by_state(
    client: httpx.AsyncClient, city: TestCity
) -> None:
    _, dismissed = await _flagged(client, city, flagged_at=datetime(2026, 12, 3, tzinfo=UTC))
    _, still_open = await _flagged(client, city, flagged_at=datetime(2026, 11, 3, tzinfo=UTC))
    assert (await _decide(client, city, dismissed["id"], "dismiss")).status_code == 200

    everything = (await client.get(PROPOSALS, headers=city.token("city_admin"))).json()
    assert [(item["id"], item["state"]) for item in everything["items"]] == [
        (still_open["id"], "open"), (dismissed["id"], "dismissed"),
    ]  # fmt: skip
    only_open = (await client.get(PROPOSALS, params={"state": "open"}, headers=city.token("city_admin"))).json()
    assert [item["id"] for item in only_open["items"]] == [still_open["id"]] and only_open["total"] == 1
    bad = await client.get(PROPOSALS, params={"state": "closed"}, headers=city.token("city_admin"))
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert problem_fields(bad) == ["query.state"]


async def test_retire_schedules_the_apps_retirement_in_30_days(client: httpx.AsyncClient, city: TestCity) -> None:
    app, proposal = await _flagged(client, city)
    install_at(city.database, app=app, school_id=city.school_a1, school_path=city.paths[city.school_a1],
               by=city.people["a1_admin"].id)  # fmt: skip
    before = utcnow()
    response = await _decide(client, city, proposal["id"], "retire")
    assert response.status_code == 200, response.text
    result = response.json()
    decided = result["proposal"]
    assert decided["state"] == "retirement_ordered" and decided["note"] == "连续两个月活跃率过低，人均成本过高"
    assert decided["decided_by"] == city.people["city_admin"].id and decided["decided_at"]
    change = result["status_change"]
    assert decided["status_change_id"] == change["id"]
    assert change["status"] == "retired" and change["applied_at"] is None and change["schools_notified"] == 1
    effective = datetime.fromisoformat(change["effective_at"])
    assert before + timedelta(days=30) <= effective <= utcnow() + timedelta(days=30)

    # The order is the app's scheduled status change, seen by reviewers and the vendor's developers alike.
    for who in ("city_admin", "developer"):
        changes = await client.get(f"/apps/{app.app_id}/status-changes", headers=city.token(who))
        assert changes.status_code == 200
        assert [(c["id"], c["status"], c["applied_at"]) for c in changes.json()] == [(change["id"], "retired", None)]
    # The school using it is told; the app stays listed until the day comes.
    notices = (await client.get(f"/schools/{city.school_a1}/notices", headers=city.token("a1_admin"))).json()
    assert [n["kind"] for n in notices] == ["app_retired"] and "人均成本过高" in notices[0]["message"]
    assert (await client.get(f"/catalog/apps/{app.app_id}", headers=city.token("a1_admin"))).status_code == 200
    with city.database.read_session() as session:
        actions = set(session.exec(select(AuditEntry.action)).all())
    assert {"review.retirement_proposal_retire", "app.status_change_ordered"} <= actions

    again = await _decide(client, city, proposal["id"], "dismiss")
    assert again.status_code == 409 and "已决定淘汰" in again.json()["detail"]
    # While the retirement is pending, further flags for the app open nothing new.
    _feed(city, _flag(app, flagged_at=datetime(2027, 1, 3, tzinfo=UTC)))
    assert len(_proposal_rows(city)) == 1


async def test_retire_at_a_chosen_time_and_as_the_status_change_order_validates(
    client: httpx.AsyncClient, city: TestCity
) -> None:
    app, proposal = await _flagged(client, city)
    suspended = await client.post(f"/apps/{app.app_id}/status-changes",
                                  json={"status": "suspended", "reason": "整改中", "effective_at":
                                        (utcnow() + timedelta(days=2)).isoformat()},
                                  headers=city.token("city_admin"))  # fmt: skip
    assert suspended.status_code == 201
    # A pending change must be withdrawn first, as for any status-change order; the proposal stays open.
    blocked = await _decide(client, city, proposal["id"], "retire")
    assert blocked.status_code == 409 and "待生效" in blocked.json()["detail"]
    assert _proposal_rows(city)[0]["state"] == "open"
    withdrawn = await client.delete(f"/apps/{app.app_id}/status-changes/{suspended.json()['id']}",
                                    headers=city.token("city_admin"))  # fmt: skip
    assert withdrawn.status_code == 200

    when = utcnow() + timedelta(days=7)
    response = await _decide(client, city, proposal["id"], "retire", effective_at=when.isoformat())
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["status_change"]["effective_at"]) == when


async def test_dismiss_records_the_reason_once(client: httpx.AsyncClient, city: TestCity) -> None:
    app, proposal = await _flagged(client, city)
    response = await _decide(client, city, proposal["id"], "dismiss", reason="  学期初数据偏低，继续观察  ")
    assert response.status_code == 200, response.text
    assert response.json()["status_change"] is None
    decided = response.json()["proposal"]
    assert decided["state"] == "dismissed" and decided["note"] == "学期初数据偏低，继续观察"
    assert decided["status_change_id"] is None
    assert (await client.get(f"/apps/{app.app_id}/status-changes", headers=city.token("city_admin"))).json() == []
    with city.database.read_session() as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.action == "review.retirement_proposal_dismiss")).one()
        assert entry.target_id == proposal["id"] and entry.actor_id == city.people["city_admin"].id

    twice = await _decide(client, city, proposal["id"], "dismiss")
    assert twice.status_code == 409 and twice.json()["state"] == "dismissed"
    assert (await _decide(client, city, proposal["id"], "retire")).status_code == 409
    # A dismissed proposal is closed: the next flag opens a new one.
    _feed(city, _flag(app, flagged_at=datetime(2027, 1, 3, tzinfo=UTC)))
    states = [
        (item["state"]) for item in (await client.get(PROPOSALS, headers=city.token("city_admin"))).json()["items"]
    ]
    assert states == ["open", "dismissed"]


async def test_an_app_that_recovers_before_a_decision_has_its_proposal_withdrawn(
    client: httpx.AsyncClient, city: TestCity
) -> None:
    app, proposal = await _flagged(client, city)
    decided_app, decided = await _flagged(client, city)
    assert (await _decide(client, city, decided["id"], "dismiss", reason="学期初数据偏低，继续观察")).status_code == 200

    # A recovery in a period the proposal's flags already cover changes nothing; a later one withdraws it, once.
    _feed(city, _recovery(app, flagged_period="2026-09", period="2026-10"))
    still = await client.get(PROPOSALS, params={"state": "open"}, headers=city.token("city_admin"))
    assert [item["id"] for item in still.json()["items"]] == [proposal["id"]]
    _feed(city, _recovery(app), _recovery(app), _recovery(decided_app))

    items = {
        item["id"]: item for item in (await client.get(PROPOSALS, headers=city.token("city_admin"))).json()["items"]
    }
    withdrawn = items[proposal["id"]]
    assert withdrawn["state"] == "withdrawn"
    assert withdrawn["decided_by"] is None and withdrawn["decided_at"].startswith("2026-12-03T02:00")
    assert "2026-11" in withdrawn["note"] and "40.0%" in withdrawn["note"]
    assert items[decided["id"]]["state"] == "dismissed"  # a reviewer's decision stands
    only = await client.get(PROPOSALS, params={"state": "withdrawn"}, headers=city.token("city_admin"))
    assert [item["id"] for item in only.json()["items"]] == [proposal["id"]]

    refused = await _decide(client, city, proposal["id"], "retire")
    assert refused.status_code == 409 and refused.json()["state"] == "withdrawn"
    assert "因绩效回升撤回" in refused.json()["detail"]
    # The app falling below again later opens a new proposal.
    _feed(city, _flag(app, periods=["2027-01", "2027-02"], flagged_at=datetime(2027, 3, 3, tzinfo=UTC)))
    states = sorted(
        item["state"]
        for item in (await client.get(PROPOSALS, headers=city.token("city_admin"))).json()["items"]
        if item["app_id"] == app.app_id
    )
    assert states == ["open", "withdrawn"]


async def test_flags_and_recoveries_arrive_through_the_consumer_in_order(
    client: httpx.AsyncClient, city: TestCity, nats_server: NatsServer
) -> None:
    app = await publish_app(client, city)
    flag = AppBenefitFlaggedV1.model_validate(_flag(app).data)
    recovery = AppBenefitRecoveredV1.model_validate(_recovery(app).data)
    # The recovery published twice past JetStream's duplicate window: applied once.
    await publish_events(nats_server.url, flag, subject_id=app.app_id)
    await publish_events(nats_server.url, recovery, subject_id=app.app_id, repeat=2)

    def withdrawn() -> list[dict[str, Any]]:
        return [row for row in _proposal_rows(city) if row["state"] == "withdrawn"]

    [row] = await eventually(withdrawn)
    assert row["app_id"] == app.app_id and json.loads(row["periods"]) == ["2026-09", "2026-10"]
    assert len(_proposal_rows(city)) == 1


async def test_bad_decisions_are_refused_naming_the_field(client: httpx.AsyncClient, city: TestCity) -> None:
    _, proposal = await _flagged(client, city)
    short = await _decide(client, city, proposal["id"], "dismiss", reason="不要")
    assert short.status_code == 422 and problem_fields(short) == ["reason"]
    blank = await _decide(client, city, proposal["id"], "dismiss", reason="      ")
    assert blank.status_code == 422 and problem_fields(blank) == ["reason"]
    unknown = await _decide(client, city, proposal["id"], "delete")
    assert unknown.status_code == 422 and problem_fields(unknown) == ["decision"]
    when = await _decide(client, city, proposal["id"], "dismiss", effective_at=utcnow().isoformat())
    assert when.status_code == 422 and problem_fields(when) == ["effective_at"]
    assert when.headers["content-type"].startswith("application/problem+json")
    assert (await _decide(client, city, "no-such-proposal", "dismiss")).status_code == 404
    assert _proposal_rows(city)[0]["state"] == "open"
