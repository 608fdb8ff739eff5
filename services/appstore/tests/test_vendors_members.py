"""Owners invite developers with one-time, expiring codes, list them and remove them; nobody else may."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlmodel import select

from appstore.vendors.models import VendorInvitation
from contracts.events.appstore import VendorMemberAddedV1, VendorMemberRemovedV1
from kit.outbox import utcnow
from kit.testing import TestCity

from .store_factories import outbox_events, problem_fields, register_vendor


async def _invite(client: httpx.AsyncClient, city: TestCity, vendor_id: str, who: str = "developer",
                  **body: object) -> httpx.Response:  # fmt: skip
    return await client.post(f"/vendors/{vendor_id}/invitations", json=body, headers=city.token(who))


async def test_an_invited_developer_joins_once(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    invitation = await _invite(client, city, vendor_id)
    assert invitation.status_code == 201, invitation.text
    code = invitation.json()["code"]
    with city.database.read_session() as session:
        stored = session.exec(select(VendorInvitation)).one()
        assert code not in stored.code_hash  # only a hash is kept

    joined = await client.post("/vendor-invitations/accept", json={"code": code}, headers=city.token("developer2"))
    assert joined.status_code == 200, joined.text
    assert joined.json()["id"] == vendor_id and joined.json()["my_role"] == "developer"
    members = (await client.get(f"/vendors/{vendor_id}/members", headers=city.token("developer2"))).json()
    assert {(m["name"], m["role"]) for m in members} == {("开发者张工", "owner"), ("开发者李工", "developer")}

    reused = await client.post("/vendor-invitations/accept", json={"code": code}, headers=city.token("other_developer"))
    assert reused.status_code == 404
    assert "已被使用" in reused.json()["detail"]


async def test_expired_and_unknown_codes_are_refused(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    code = (await _invite(client, city, vendor_id)).json()["code"]
    with city.database.session() as session:
        invitation = session.exec(select(VendorInvitation)).one()
        invitation.expires_at = utcnow() - timedelta(minutes=1)
        session.add(invitation)
    expired = await client.post("/vendor-invitations/accept", json={"code": code}, headers=city.token("developer2"))
    assert expired.status_code == 404 and "过期" in expired.json()["detail"]
    unknown = await client.post("/vendor-invitations/accept", json={"code": "nope"}, headers=city.token("developer2"))
    assert unknown.status_code == 404 and problem_fields(unknown) == ["code"]


async def test_only_owners_invite_and_remove(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    code = (await _invite(client, city, vendor_id)).json()["code"]
    await client.post("/vendor-invitations/accept", json={"code": code}, headers=city.token("developer2"))

    assert (await _invite(client, city, vendor_id, "developer2")).status_code == 403  # a developer, not an owner
    assert (await _invite(client, city, vendor_id, "other_developer")).status_code == 403  # another vendor's
    assert (await _invite(client, city, vendor_id, "a1_admin")).status_code == 403  # not a developer at all
    assert (await client.post(f"/vendors/{vendor_id}/invitations", json={})).status_code == 401
    assert (await _invite(client, city, vendor_id, valid_days=90)).status_code == 422

    owner_id = city.people["developer"].id
    developer2_id = city.people["developer2"].id
    path = f"/vendors/{vendor_id}/members/{owner_id}"
    assert (await client.delete(path, headers=city.token("developer2"))).status_code == 403
    assert (await client.delete(path, headers=city.token("developer"))).status_code == 409  # the last owner stays
    removed = await client.delete(f"/vendors/{vendor_id}/members/{developer2_id}", headers=city.token("developer"))
    assert removed.status_code == 204
    assert (await client.get(f"/vendors/{vendor_id}", headers=city.token("developer2"))).status_code == 403
    again = await client.delete(f"/vendors/{vendor_id}/members/{developer2_id}", headers=city.token("developer"))
    assert again.status_code == 404


async def test_a_member_cannot_accept_twice(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    code = (await _invite(client, city, vendor_id)).json()["code"]
    response = await client.post("/vendor-invitations/accept", json={"code": code}, headers=city.token("developer"))
    assert response.status_code == 409


async def test_joining_and_leaving_are_announced_for_metering(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    code = (await _invite(client, city, vendor_id)).json()["code"]
    await client.post("/vendor-invitations/accept", json={"code": code}, headers=city.token("developer2"))
    developer2_id = city.people["developer2"].id
    await client.delete(f"/vendors/{vendor_id}/members/{developer2_id}", headers=city.token("developer"))

    added = outbox_events(city.database, VendorMemberAddedV1.event_type())
    removed = outbox_events(city.database, VendorMemberRemovedV1.event_type())
    assert [(event["person_id"], event["role"]) for event in added] == [
        (city.people["developer"].id, "owner"),
        (developer2_id, "developer"),
    ]
    assert removed == [{"vendor_id": vendor_id, "person_id": developer2_id}]
