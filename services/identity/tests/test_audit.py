"""The hash-chained audit log: who may read it, what an entry holds, and tampering being detected."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import col, select

from identity.people import service as people
from identity.people.schemas import PersonCreate
from identity.testing import Directory, TokenFactory, bearer
from kit.audit import AuditEntry
from kit.crypto import FieldCipher


async def make_history(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> list[int]:
    """A few audited actions by the school admin; returns the ids of the entries, oldest first."""
    headers = bearer(token_for(directory.school_admin_a))
    for _ in range(3):
        response = await client.get(f"/people/{directory.teacher_a.id}", headers=headers)
        assert response.status_code == 200
    response = await client.patch(f"/people/{directory.teacher_a.id}", json={"staff_number": "T001"}, headers=headers)
    assert response.status_code == 200
    with directory.database.session() as session:
        return [int(entry_id) for entry_id in session.exec(select(AuditEntry.id).order_by(col(AuditEntry.id))).all()]


async def verify(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/audit/verify", headers=headers)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def test_anonymous(client: httpx.AsyncClient, directory: Directory) -> None:
    for url in ("/audit/entries", "/audit/verify"):
        response = await client.get(url)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_valid_auditor_searches_and_verifies(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    ids = await make_history(client, directory, token_for)
    auditor = bearer(token_for(directory.auditor))
    report = await verify(client, auditor)
    assert report == {"checked": len(ids), "intact": True, "first_broken_id": None, "reason": None}

    response = await client.get(
        "/audit/entries", params={"target_id": directory.teacher_a.id, "action": "person.read"}, headers=auditor
    )
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 3
    assert [item["id"] for item in page["items"]] == sorted(ids[:3], reverse=True)  # newest first
    updated = await client.get("/audit/entries", params={"action": "person.update"}, headers=auditor)
    assert updated.json()["items"][0]["detail"] == {"changed": ["staff_number"]}
    by_actor = await client.get("/audit/entries", params={"actor_id": directory.auditor.id}, headers=auditor)
    assert by_actor.json()["total"] == 2  # the two searches before this one: searching is audited too
    assert {item["action"] for item in by_actor.json()["items"]} == {"audit.search"}
    # Verifying reads the whole chain, including the auditor's own entries.
    assert (await verify(client, auditor))["checked"] == len(ids) + 3


async def test_entry_of_a_person_read_says_who_what_where(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    response = await client.get(
        f"/people/{directory.teacher_a.id}",
        headers={**bearer(token_for(directory.school_admin_a)), "X-Request-Id": "req-7f3a9c"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-7f3a9c"
    # A request without its own id gets one; the audit entry records the one the response carries.
    response = await client.get(
        f"/people/{directory.teacher_a.id}", headers=bearer(token_for(directory.school_admin_a))
    )
    generated = response.headers["x-request-id"]
    # An insane one is replaced, never stored as sent.
    response = await client.get(
        f"/people/{directory.teacher_a.id}",
        headers={**bearer(token_for(directory.school_admin_a)), "X-Request-Id": "x" * 300},
    )
    assert response.status_code == 200
    replaced = response.headers["x-request-id"]
    assert replaced != "x" * 300

    found = await client.get(
        "/audit/entries", params={"target_id": directory.teacher_a.id, "action": "person.read"},
        headers=bearer(token_for(directory.auditor)),
    )  # fmt: skip
    entries = found.json()["items"]
    assert [entry["request_id"] for entry in entries] == [replaced, generated, "req-7f3a9c"]
    entry = entries[-1]
    assert entry["actor_id"] == directory.school_admin_a.id
    assert entry["actor_client"] == "platform-admin-console"
    assert (entry["target_type"], entry["target_id"]) == ("person", directory.teacher_a.id)
    assert entry["org_id"] == directory.school_a.id
    assert entry["source_ip"] == "127.0.0.1"
    assert entry["result"] == "success"
    assert entry["at"] and len(entry["hash"]) == 64


async def test_wrong_school_admin_is_refused_and_the_refusal_audited(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    school_admin = bearer(token_for(directory.school_admin_a))
    for url in ("/audit/entries", "/audit/verify"):
        response = await client.get(url, headers=school_admin)
        assert response.status_code == 403
        assert response.json()["type"].endswith("/forbidden")
    # A district's auditor is not the city's auditor, nor is the city admin.
    with directory.database.session() as session:
        district_auditor = people.create(
            session,
            people.clean(
                PersonCreate(kind="staff", name="何审计", org_id=directory.district_a.id), directory.district_a
            ),
            FieldCipher("test", "test"),
            created_by=None,
        )
        people.grant_role(session, district_auditor, role="auditor", org_id=directory.district_a.id, granted_by=None)
    for person in (district_auditor, directory.city_admin):
        response = await client.get("/audit/entries", headers=bearer(token_for(person)))
        assert response.status_code == 403
    # Without the scope, even the auditor is refused.
    response = await client.get("/audit/entries", headers=bearer(token_for(directory.auditor, scopes=("people.read",))))
    assert response.status_code == 403
    assert response.json()["type"].endswith("/insufficient-scope")

    found = await client.get(
        "/audit/entries", params={"result": "denied"}, headers=bearer(token_for(directory.auditor))
    )
    denied = [(item["actor_id"], item["action"]) for item in reversed(found.json()["items"])]
    assert denied == [
        (directory.school_admin_a.id, "denied:GET /audit/entries"),
        (directory.school_admin_a.id, "denied:GET /audit/verify"),
        (district_auditor.id, "denied:GET /audit/entries"),
        (directory.city_admin.id, "denied:GET /audit/entries"),
        (directory.auditor.id, "denied:GET /audit/entries"),
    ]
    assert all(item["result"] == "denied" for item in found.json()["items"])
    # The refusals are part of the chain like everything else.
    assert (await verify(client, bearer(token_for(directory.auditor))))["intact"] is True


async def test_tampering_with_an_entry_is_detected(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    ids = await make_history(client, directory, token_for)
    victim = ids[1]
    with directory.database.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE audit_entry SET detail = :detail WHERE id = :id"),
            {"detail": '{"note": "nothing"}', "id": victim},
        )
    report = await verify(client, bearer(token_for(directory.auditor)))
    assert report["intact"] is False
    assert report["first_broken_id"] == victim
    assert report["checked"] == 1
    assert "changed" in report["reason"]


async def test_deleting_a_middle_entry_is_detected(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    ids = await make_history(client, directory, token_for)
    with directory.database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM audit_entry WHERE id = :id"), {"id": ids[2]})
    report = await verify(client, bearer(token_for(directory.auditor)))
    assert report["intact"] is False
    assert report["first_broken_id"] == ids[3]  # the entry after the gap no longer links up
    assert "removed" in report["reason"]
