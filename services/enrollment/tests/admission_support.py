"""A district's admission season and the demo families of the simulated data-sharing platform, for the tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session

from enrollment.admission.models import AdmissionSeason
from enrollment.testing import City

PARENT_SCOPES = "admission.apply"
DISTRICT_SCOPES = "enrollment.read enrollment.write"

#: Families of dataexchange/demo_records.csv: (applicant name, applicant ID, child name, child ID, household number)
WANG = ("王建国", "330106198803150237", "王子轩", "330108201910120217", "108300151")  # household + property, zone 1
CHEN = (
    "陈伟",
    "33010219871102027X",
    "陈思涵",
    "330106202002030269",
    "108302277",
)  # household + property 2022, zone 1
LIN = ("林峰", "330108198510100618", "林子墨", "330108201909280598", "108401028")  # household only, zone 2
HUANG = ("黄斌", "33038119860525065X", "黄诗琪", "330381202001080644", "-")  # property only (春晓路), zone 1
ZHANG = ("张磊", "411303198806180776", "张梓涵", "411303201912020762", "-")  # migrant: permit + 36 months, zone 3
HE = ("何军", "33010219840404049X", "何梓萱", "330102201911300481", "102400733")  # 上城区: outside every zone

ADDRESSES = {
    WANG: "滨江区春晓路1号春晓花园3幢2单元501室",
    CHEN: "滨江区江南大道88号江南春城5幢1单元302室",
    LIN: "滨江区西兴路2333号星耀城2幢1单元1506室",
    HUANG: "滨江区春晓路1号春晓花园5幢1单元1201室",
    ZHANG: "滨江区浦沿路88号浦沿新村21幢402室",
    HE: "上城区望江路300号望江家园西园4幢2单元402室",
}

CATEGORIES = [
    {"code": "household_property", "name_zh": "户籍与房产均在学区",
     "requires": ["household_in_zone", "property_in_zone"], "tie_break": "household_registered_on"},
    {"code": "household", "name_zh": "户籍在学区", "requires": ["household_in_zone"],
     "tie_break": "household_registered_on"},
    {"code": "property", "name_zh": "房产在学区", "requires": ["property_in_zone"],
     "tie_break": "property_registered_on"},
    {"code": "migrant", "name_zh": "随迁子女（居住证且社保满一年）",
     "requires": ["residence_permit_in_zone", "social_insurance"], "social_insurance_months": 12,
     "tie_break": "social_insurance_since"},
]  # fmt: skip


def season_body(city: City, *, seats_a1: int = 2, seats_a2: int = 2, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "district_id": city.district_a,
        "title": "2026年春晓区小学一年级招生",
        "grade": "01",
        "school_year": 2026,
        # Opened in spring: residence permits are judged valid on the opening day.
        "opens_at": "2026-05-01T09:00:00+08:00",
        "closes_at": (now + timedelta(days=1)).isoformat(),
        "birth_from": "2019-09-01",
        "birth_to": "2020-08-31",
        "max_choices": 2,
        "categories": CATEGORIES,
        "schools": [
            {"school_id": city.school_a1, "seats": seats_a1},
            {"school_id": city.school_a2, "seats": seats_a2},
        ],
        "zones": [
            {"name": "春晓学区", "school_ids": [city.school_a1],
             "address_prefixes": ["滨江区春晓路", "滨江区江南大道"]},
            {"name": "长河西兴学区（多校划片）", "school_ids": [city.school_a1, city.school_a2],
             "address_prefixes": ["滨江区西兴路", "滨江区闻涛路"]},
            {"name": "浦沿学区", "school_ids": [city.school_a2], "address_prefixes": ["滨江区浦沿路"]},
        ],
    }  # fmt: skip
    body.update(overrides)
    return body


async def open_season(client: httpx.AsyncClient, city: City, **overrides: Any) -> dict[str, Any]:
    headers = city.token("district_a_admin", DISTRICT_SCOPES)
    created = await client.post("/admission/seasons", json=season_body(city, **overrides), headers=headers)
    assert created.status_code == 201, created.text
    opened = await client.post(f"/admission/seasons/{created.json()['id']}/open", headers=headers)
    assert opened.status_code == 200, opened.text
    season: dict[str, Any] = opened.json()
    return season


def add_parent(city: City, family: tuple[str, str, str, str, str]) -> str:
    key = f"parent-{family[1]}"
    if key not in city.people:
        city.add_person(key, kind="guardian", name=family[0], org_id=city.city_id, role="parent")
    return key


def application_body(city: City, family: tuple[str, str, str, str, str], choices: list[str]) -> dict[str, Any]:
    return {
        "child_name": family[2],
        "child_id_number": family[3],
        "household_number": family[4],
        "address": ADDRESSES[family],
        "applicant_id_number": family[1],
        "relationship": "father",
        "choices": choices,
    }


async def apply(
    client: httpx.AsyncClient, city: City, season_id: str, family: tuple[str, str, str, str, str], choices: list[str]
) -> httpx.Response:
    key = add_parent(city, family)
    return await client.post(
        f"/admission/seasons/{season_id}/applications",
        json=application_body(city, family, choices),
        headers=city.token(key, PARENT_SCOPES),
    )


async def settled(
    client: httpx.AsyncClient, city: City, family: tuple[str, str, str, str, str], application_id: str,
    timeout: float = 15.0,
) -> dict[str, Any]:  # fmt: skip
    """The application once the background verification has answered every fact."""
    headers = city.token(add_parent(city, family), PARENT_SCOPES)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get(f"/admission/applications/{application_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "verifying":
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still verifying after {timeout} s: {body}")
        await asyncio.sleep(0.05)


def close_applications(session: Session, season_id: str) -> None:
    """Move the deadline into the past, as the calendar would."""
    season = session.get(AdmissionSeason, season_id)
    assert season is not None
    season.closes_at = datetime.now(UTC) - timedelta(minutes=1)
    session.add(season)
