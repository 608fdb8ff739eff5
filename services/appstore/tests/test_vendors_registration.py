"""A vendor developer registers a company with its credit code and filings, and becomes its owner."""

from __future__ import annotations

import httpx
from sqlmodel import select

from appstore.vendors.models import VendorMember
from contracts.events.appstore import VendorRegisteredV1
from kit.audit import AuditEntry
from kit.natsserver import NatsServer
from kit.testing import TestCity

from .store_factories import credit_code, nats_events, outbox_events, problem_fields, vendor_fields


async def test_anonymous_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/vendors", json=vendor_fields())
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_only_vendor_developers_register(client: httpx.AsyncClient, city: TestCity) -> None:
    teacher = await client.post("/vendors", json=vendor_fields(), headers=city.token("a1_teacher"))
    assert teacher.status_code == 403
    no_scope = await client.post("/vendors", json=vendor_fields(), headers=city.token("developer", "apps.read"))
    assert no_scope.status_code == 403
    assert no_scope.json()["required_scope"] == "apps.develop"


async def test_registration_makes_the_registrant_owner_and_announces_it(
    client: httpx.AsyncClient, city: TestCity, nats_server: NatsServer
) -> None:
    code = credit_code()
    response = await client.post(
        "/vendors",
        json=vendor_fields(unified_social_credit_code=code.lower(), contact_phone="+86 138-0013-8000",
                           icp_filing="闽icp备12345678号", education_app_filing="教App备3502001号"),
        headers=city.token("developer"),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    vendor = response.json()
    assert vendor["unified_social_credit_code"] == code
    assert vendor["contact_phone"] == "13800138000"
    assert vendor["icp_filing"] == "闽ICP备12345678号"
    assert vendor["education_app_filing"] == "教APP备3502001号"
    assert vendor["my_role"] == "owner"
    with city.database.read_session() as session:
        members = session.exec(select(VendorMember).where(VendorMember.vendor_id == vendor["id"])).all()
        assert [(m.person_id, m.role) for m in members] == [(city.people["developer"].id, "owner")]
        assert session.exec(select(AuditEntry).where(AuditEntry.action == "vendor.registered")).first() is not None
    assert outbox_events(city.database, VendorRegisteredV1.event_type()) == [
        {"vendor_id": vendor["id"], "name": "厦门启明教育科技有限公司", "unified_social_credit_code": code}
    ]
    published = await nats_events(nats_server.url, VendorRegisteredV1.subject(), expected=1)
    assert [event["data"]["vendor_id"] for event in published] == [vendor["id"]]

    mine = await client.get("/vendors", headers=city.token("developer"))
    assert [item["id"] for item in mine.json()] == [vendor["id"]]
    assert (await client.get("/vendors", headers=city.token("other_developer"))).json() == []


async def test_bad_registration_names_every_field_and_says_what_is_expected(
    client: httpx.AsyncClient, city: TestCity
) -> None:
    response = await client.post(
        "/vendors",
        json=vendor_fields(unified_social_credit_code="91350200MA00000034", icp_filing="ICP12345",
                           education_app_filing="3502001", contact_email="not-an-email", contact_phone="12345"),
        headers=city.token("developer"),
    )  # fmt: skip
    assert response.status_code == 422
    assert sorted(problem_fields(response)) == sorted(
        ["unified_social_credit_code", "icp_filing", "education_app_filing", "contact_email", "contact_phone"]
    )
    messages = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert "校验位" in messages["unified_social_credit_code"]
    assert "闽ICP备12345678号" in messages["icp_filing"]
    assert "教APP备3502001号" in messages["education_app_filing"]


async def test_a_credit_code_registers_once(client: httpx.AsyncClient, city: TestCity) -> None:
    code = credit_code()
    first = await client.post("/vendors", json=vendor_fields(unified_social_credit_code=code),
                              headers=city.token("developer"))  # fmt: skip
    assert first.status_code == 201
    again = await client.post("/vendors", json=vendor_fields(unified_social_credit_code=code, name="另一家公司"),
                              headers=city.token("other_developer"))  # fmt: skip
    assert again.status_code == 409
    assert problem_fields(again) == ["unified_social_credit_code"]


async def test_another_vendors_developer_cannot_read_it(client: httpx.AsyncClient, city: TestCity) -> None:
    response = await client.post("/vendors", json=vendor_fields(), headers=city.token("developer"))
    vendor_id = response.json()["id"]
    assert (await client.get(f"/vendors/{vendor_id}", headers=city.token("developer"))).status_code == 200
    for path in (f"/vendors/{vendor_id}", f"/vendors/{vendor_id}/members", f"/vendors/{vendor_id}/apps"):
        assert (await client.get(path, headers=city.token("other_developer"))).status_code == 403
    assert (await client.get("/vendors/unknown", headers=city.token("developer"))).status_code == 404
