"""The draw: committed before, verifiable by anyone after, and waiting lists that move when a family declines."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json

import httpx
from sqlmodel import select

from enrollment.academics.models import StudentEnrollment
from enrollment.admission import placement
from enrollment.testing import City
from kit.outbox import OutboxEvent

from .admission_support import (
    CHEN,
    DISTRICT_SCOPES,
    HUANG,
    LIN,
    PARENT_SCOPES,
    WANG,
    ZHANG,
    add_parent,
    apply,
    close_applications,
    open_season,
    settled,
)

# Read out by the notary at the draw: unknown when the seed was committed.
WITNESS = {"witness_entropy": "公证员掷骰 3-6-1-4-2-5"}


async def _season_with_families(client: httpx.AsyncClient, city: City) -> tuple[dict[str, object], dict[str, str]]:
    # School A1 has 2 seats and is wanted by four families; A2 has 1 seat.
    season = await open_season(client, city, seats_a1=2, seats_a2=1)
    choices = {
        WANG: [city.school_a1],
        CHEN: [city.school_a1],
        HUANG: [city.school_a1],
        LIN: [city.school_a1, city.school_a2],
        ZHANG: [city.school_a2],
    }
    ids = {}
    for family, chosen in choices.items():
        response = await apply(client, city, str(season["id"]), family, chosen)
        assert response.status_code == 201, response.text
        ids[family[0]] = response.json()["id"]
        await settled(client, city, family, response.json()["id"])
    return season, ids


async def test_the_draw_is_committed_before_and_verifiable_after(client: httpx.AsyncClient, city: City) -> None:
    season, ids = await _season_with_families(client, city)
    admin = city.token("district_a_admin", DISTRICT_SCOPES)
    season_id = str(season["id"])

    early = await client.post(f"/admission/seasons/{season_id}/draw/commit", headers=admin)
    assert early.status_code == 409 and "截止" in early.json()["detail"]
    with city.database.session() as session:
        close_applications(session, season_id)
    not_committed = await client.post(f"/admission/seasons/{season_id}/draw", json=WITNESS, headers=admin)
    assert not_committed.status_code == 409

    committed = await client.post(f"/admission/seasons/{season_id}/draw/commit", headers=admin)
    assert committed.status_code == 200, committed.text
    commitment = committed.json()["seed_commitment"]
    assert committed.json()["seed"] is None  # secret until the draw
    published_input = await client.get(f"/admission/seasons/{season_id}/draw/input")  # public, no token
    assert published_input.status_code == 200
    assert hashlib.sha256(published_input.content).hexdigest() == committed.json()["input_digest"]
    assert "330108201910120217" not in published_input.text and "王子轩" not in published_input.text

    no_witness = await client.post(f"/admission/seasons/{season_id}/draw", headers=admin)
    assert no_witness.status_code == 422
    drawn = await client.post(f"/admission/seasons/{season_id}/draw", json=WITNESS, headers=admin)
    assert drawn.status_code == 200, drawn.text
    committed_seed = bytes.fromhex(drawn.json()["seed"])
    assert hashlib.sha256(committed_seed).hexdigest() == commitment
    assert drawn.json()["witness_entropy"] == WITNESS["witness_entropy"]
    seed = hmac.new(committed_seed, WITNESS["witness_entropy"].encode(), hashlib.sha256).digest()
    assert drawn.json()["lottery_seed"] == seed.hex()
    # Anyone re-runs the draw from the published input and the revealed seed and gets the same result.
    applicants, capacities = placement.parse_input(json.loads(published_input.content))
    rerun = placement.place(applicants, capacities, seed)
    assert placement.assignment_digest(rerun) == drawn.json()["rounds"][0]["assignment_digest"]

    # The child with household and property registered longest in the zone is placed; category order holds.
    results = {}
    for family in (WANG, CHEN, HUANG, LIN, ZHANG):
        headers = city.token(add_parent(city, family), PARENT_SCOPES)
        results[family[0]] = (await client.get(f"/admission/applications/{ids[family[0]]}", headers=headers)).json()
    assert results["王建国"]["placed_school_id"] == city.school_a1  # household + property since 2017/2019
    assert results["陈伟"]["placed_school_id"] == city.school_a1  # household + property since 2022
    assert results["黄斌"]["status"] == "unplaced"  # property only: ranks below both
    assert results["林峰"]["placed_school_id"] == city.school_a2  # second choice, household in the shared zone
    assert results["张磊"]["status"] == "unplaced"  # migrant category ranks below household at A2
    assert all(result["lottery_number"] for result in results.values())
    with city.database.read_session() as session:
        types = {row.event_type for row in session.exec(select(OutboxEvent))}
    assert {"edu.enrollment.draw.committed.v1", "edu.enrollment.placement.published.v1"} <= types


async def test_a_declined_place_moves_the_waiting_list(client: httpx.AsyncClient, city: City) -> None:
    season, ids = await _season_with_families(client, city)
    admin = city.token("district_a_admin", DISTRICT_SCOPES)
    season_id = str(season["id"])
    with city.database.session() as session:
        close_applications(session, season_id)
    assert (await client.post(f"/admission/seasons/{season_id}/draw/commit", headers=admin)).status_code == 200
    assert (await client.post(f"/admission/seasons/{season_id}/draw", json=WITNESS, headers=admin)).status_code == 200

    chen = city.token(add_parent(city, CHEN), PARENT_SCOPES)
    declined = await client.post(f"/admission/applications/{ids['陈伟']}/decline", headers=chen)
    assert declined.status_code == 200, declined.text
    assert declined.json()["offer"] == "declined"
    # The seat at A1 goes to the next in A1's order: 林峰 (household in the shared zone) moves up from A2,
    # and 林峰's seat at A2 goes to 张磊.
    lin = (await client.get(f"/admission/applications/{ids['林峰']}",
                            headers=city.token(add_parent(city, LIN), PARENT_SCOPES))).json()  # fmt: skip
    zhang = (await client.get(f"/admission/applications/{ids['张磊']}",
                              headers=city.token(add_parent(city, ZHANG), PARENT_SCOPES))).json()  # fmt: skip
    assert (lin["placed_school_id"], lin["round"]) == (city.school_a1, 2)
    assert (zhang["placed_school_id"], zhang["status"]) == (city.school_a2, "placed")
    draw_state = (await client.get(f"/admission/seasons/{season_id}/draw")).json()
    assert [item["round"] for item in draw_state["rounds"]] == [1, 2]
    assert draw_state["rounds"][1]["moved"] == 2 and draw_state["rounds"][1]["declined"] == [ids["陈伟"]]

    wang = city.token(add_parent(city, WANG), PARENT_SCOPES)
    accepted = await client.post(f"/admission/applications/{ids['王建国']}/accept", headers=wang)
    assert accepted.status_code == 200 and accepted.json()["offer"] == "accepted"
    nothing_to_accept = await client.post(f"/admission/applications/{ids['黄斌']}/accept",
                                          headers=city.token(add_parent(city, HUANG), PARENT_SCOPES))  # fmt: skip
    assert nothing_to_accept.status_code == 409

    export = await client.get(f"/admission/seasons/{season_id}/results.csv", headers=admin)
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert {row["儿童姓名"] for row in rows} == {"王子轩", "陈思涵", "黄诗琪", "林子墨", "张梓涵"}
    assert all("*" in row["身份证号"] for row in rows)
    school_export = await client.get(
        f"/admission/seasons/{season_id}/results.csv", params={"school_id": city.school_a1},
        headers=city.token("a1_admin", DISTRICT_SCOPES),
    )  # fmt: skip
    assert school_export.status_code == 200
    assert {row["录取学校"] for row in csv.DictReader(io.StringIO(school_export.content.decode("utf-8-sig")))} == {
        "春晓第一小学"
    }
    other_school = await client.get(
        f"/admission/seasons/{season_id}/results.csv", params={"school_id": city.school_a1},
        headers=city.token("b1_admin", DISTRICT_SCOPES),
    )  # fmt: skip
    assert other_school.status_code == 403


async def test_an_admitted_child_registered_by_the_school_is_enrolled_with_the_admission(
    client: httpx.AsyncClient, city: City
) -> None:
    season, ids = await _season_with_families(client, city)
    admin = city.token("district_a_admin", DISTRICT_SCOPES)
    with city.database.session() as session:
        close_applications(session, str(season["id"]))
    assert (await client.post(f"/admission/seasons/{season['id']}/draw/commit", headers=admin)).status_code == 200
    assert (
        await client.post(f"/admission/seasons/{season['id']}/draw", json=WITNESS, headers=admin)
    ).status_code == 200
    wang = city.token(add_parent(city, WANG), PARENT_SCOPES)
    assert (await client.post(f"/admission/applications/{ids['王建国']}/accept", headers=wang)).status_code == 200

    # The school registers its new pupils in identity; the student number is G + the resident ID number.
    admitted = city.add_person("wang-pupil", kind="student", name=WANG[2], org_id=city.school_a1,
                               student_number="G" + WANG[3], sex="male")  # fmt: skip
    transferred_in = city.add_person("other-pupil", kind="student", name="转学生", org_id=city.school_a1,
                                     student_number="G110105201503070012")  # fmt: skip
    with city.database.read_session() as session:
        rows = {
            row.student_id: (row.source, row.grade, row.admission_application_id)
            for row in session.exec(select(StudentEnrollment))
        }
        events = session.exec(select(OutboxEvent).where(OutboxEvent.event_type == "edu.enrollment.student.enrolled.v1"))
        enrolled = [json.loads(row.envelope)["data"] for row in events]
    assert rows[admitted.id] == ("admission", "01", ids["王建国"])
    assert rows[transferred_in.id] == ("directory", None, None)
    assert {item["student_id"] for item in enrolled} == {admitted.id, transferred_in.id}
