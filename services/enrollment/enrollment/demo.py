"""Demo data for `make run`: an open admission season in the demo city's first district.

The season's attendance zones cover the addresses of the simulated data-sharing platform's demo families
(dataexchange/demo_records.csv), so an application for one of those children is verified end to end.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from contracts.auth import AccessTokenClaims, RoleClaim
from enrollment.admission import service as admission
from enrollment.admission.models import AdmissionSeason
from enrollment.admission.schemas import PriorityCategory, SeasonCreate, SeasonSchoolIn, ZoneIn
from enrollment.deps import Caller
from enrollment.directory.models import DirectoryOrganisation
from kit.auth import Principal
from kit.db import Database

CATEGORIES = [
    PriorityCategory(code="household_property", name_zh="户籍与房产均在学区", name_en="Household and property in zone",
                     requires=["household_in_zone", "property_in_zone"], tie_break="household_registered_on"),
    PriorityCategory(code="household", name_zh="户籍在学区", name_en="Household in zone",
                     requires=["household_in_zone"], tie_break="household_registered_on"),
    PriorityCategory(code="property", name_zh="房产在学区", name_en="Property in zone", requires=["property_in_zone"],
                     tie_break="property_registered_on"),
    PriorityCategory(code="migrant", name_zh="随迁子女（居住证且社保满一年）",
                     name_en="Migrant children: residence permit and 12 months of social insurance",
                     requires=["residence_permit_in_zone", "social_insurance"], social_insurance_months=12,
                     tie_break="social_insurance_since"),
]  # fmt: skip
ZONE_PREFIXES = ["滨江区春晓路", "滨江区江南大道", "滨江区长河路", "滨江区西兴路", "滨江区闻涛路", "滨江区浦沿路"]


def system_caller(city: DirectoryOrganisation) -> Caller:
    """The demo loader acts as a city administrator (it is an operator's command, not a request)."""
    now = int(time.time())
    claims = AccessTokenClaims(
        iss="enrollment-cli", sub="enrollment-demo-loader", aud="edu-platform", exp=now + 300, iat=now,
        jti=uuid.uuid4().hex, client_id="enrollment-cli", scope="enrollment.read enrollment.write",
        roles=[RoleClaim(role="city_admin", org_id=city.id, org_path=city.path)],
    )  # fmt: skip
    return Caller(principal=Principal.from_claims(claims), source_ip=None, request_id=None, app_schools=None)


def load(database: Database, *, wait_seconds: float = 60.0) -> str | None:
    """Create and open the demo season once; returns its id, or None when there was one already."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with database.session() as session:
            if session.exec(select(AdmissionSeason.id)).first() is not None:
                return None
            district, schools = _first_district(session)
            if district is not None and schools:
                return _create(session, district, schools)
        if time.monotonic() > deadline:
            raise TimeoutError("the directory has no district with a primary school yet (is identity running?)")
        time.sleep(0.5)


def _first_district(session: Session) -> tuple[DirectoryOrganisation | None, list[DirectoryOrganisation]]:
    districts = session.exec(
        select(DirectoryOrganisation)
        .where(DirectoryOrganisation.kind == "district")
        .order_by(col(DirectoryOrganisation.path))
    ).all()
    for district in districts:
        schools = session.exec(
            select(DirectoryOrganisation).where(
                DirectoryOrganisation.kind == "school",
                col(DirectoryOrganisation.path).startswith(district.path + "/"),
                col(DirectoryOrganisation.school_type).in_(("primary", "nine_year", "twelve_year")),
            )
        ).all()
        if schools:
            return district, list(schools)
    return None, []


def _create(session: Session, district: DirectoryOrganisation, schools: list[DirectoryOrganisation]) -> str:
    city = session.get(DirectoryOrganisation, district.parent_id) if district.parent_id else district
    assert city is not None
    caller = system_caller(city)
    now = datetime.now(UTC)
    school_ids = [school.id for school in schools]
    body = SeasonCreate(
        district_id=district.id, title=f"{now.year}年{district.name}小学一年级招生（演示）", grade="01",
        school_year=now.year, opens_at=datetime(now.year, 5, 1, 1, tzinfo=UTC), closes_at=now + timedelta(days=30),
        birth_from=datetime(now.year - 7, 9, 1).date(), birth_to=datetime(now.year - 6, 8, 31).date(), max_choices=3,
        categories=CATEGORIES,
        schools=[SeasonSchoolIn(school_id=school_id, seats=60) for school_id in school_ids],
        zones=[ZoneIn(name="演示学区（多校划片）", school_ids=school_ids, address_prefixes=ZONE_PREFIXES)],
    )  # fmt: skip
    season = admission.create_season(session, caller, body)
    admission.open_season(session, caller, season.id)
    return season.id
