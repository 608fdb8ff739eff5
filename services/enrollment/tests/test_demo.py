"""`make run` opens a demo admission season once, in which the simulated platform's demo families can apply."""

from __future__ import annotations

import httpx

from enrollment import demo
from enrollment.testing import City

from .admission_support import WANG, apply, settled


async def test_the_demo_season_is_opened_once_and_takes_a_demo_family(client: httpx.AsyncClient, city: City) -> None:
    season_id = demo.load(city.database, wait_seconds=1)
    assert season_id is not None
    assert demo.load(city.database, wait_seconds=1) is None
    season = (await client.get(f"/admission/seasons/{season_id}", headers=city.token("city_admin"))).json()
    assert season["accepting_applications"] and season["status"] == "open"
    response = await apply(client, city, season_id, WANG, [season["schools"][0]["school_id"]])
    assert response.status_code == 201, response.text
    result = await settled(client, city, WANG, response.json()["id"])
    assert (result["status"], result["category"]) == ("verified", "household_property")
