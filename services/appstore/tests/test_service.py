"""The app store starts, migrates and follows the directory."""

from __future__ import annotations

import httpx

from appstore.roster.models import RosterOrganisation, RosterPerson
from kit.testing import TestCity


async def test_health_and_directory_projection(client: httpx.AsyncClient, city: TestCity) -> None:
    assert (await client.get("/healthz")).status_code == 200
    with city.database.read_session() as session:
        school = session.get(RosterOrganisation, city.school_a1)
        developer = session.get(RosterPerson, city.people["developer"].id)
        assert school is not None and school.path == city.paths[city.school_a1]
        assert developer is not None and developer.kind == "staff"
