"""A vendor's app reaches only the schools that installed it, within the scopes each school granted,
and each of its calls becomes a usage record on NATS."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import nats

from gateway.installations import service as installations
from kit.natsserver import NatsServer

from .conftest import GatewayFactory, RunningGateway

APP = {"client_id": "vendor-app-client", "app_id": "app-math-practice"}


def install(gw: RunningGateway, school_id: str, scopes: list[str]) -> None:
    with gw.state.database.session() as session:
        installations.install(
            session, client_id=APP["client_id"], app_id=APP["app_id"], school_id=school_id, scopes=scopes
        )
    asyncio.run(gw.proxy.installations.refresh())


def uninstall(gw: RunningGateway, school_id: str) -> None:
    with gw.state.database.session() as session:
        installations.uninstall(session, client_id=APP["client_id"], school_id=school_id)


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_app_reaches_a_school_that_installed_it_and_granted_the_scope(gateway: GatewayFactory) -> None:
    gw = gateway()
    install(gw, "school-a", ["roster.read"])
    headers = gw.bearer(scopes="roster.read", **APP)
    response = httpx.get(f"{gw.url}/api/standin/schools/school-a/roster", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["school_id"] == "school-a"
    assert response.json()["app_schools"] == "school-a"  # the service confines the app to the checked school


def test_an_app_is_refused_at_a_school_that_did_not_install_it(gateway: GatewayFactory) -> None:
    gw = gateway()
    install(gw, "school-a", ["roster.read"])
    headers = gw.bearer(scopes="roster.read", **APP)
    response = httpx.get(f"{gw.url}/api/standin/schools/school-b/roster", headers=headers, params={"lang": "x"})
    assert response.status_code == 403
    assert "school-b" in problem(response)["detail"]
    assert gw.stand_in.calls.get("roster", 0) == 0


def test_an_app_is_refused_a_scope_the_school_did_not_grant(gateway: GatewayFactory) -> None:
    gw = gateway()
    install(gw, "school-a", ["org.read"])
    headers = gw.bearer(scopes="roster.read org.read", **APP)
    response = httpx.get(f"{gw.url}/api/standin/schools/school-a/roster", headers=headers)
    assert response.status_code == 403
    assert problem(response)["missing_scopes"] == ["roster.read"]


def test_a_list_across_schools_names_only_the_schools_that_granted_the_scope(gateway: GatewayFactory) -> None:
    gw = gateway()
    install(gw, "school-b", ["roster.read", "org.read"])
    install(gw, "school-a", ["roster.read"])
    install(gw, "school-c", ["org.read"])
    headers = gw.bearer(scopes="roster.read", **APP)
    response = httpx.get(f"{gw.url}/api/standin/rosters", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["app_schools"] == "school-a,school-b"
    # A client cannot name schools itself: the header it sends is dropped and replaced.
    spoofed = httpx.get(f"{gw.url}/api/standin/rosters", headers={**headers, "X-Edu-App-Schools": "school-c"})
    assert spoofed.json()["app_schools"] == "school-a,school-b"
    # The platform's own clients are confined by their roles in the service, not by installations.
    portal = httpx.get(f"{gw.url}/api/standin/rosters", headers=gw.bearer(scopes="roster.read"))
    assert portal.json()["app_schools"] is None


def test_a_list_across_schools_is_refused_to_an_app_no_school_granted(gateway: GatewayFactory) -> None:
    gw = gateway()
    install(gw, "school-c", ["org.read"])
    response = httpx.get(f"{gw.url}/api/standin/rosters", headers=gw.bearer(scopes="roster.read", **APP))
    assert response.status_code == 403
    assert problem(response)["missing_scopes"] == ["roster.read"]
    assert gw.stand_in.calls.get("rosters", 0) == 0


def test_a_school_found_in_the_query_must_be_named_once(gateway: GatewayFactory) -> None:
    gw = gateway()
    install(gw, "school-a", ["roster.read"])
    headers = gw.bearer(scopes="roster.read", **APP)
    allowed = httpx.get(f"{gw.url}/api/standin/roster?school_id=school-a", headers=headers)
    assert allowed.status_code == 200
    smuggled = httpx.get(f"{gw.url}/api/standin/roster?school_id=school-a&school_id=school-b", headers=headers)
    assert smuggled.status_code == 400
    assert "once" in problem(smuggled)["detail"]
    missing = httpx.get(f"{gw.url}/api/standin/roster", headers=headers)
    assert missing.status_code == 400


def test_uninstalling_stops_the_app_at_once_after_the_refresh(gateway: GatewayFactory) -> None:
    gw = gateway()
    install(gw, "school-a", ["roster.read"])
    headers = gw.bearer(scopes="roster.read", **APP)
    assert httpx.get(f"{gw.url}/api/standin/schools/school-a/roster", headers=headers).status_code == 200
    uninstall(gw, "school-a")
    deadline = time.monotonic() + 5
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = httpx.get(f"{gw.url}/api/standin/schools/school-a/roster", headers=headers).status_code
        time.sleep(0.1)
    assert status == 403


def test_an_app_cannot_call_platform_only_routes_even_with_the_scope(gateway: GatewayFactory) -> None:
    gw = gateway()
    response = httpx.get(f"{gw.url}/api/standin/platform-only", headers=gw.bearer(scopes="org.read", **APP))
    assert response.status_code == 403
    platform = httpx.get(f"{gw.url}/api/standin/platform-only", headers=gw.bearer(scopes="org.read"))
    assert platform.status_code == 200


def test_an_open_route_needs_no_installation(gateway: GatewayFactory) -> None:
    gw = gateway()
    response = httpx.get(f"{gw.url}/api/standin/things/t1", headers=gw.bearer(scopes="org.read", **APP))
    assert response.status_code == 200


async def _usage_records(nats_url: str, expected: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    client = await nats.connect(nats_url)
    try:
        jetstream = client.jetstream()
        subscription = await jetstream.pull_subscribe("edu.gateway.>", stream="EDU_GATEWAY")
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            try:
                messages = await subscription.fetch(10, timeout=0.5)
            except TimeoutError:
                continue
            for message in messages:
                envelope = json.loads(message.data)
                assert envelope["type"] == "edu.gateway.api_usage.recorded.v1"
                records.extend(envelope["data"]["records"])
                await message.ack()
        return records
    finally:
        await client.close()


def test_each_app_call_becomes_one_usage_record(gateway: GatewayFactory, nats_server: NatsServer) -> None:
    gw = gateway()
    install(gw, "school-a", ["roster.read"])
    headers = gw.bearer(scopes="roster.read", **APP)
    for _ in range(3):
        assert httpx.get(f"{gw.url}/api/standin/schools/school-a/roster", headers=headers).status_code == 200
    refused = httpx.get(f"{gw.url}/api/standin/schools/school-b/roster", headers=headers)
    assert refused.status_code == 403
    # A first-party call is no app's usage.
    assert httpx.get(f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read")).status_code == 200

    records = asyncio.run(_usage_records(nats_server.url, expected=4))
    assert len(records) == 4
    assert len({record["id"] for record in records}) == 4
    assert sorted(record["status"] for record in records) == [200, 200, 200, 403]
    served = [record for record in records if record["status"] == 200]
    for record in served:
        assert record["app_id"] == APP["app_id"]
        assert record["client_id"] == APP["client_id"]
        assert record["school_id"] == "school-a"
        assert record["route"] == "/api/standin/schools/{school_id}/roster"
        assert record["method"] == "GET"
        assert record["response_bytes"] > 0
        assert record["latency_ms"] > 0
    assert {record["school_id"] for record in records if record["status"] == 403} == {"school-b"}
