"""When the data-sharing platform times out or fails, the application is kept, the family sees "verification
pending", and the facts are verified once the platform answers, across a restart of the service too."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from enrollment.admission.models import Verification
from enrollment.config import EnrollmentSettings
from enrollment.dataexchange import DEMO_RECORDS_CSV, HttpDataExchange
from enrollment.dataexchange.simulator import create_simulator_app, load_records
from enrollment.main import create_app
from enrollment.testing import City, build_city
from kit.testing import TestIssuer

from .admission_support import PARENT_SCOPES, WANG, add_parent, apply, open_season, settled

APP_ID, SECRET = "edu-enrollment-test", "platform-shared-secret"


@pytest.fixture
def platform() -> FastAPI:
    """The simulated city platform over its signed HTTP protocol, starting out unavailable."""
    return create_simulator_app(load_records(DEMO_RECORDS_CSV), app_id=APP_ID, secret=SECRET, fail_next=10_000)


def _service(settings: EnrollmentSettings, issuer: TestIssuer, platform: FastAPI) -> FastAPI:
    application = create_app(settings.model_copy(update={"data_exchange": "http"}))
    issuer.trust(application)
    exchange = HttpDataExchange(
        "http://platform.test", app_id=APP_ID, secret=SECRET, timeout_seconds=0.5, retries=1, backoff_seconds=0.01,
        client=httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://platform.test"),
    )  # fmt: skip
    application.state.data_exchange = exchange
    application.state.verifier.exchange = exchange
    return application


@pytest.fixture
async def service(settings: EnrollmentSettings, issuer: TestIssuer, platform: FastAPI) -> AsyncIterator[FastAPI]:
    application = _service(settings, issuer, platform)
    async with application.router.lifespan_context(application):
        yield application
    await application.state.jwks_client.aclose()


async def test_a_platform_outage_leaves_the_application_pending_then_verified(
    service: FastAPI, issuer: TestIssuer, platform: FastAPI
) -> None:
    city: City = build_city(service.state.database, issuer)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service), base_url="http://enrollment.test"
    ) as client:
        season = await open_season(client, city)
        response = await apply(client, city, season["id"], WANG, [city.school_a1])
        assert response.status_code == 201, response.text
        application_id = response.json()["id"]
        headers = city.token(add_parent(city, WANG), PARENT_SCOPES)

        # The platform keeps failing: the attempts are counted, retried later, and the family is told it is pending.
        await _until_attempted(service, application_id)
        pending = (await client.get(f"/admission/applications/{application_id}", headers=headers)).json()
        assert pending["status"] == "verifying"
        assert "verification pending" in pending["status_message"].lower()
        assert all(item["status"] == "pending" for item in pending["verifications"])
        assert max(item["attempts"] for item in pending["verifications"]) >= 1

    # The platform recovers: the next retry verifies everything.
    platform.state.faults.fail_next = 0
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service), base_url="http://enrollment.test"
    ) as client:
        result = await settled(client, city, WANG, application_id, timeout=20)
    assert result["status"] == "verified"
    assert {item["status"] for item in result["verifications"]} == {"verified", "not_found"}


async def test_pending_facts_survive_a_restart(
    settings: EnrollmentSettings, issuer: TestIssuer, platform: FastAPI
) -> None:
    first = _service(settings, issuer, platform)
    async with first.router.lifespan_context(first):
        city = build_city(first.state.database, issuer)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://e.test") as client:
            season = await open_season(client, city)
            application_id = (await apply(client, city, season["id"], WANG, [city.school_a1])).json()["id"]
            await _until_attempted(first, application_id)
    await first.state.jwks_client.aclose()

    platform.state.faults.fail_next = 0
    second = _service(settings, issuer, platform)
    async with second.router.lifespan_context(second):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://e.test") as client:
            result = await settled(client, city, WANG, application_id, timeout=20)
        assert result["status"] == "verified"
    await second.state.jwks_client.aclose()


async def _until_attempted(service: FastAPI, application_id: str) -> None:
    import asyncio

    for _ in range(200):
        with service.state.database.read_session() as session:
            rows = session.exec(select(Verification).where(Verification.application_id == application_id)).all()
            if rows and all(row.attempts >= 1 for row in rows):
                assert all(row.status == "pending" and row.last_error for row in rows)
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the verifier never tried the platform")
