"""Online admission (入学一件事): a family applies, facts are verified without paper, bad input is refused clearly."""

from __future__ import annotations

import httpx
from sqlmodel import func, select

from enrollment.admission.models import Application, ApplicationRevision
from enrollment.testing import City
from kit.audit import AuditEntry

from .admission_support import (
    CHEN,
    DISTRICT_SCOPES,
    HE,
    HUANG,
    LIN,
    PARENT_SCOPES,
    WANG,
    ZHANG,
    add_parent,
    application_body,
    apply,
    close_applications,
    open_season,
    settled,
)


def _applications(city: City) -> int:
    with city.database.read_session() as session:
        return int(session.exec(select(func.count()).select_from(Application)).one())


async def test_a_family_applies_and_the_facts_are_verified_without_paper(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city)
    response = await apply(client, city, season["id"], WANG, [city.school_a1])
    assert response.status_code == 201, response.text
    submitted = response.json()
    # The family sees its application at once, masked, with verification under way.
    assert submitted["status"] == "verifying"
    assert submitted["child_id_number"] == "330108********0217"
    assert "330108201910120217" not in response.text
    assert "verification pending" in submitted["status_message"].lower()

    result = await settled(client, city, WANG, submitted["id"])
    assert result["status"] == "verified", result
    assert result["category"] == "household_property"
    by_kind = {item["kind"]: item for item in result["verifications"]}
    assert {kind: item["status"] for kind, item in by_kind.items()} == {
        "identity": "verified", "guardianship": "verified", "household": "verified", "property": "verified",
        "residence_permit": "not_found", "social_insurance": "not_found",
    }  # fmt: skip
    assert by_kind["household"]["source"] == "公安户籍" and by_kind["household"]["checked_at"]

    progress = await client.get(
        f"/admission/seasons/{season['id']}/progress", headers=city.token("district_a_admin", DISTRICT_SCOPES)
    )
    assert progress.status_code == 200, progress.text
    assert progress.json()["documents_avoided"] == 4
    assert progress.json()["documents_uploaded"] == 0


async def test_every_category_follows_from_the_verified_facts(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city)
    expected = {CHEN: "household_property", LIN: "household", HUANG: "property", ZHANG: "migrant"}
    choices = {CHEN: [city.school_a1], LIN: [city.school_a2, city.school_a1], HUANG: [city.school_a1],
               ZHANG: [city.school_a2]}  # fmt: skip
    ids = {}
    for family in expected:
        response = await apply(client, city, season["id"], family, choices[family])
        assert response.status_code == 201, response.text
        ids[family] = response.json()["id"]
    for family, category in expected.items():
        result = await settled(client, city, family, ids[family])
        assert (result["status"], result["category"]) == ("verified", category), (family[0], result)


async def test_anonymous_and_wrong_scope_are_refused(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city)
    body = application_body(city, WANG, [city.school_a1])
    anonymous = await client.post(f"/admission/seasons/{season['id']}/applications", json=body)
    assert anonymous.status_code == 401
    add_parent(city, WANG)
    wrong_scope = await client.post(
        f"/admission/seasons/{season['id']}/applications", json=body,
        headers=city.token(f"parent-{WANG[1]}", "enrollment.read"),
    )  # fmt: skip
    assert wrong_scope.status_code == 403
    assert _applications(city) == 0


async def test_bad_input_is_refused_with_what_to_fix_and_nothing_written(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city)
    url = f"/admission/seasons/{season['id']}/applications"
    headers = city.token(add_parent(city, WANG), PARENT_SCOPES)

    def body(**changes: object) -> dict[str, object]:
        return {**application_body(city, WANG, [city.school_a1]), **changes}

    cases = {
        "check digit": (body(child_id_number="330108201910120218"), 422, "child_id_number"),
        "admission age": (body(child_id_number="330106201807010018"), 422, "child_id_number"),
        "outside the zone": (body(choices=[city.school_a2]), 422, "choices[0]"),
        "unknown school": (body(choices=[city.school_b1]), 422, "choices[0]"),
        "too many choices": (body(choices=[city.school_a1, city.school_a2, city.school_b1]), 422, "choices"),
        "child as applicant": (body(applicant_id_number=WANG[3]), 422, "applicant_id_number"),
    }
    for name, (payload, status, field) in cases.items():
        response = await client.post(url, json=payload, headers=headers)
        assert response.status_code == status, (name, response.text)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert field in {error["field"] for error in problem.get("errors", [])}, (name, problem)
    assert _applications(city) == 0

    first = await client.post(url, json=body(), headers=headers)
    assert first.status_code == 201
    twice = await client.post(url, json=body(), headers=headers)
    assert twice.status_code == 409
    assert twice.json()["application_id"] == first.json()["id"]
    assert _applications(city) == 1


async def test_applying_outside_the_season_is_refused(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city)
    with city.database.session() as session:
        close_applications(session, season["id"])
    response = await apply(client, city, season["id"], WANG, [city.school_a1])
    assert response.status_code == 409
    assert response.json()["type"].endswith("enrollment/application-closed")
    assert "报名时间" in response.json()["detail"]
    assert _applications(city) == 0


async def test_a_parent_cannot_apply_for_a_child_they_are_not_linked_to(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city)
    # A child already in the directory with a recorded guardian: another adult is refused at once.
    city.add_person("wang-child", kind="student", name=WANG[2], org_id=city.school_a1, student_number="G" + WANG[3])
    guardian = add_parent(city, WANG)
    from contracts.events import identity as identity_events
    from enrollment.testing import feed

    feed(city.database, identity_events.GuardianLinkedV1(
        link_id="link-1", guardian_id=city.people[guardian].id, student_id=city.people["wang-child"].id,
        relationship="father",
    ))  # fmt: skip
    stranger = add_parent(city, HE)
    body = {**application_body(city, WANG, [city.school_a1]), "applicant_id_number": HE[1]}
    refused = await client.post(
        f"/admission/seasons/{season['id']}/applications", json=body, headers=city.token(stranger, PARENT_SCOPES)
    )
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("enrollment/not-the-guardian")
    assert _applications(city) == 0


async def test_guardianship_that_cannot_be_verified_asks_for_a_document(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city)
    # 何军 is a real person but not this child's parent: the platform cannot confirm the guardianship.
    stranger = add_parent(city, HE)
    body = {**application_body(city, CHEN, [city.school_a1]), "applicant_id_number": HE[1]}
    response = await client.post(
        f"/admission/seasons/{season['id']}/applications", json=body, headers=city.token(stranger, PARENT_SCOPES)
    )
    assert response.status_code == 201, response.text
    result = await settled(client, city, HE, response.json()["id"])
    assert result["status"] == "needs_documents"
    assert "监护" in result["status_message"]

    upload = await client.post(
        f"/admission/applications/{result['id']}/documents", data={"kind": "guardianship"},
        files={"file": ("监护证明.pdf", b"%PDF-1.7 guardianship order", "application/pdf")},
        headers=city.token(stranger, PARENT_SCOPES),
    )  # fmt: skip
    assert upload.status_code == 201, upload.text
    not_a_pdf = await client.post(
        f"/admission/applications/{result['id']}/documents", data={"kind": "guardianship"},
        files={"file": ("x.pdf", b"MZ\x90\x00 not a pdf", "application/pdf")},
        headers=city.token(stranger, PARENT_SCOPES),
    )  # fmt: skip
    assert not_a_pdf.status_code == 415
    already = await client.post(
        f"/admission/applications/{result['id']}/documents", data={"kind": "identity"},
        files={"file": ("id.pdf", b"%PDF-1.7", "application/pdf")}, headers=city.token(stranger, PARENT_SCOPES),
    )  # fmt: skip
    assert already.status_code == 422

    review = await client.post(
        f"/admission/documents/{upload.json()['id']}/review", json={"decision": "accept", "note": "法院监护裁定"},
        headers=city.token("district_a_admin", DISTRICT_SCOPES),
    )  # fmt: skip
    assert review.status_code == 200, review.text
    after = await client.get(f"/admission/applications/{result['id']}", headers=city.token(stranger, PARENT_SCOPES))
    assert after.json()["status"] == "verified"
    guardianship = next(item for item in after.json()["verifications"] if item["kind"] == "guardianship")
    assert guardianship["status"] == "document"


async def test_changes_before_the_deadline_are_kept(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city)
    created = await apply(client, city, season["id"], LIN, [city.school_a1])
    application_id = created.json()["id"]
    headers = city.token(add_parent(city, LIN), PARENT_SCOPES)
    edited = await client.patch(
        f"/admission/applications/{application_id}", json={"choices": [city.school_a2, city.school_a1]},
        headers=headers,
    )  # fmt: skip
    assert edited.status_code == 200, edited.text
    assert edited.json()["choices"] == [city.school_a2, city.school_a1]
    assert edited.json()["version"] == 2
    history = await client.get(f"/admission/applications/{application_id}/history", headers=headers)
    changes = [entry for entry in history.json() if entry["action"] == "edited"]
    assert changes[0]["changes"]["choices"] == [[city.school_a1], [city.school_a2, city.school_a1]]

    # Another family cannot read or change it; it looks as if it did not exist.
    other = city.token(add_parent(city, WANG), PARENT_SCOPES)
    assert (await client.get(f"/admission/applications/{application_id}", headers=other)).status_code == 404
    assert (await client.patch(f"/admission/applications/{application_id}", json={"choices": [city.school_a1]},
                               headers=other)).status_code == 404  # fmt: skip

    with city.database.session() as session:
        close_applications(session, season["id"])
    late = await client.patch(
        f"/admission/applications/{application_id}", json={"choices": [city.school_a1]}, headers=headers
    )
    assert late.status_code == 409
    with city.database.read_session() as session:
        revisions = session.exec(
            select(ApplicationRevision).where(ApplicationRevision.application_id == application_id)
        )
        assert "edited" in {revision.action for revision in revisions}
        reads = session.exec(select(AuditEntry).where(AuditEntry.action == "admission.application_read")).all()
        assert reads and all(entry.target_id == application_id for entry in reads)


async def test_pressure_warnings_before_the_draw(client: httpx.AsyncClient, city: City) -> None:
    season = await open_season(client, city, seats_a1=1, seats_a2=4)
    for family in (WANG, CHEN):
        assert (await apply(client, city, season["id"], family, [city.school_a1])).status_code == 201
    assert (await apply(client, city, season["id"], ZHANG, [city.school_a2])).status_code == 201
    response = await client.get(
        f"/admission/seasons/{season['id']}/pressure", headers=city.token("district_a_admin", DISTRICT_SCOPES)
    )
    assert response.status_code == 200, response.text
    schools = {item["school_id"]: item for item in response.json()["schools"]}
    assert (schools[city.school_a1]["first_choice"], schools[city.school_a1]["level"]) == (2, "red")
    assert (schools[city.school_a2]["ratio"], schools[city.school_a2]["level"]) == (0.25, "green")
    zones = {item["name"]: item for item in response.json()["zones"]}
    assert zones["春晓学区"]["applicants"] == 2 and zones["春晓学区"]["seats"] == 1

    # Another district's administrator, and a school administrator, see none of it.
    for key in ("b1_admin", "a1_admin"):
        refused = await client.get(
            f"/admission/seasons/{season['id']}/pressure", headers=city.token(key, DISTRICT_SCOPES)
        )
        assert refused.status_code == 403, key
