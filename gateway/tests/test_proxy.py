"""Calls through the gateway reach the service with the right headers, and only with the right token."""

from __future__ import annotations

import time
import urllib.request

import httpx

from .conftest import GatewayFactory


def test_a_call_with_a_valid_token_reaches_the_service(gateway: GatewayFactory) -> None:
    gw = gateway()
    response = httpx.get(f"{gw.url}/api/standin/things/42?x=1", headers=gw.bearer(scopes="org.read"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["thing_id"] == "42"
    assert body["path"] == "/things/42"
    assert body["query"] == "x=1"
    assert response.headers["x-request-id"]


def test_request_id_and_trace_context_are_carried_to_the_service(gateway: GatewayFactory) -> None:
    gw = gateway()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    # urllib, not httpx: in this process httpx is instrumented and would replace the caller's traceparent.
    request = urllib.request.Request(  # noqa: S310 - a local test server
        f"{gw.url}/api/standin/things/1",
        headers={
            **gw.bearer(scopes="org.read"),
            "X-Request-Id": "req-from-client-1",
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
        },
    )
    with urllib.request.urlopen(request) as raw:  # noqa: S310 - a local test server
        response = httpx.Response(raw.status, headers=raw.headers.items(), content=raw.read())
    seen = response.json()["headers"]
    assert seen["x-request-id"] == "req-from-client-1" == response.headers["x-request-id"]
    version, forwarded_trace, parent, _flags = seen["traceparent"].split("-")
    assert (version, forwarded_trace) == ("00", trace_id)
    assert parent != "00f067aa0ba902b7"  # the gateway's own span is the service's parent
    assert seen["x-forwarded-for"] == "127.0.0.1"
    fresh = httpx.get(f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read"))
    assert len(fresh.headers["x-request-id"]) == 32
    assert fresh.json()["headers"]["x-request-id"] == fresh.headers["x-request-id"]


def test_a_token_without_the_routes_scope_is_refused_before_the_service(gateway: GatewayFactory) -> None:
    gw = gateway()
    response = httpx.post(f"{gw.url}/api/standin/things", json={"a": 1}, headers=gw.bearer(scopes="org.read"))
    assert response.status_code == 403
    body = response.json()
    assert body["required_scope"] == "org.write"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    allowed = httpx.post(f"{gw.url}/api/standin/things", json={"a": 1}, headers=gw.bearer(scopes="org.write"))
    assert allowed.status_code == 201
    assert allowed.json() == {"created": {"a": 1}}


def test_api_responses_carry_security_headers_and_no_server_software(gateway: GatewayFactory) -> None:
    gw = gateway()
    response = httpx.get(f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read"))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "server" not in response.headers
    assert response.headers.get_list("date") and len(response.headers.get_list("date")) == 1


def test_a_route_anyone_may_call_needs_no_token(gateway: GatewayFactory) -> None:
    gw = gateway()
    assert httpx.get(f"{gw.url}/api/standin/public").json() == {"public": True}


def test_a_routes_rate_limit_answers_429_with_retry_after(gateway: GatewayFactory) -> None:
    gw = gateway()
    headers = gw.bearer(scopes="org.read", client_id="busy-client")
    statuses = [httpx.get(f"{gw.url}/api/standin/limited", headers=headers) for _ in range(4)]
    assert [response.status_code for response in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["ratelimit-limit"] == "3"
    refused = statuses[-1]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    other = httpx.get(f"{gw.url}/api/standin/limited", headers=gw.bearer(scopes="org.read", client_id="calm-client"))
    assert other.status_code == 200


def test_the_gateway_is_ready_once_it_follows_revocations(gateway: GatewayFactory) -> None:
    gw = gateway()
    deadline = time.monotonic() + 10
    response = httpx.get(f"{gw.url}/readyz")
    while response.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        response = httpx.get(f"{gw.url}/readyz")
    assert response.json()["checks"] == {"database": True, "nats": True, "revocations": True, "installations": True}
