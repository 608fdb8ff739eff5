"""Bad input and failing services: every refusal is a clear problem+json, nothing internal leaks,
and one broken route or client costs the other routes nothing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey

from .conftest import GatewayFactory, RunningGateway
from .stand_in import mint

PROBLEM_FIELDS = ("type", "title", "status", "detail")


def assert_problem(
    status: int, headers: httpx.Headers | dict[str, str], body: bytes, expected: int, *, title: str | None = None
) -> dict[str, Any]:
    """The response is a problem+json of ``expected`` status that gives nothing internal away."""
    assert status == expected, body[:500]
    assert headers["content-type"] == "application/problem+json", body[:500]
    problem: dict[str, Any] = json.loads(body)
    for field in PROBLEM_FIELDS:
        assert problem.get(field), f"problem without {field!r}: {problem}"
    assert problem["status"] == expected
    if title is not None:
        assert problem["title"] == title
    text = body.decode()
    for leak in ("Traceback", 'File "', "127.0.0.1", "localhost", "uvicorn", "httpx", "httpcore"):
        assert leak not in text, f"{leak!r} leaked into {text}"
    return problem


def problem_of(response: httpx.Response, expected: int, *, title: str | None = None) -> dict[str, Any]:
    return assert_problem(response.status_code, response.headers, response.content, expected, title=title)


def assert_no_address(response: httpx.Response, port: int) -> None:
    """Neither the body nor any header names the service's address."""
    shown = response.text + "".join(f"{name}: {value}\n" for name, value in response.headers.items())
    assert "127.0.0.1" not in shown
    assert str(port) not in shown


# ------------------------------------------------------------------------------------------ raw HTTP


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def read_response(sock: socket.socket) -> RawResponse:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the connection closed before a full response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body[:length])


@contextlib.contextmanager
def raw_connection(base_url: str, timeout: float = 5.0) -> Iterator[socket.socket]:
    """A plain TCP connection to the gateway, for requests no well-behaved HTTP client would send."""
    address = urlsplit(base_url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        yield sock


def raw_request(base_url: str, head: str, body: bytes = b"") -> RawResponse:
    with raw_connection(base_url) as sock:
        sock.sendall(head.encode("latin-1") + body)
        return read_response(sock)


def request_head(gw: RunningGateway, method: str, target: str, *extra: str, scopes: str = "org.read") -> str:
    host = urlsplit(gw.url).netloc
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {gw.token(scopes=scopes)}"]
    return "\r\n".join([*lines, *extra, "", ""])


# ---------------------------------------------------------------------------------- broken services


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def garbage_service() -> Iterator[str]:
    """A TCP server that answers every request with bytes that are not HTTP, then hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
                    connection.sendall(b"NOT HTTP\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        thread.join(timeout=2)
        listener.close()


async def test_a_hanging_service_answers_504_within_the_route_timeout_while_other_routes_answer(
    gateway: GatewayFactory,
) -> None:
    gw = gateway()
    headers = gw.bearer(scopes="org.read")
    async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=10) as client:

        async def timed(path: str) -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            response = await client.get(path)
            return response, time.perf_counter() - started

        hanging = asyncio.create_task(timed("/api/standin/slow"))
        await asyncio.sleep(0.1)  # the slow call is now waiting on the service
        other, other_elapsed = await timed("/api/standin/things/1")
        assert not hanging.done()
        slow, slow_elapsed = await hanging

    assert other.status_code == 200
    assert other_elapsed < 0.3
    problem = problem_of(slow, 504, title="上游服务响应超时")
    assert "0.5 s" in problem["detail"]
    # The route gives the service 0.5 s; the caller waits about that, not a multiple of it.
    assert 0.45 <= slow_elapsed < 1.0, f"answered after {slow_elapsed:.2f} s"


def test_a_service_that_is_down_answers_503_with_retry_after_and_no_address(
    gateway: GatewayFactory, stand_in: tuple[Any, str]
) -> None:
    port = closed_port()
    gw = gateway(upstreams={"standin": f"http://127.0.0.1:{port}", "identity": stand_in[1]})

    response = httpx.get(f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read"))

    problem_of(response, 503, title="服务暂时不可用")
    assert int(response.headers["retry-after"]) >= 1
    assert_no_address(response, port)


def test_the_breaker_fails_fast_after_repeated_failures_and_closes_after_a_successful_trial(
    gateway: GatewayFactory,
) -> None:
    gw = gateway(breaker_failure_threshold=3, breaker_reset_seconds=1.0, retries=0)
    headers = gw.bearer(scopes="org.read")
    gw.stand_in.flaky_failures = 100

    failures = [httpx.get(f"{gw.url}/api/standin/flaky", headers=headers) for _ in range(3)]
    assert [response.status_code for response in failures] == [503, 503, 503]
    assert gw.stand_in.calls["flaky"] == 3

    started = time.perf_counter()
    refused = httpx.get(f"{gw.url}/api/standin/flaky", headers=headers)
    other_route = httpx.get(f"{gw.url}/api/standin/things/1", headers=headers)
    assert time.perf_counter() - started < 0.5
    problem_of(refused, 503, title="服务暂时不可用")
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    problem_of(other_route, 503)  # the breaker guards the service, whatever its route
    assert gw.stand_in.calls["flaky"] == 3
    assert gw.stand_in.calls.get("things", 0) == 0

    gw.stand_in.flaky_failures = 0
    time.sleep(1.1)
    trial = httpx.get(f"{gw.url}/api/standin/flaky", headers=headers)
    after = httpx.get(f"{gw.url}/api/standin/things/1", headers=headers)
    assert trial.status_code == 200
    assert after.status_code == 200
    assert gw.stand_in.calls["flaky"] == 4
    assert gw.stand_in.calls["things"] == 1


def test_a_get_that_fails_once_is_retried_and_succeeds(gateway: GatewayFactory) -> None:
    gw = gateway()
    gw.stand_in.flaky_failures = 1

    response = httpx.get(f"{gw.url}/api/standin/flaky", headers=gw.bearer(scopes="org.read"))

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert gw.stand_in.calls["flaky"] == 2


def test_a_post_that_fails_is_not_retried_and_the_client_sees_the_service_answer(gateway: GatewayFactory) -> None:
    gw = gateway()
    gw.stand_in.flaky_failures = 1
    headers = gw.bearer(scopes="org.write")

    failed = httpx.post(f"{gw.url}/api/standin/flaky", headers=headers, json={"n": 1})
    assert gw.stand_in.calls["flaky_write"] == 1
    again = httpx.post(f"{gw.url}/api/standin/flaky", headers=headers, json={"n": 1})

    assert failed.status_code == 503
    assert failed.json() == {"detail": "busy"}
    assert again.status_code == 200
    assert gw.stand_in.calls["flaky_write"] == 2


def test_a_service_that_answers_garbage_gives_502(
    gateway: GatewayFactory, stand_in: tuple[Any, str], garbage_service: str
) -> None:
    gw = gateway(upstreams={"standin": garbage_service, "identity": stand_in[1]})

    response = httpx.get(f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read"))

    problem_of(response, 502, title="上游服务响应异常")
    assert_no_address(response, urlsplit(garbage_service).port or 0)


def test_a_streamed_response_arrives_complete_and_as_it_is_produced(gateway: GatewayFactory) -> None:
    gw = gateway()
    arrivals: list[tuple[float, bytes]] = []
    started = time.perf_counter()
    with httpx.stream("GET", f"{gw.url}/api/standin/stream", headers=gw.bearer(scopes="org.read")) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            arrivals.append((time.perf_counter() - started, chunk))

    assert b"".join(chunk for _, chunk in arrivals) == b"".join(f"chunk {i}\n".encode() for i in range(5))
    # The service spends 0.2 s between its first and last chunk; a buffering proxy would deliver them together.
    assert arrivals[-1][0] - arrivals[0][0] > 0.1


# ------------------------------------------------------------------------------------ request bodies


def test_a_body_declared_over_the_route_limit_is_refused_before_it_is_sent(gateway: GatewayFactory) -> None:
    gw = gateway()
    head = request_head(gw, "POST", "/api/standin/upload", "Content-Length: 200000", scopes="org.write")

    response = raw_request(gw.url, head)  # the body itself is never sent: the answer must not wait for it

    problem = assert_problem(response.status, response.headers, response.body, 413, title="上传内容过大")
    assert "100000" in problem["detail"]
    assert gw.stand_in.calls.get("upload", 0) == 0


def test_a_body_at_the_route_limit_reaches_the_service(gateway: GatewayFactory) -> None:
    gw = gateway()

    response = httpx.post(f"{gw.url}/api/standin/upload", headers=gw.bearer(scopes="org.write"), content=b"x" * 100_000)

    assert response.status_code == 200
    assert response.json() == {"received": 100_000}


def test_a_chunked_body_over_the_route_limit_is_refused(gateway: GatewayFactory) -> None:
    gw = gateway()
    head = request_head(gw, "POST", "/api/standin/upload", "Transfer-Encoding: chunked", scopes="org.write")
    chunk = b"x" * 10_000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(11))  # 110 kB, and still not finished

    response = raw_request(gw.url, head, body)

    assert_problem(response.status, response.headers, response.body, 413, title="上传内容过大")


def test_a_client_that_stops_sending_its_body_gets_408_and_others_are_served_meanwhile(
    gateway: GatewayFactory,
) -> None:
    gw = gateway(client_body_timeout_seconds=0.5)
    head = request_head(
        gw, "POST", "/api/standin/things", "Content-Type: application/json", "Content-Length: 100", scopes="org.write"
    )
    with raw_connection(gw.url) as stalled:
        started = time.perf_counter()
        stalled.sendall(head.encode() + b'{"name": ')

        other = httpx.get(f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read"))
        assert other.status_code == 200

        response = read_response(stalled)
        elapsed = time.perf_counter() - started

    assert_problem(response.status, response.headers, response.body, 408, title="请求发送超时")
    assert 0.45 <= elapsed < 2.0


# ------------------------------------------------------------------------------------------- headers


def test_huge_headers_are_refused_and_the_gateway_serves_the_next_request(gateway: GatewayFactory) -> None:
    gw = gateway()
    headers = gw.bearer(scopes="org.read") | {f"X-Filler-{index}": "a" * 1000 for index in range(40)}

    refused = httpx.get(f"{gw.url}/api/standin/things/1", headers=headers)
    served = httpx.get(f"{gw.url}/api/standin/things/2", headers=gw.bearer(scopes="org.read"))

    assert refused.status_code in (400, 431)
    if refused.status_code == 431:  # refused by the gateway rather than by the HTTP server beneath it
        problem_of(refused, 431)
    assert gw.stand_in.calls["things"] == 1
    assert served.status_code == 200
    assert served.json()["thing_id"] == "2"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _unsigned(gw: RunningGateway) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": gw.key.kid}
    claims = _claims_of(gw.token(scopes="org.read"))
    return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}."


def _hmac_with_public_key(gw: RunningGateway) -> str:
    """The classic confusion attack: HS256 'signed' with the RSA public key anyone can fetch."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": gw.key.kid}
    claims = _claims_of(gw.token(scopes="org.read"))
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    public_pem = gw.key.as_pem(private=False)
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def _other_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid})


GARBAGE_AUTHORIZATIONS: dict[str, Callable[[RunningGateway], str | None]] = {
    "no header": lambda gw: None,
    "not a JWT": lambda gw: "Bearer abc",
    "20 kB token": lambda gw: "Bearer " + "a" * 20_000,
    "Basic scheme": lambda gw: "Basic xyz",
    "other key, same kid": lambda gw: "Bearer " + mint(_other_key(gw.key.kid or ""), scopes="org.read"),
    "other key, unknown kid": lambda gw: "Bearer " + mint(_other_key("stranger"), scopes="org.read"),
    "expired": lambda gw: "Bearer " + gw.token(scopes="org.read", expires_in=-120),
    "wrong audience": lambda gw: "Bearer " + gw.token(scopes="org.read", audience="someone-else"),
    "wrong issuer": lambda gw: "Bearer " + gw.token(scopes="org.read", issuer="https://evil.example"),
    "alg none": lambda gw: "Bearer " + _unsigned(gw),
    "HS256 with the public key": lambda gw: "Bearer " + _hmac_with_public_key(gw),
}


def test_garbage_tokens_get_401_problems_with_a_bearer_challenge(gateway: GatewayFactory) -> None:
    gw = gateway()
    for name, make in GARBAGE_AUTHORIZATIONS.items():
        authorization = make(gw)
        headers = {} if authorization is None else {"Authorization": authorization}

        response = httpx.get(f"{gw.url}/api/standin/things/1", headers=headers)

        assert response.status_code == 401, f"{name}: {response.status_code} {response.text}"
        problem_of(response, 401, title="未登录或令牌无效")
        assert response.headers["www-authenticate"].startswith("Bearer "), name
        assert authorization is None or authorization[7:100] not in response.text, f"{name}: the token echoed back"
    assert gw.stand_in.calls.get("things", 0) == 0


def test_spoofed_identity_and_forwarding_headers_never_reach_the_service(gateway: GatewayFactory) -> None:
    gw = gateway()
    spoofed = {
        "X-Principal-Id": "admin",
        "X-Principal-Roles": "platform-admin",
        "X-Edu-App-Schools": "school-a school-b",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "203.0.113.9",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "only for the next hop",
    }

    response = httpx.get(f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read") | spoofed)

    assert response.status_code == 200
    seen: dict[str, str] = response.json()["headers"]
    assert not [name for name in seen if name.startswith(("x-principal-", "x-edu-"))], seen
    assert "x-real-ip" not in seen
    assert "x-secret-hop" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-host"] == urlsplit(gw.url).netloc
    assert "203.0.113.9" not in json.dumps(seen)
    assert "evil.example" not in json.dumps(seen)


# ---------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    "target",
    [
        "/api/standin/things/..",
        "/api/standin/things/.",
        "/api/standin/things/%2e%2e",
        "/api/standin/things/a%2Fb",
        "/api/standin/things/..%2f..%2fplatform-only",
        "/api/standin/things/a%5Cb",
    ],
)
def test_a_path_segment_that_could_climb_out_of_the_route_is_refused(gateway: GatewayFactory, target: str) -> None:
    gw = gateway()

    response = raw_request(gw.url, request_head(gw, "GET", target, "Connection: close"))

    assert_problem(response.status, response.headers, response.body, 400, title="请求格式错误")
    assert gw.stand_in.calls.get("things", 0) == 0


def test_an_unknown_route_or_service_is_a_404_problem(gateway: GatewayFactory) -> None:
    gw = gateway()
    headers = gw.bearer(scopes="org.read")

    for path in ("/api/standin/nowhere", "/api/standin/things/1/more", "/api/nosuchservice/things/1"):
        response = httpx.get(f"{gw.url}{path}", headers=headers)
        problem = problem_of(response, 404, title="资源不存在")
        assert problem["instance"] == path


def test_a_wrong_method_is_a_405_problem_naming_the_allowed_ones(gateway: GatewayFactory) -> None:
    gw = gateway()

    deleted = httpx.delete(f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.write"))
    put = httpx.put(f"{gw.url}/api/standin/flaky", headers=gw.bearer(scopes="org.write"), json={})

    problem_of(deleted, 405, title="不支持此请求方法")
    assert deleted.headers["allow"] == "GET"
    problem_of(put, 405)
    assert put.headers["allow"] == "GET, POST"


def test_problems_are_in_chinese_by_default_and_in_english_on_request(gateway: GatewayFactory) -> None:
    gw = gateway()
    url = f"{gw.url}/api/standin/nowhere"

    chinese = httpx.get(url)
    english = httpx.get(url, headers={"Accept-Language": "en-GB,en;q=0.9"})
    unauthenticated = httpx.get(f"{gw.url}/api/standin/things/1", headers={"Accept-Language": "en"})

    problem_of(chinese, 404, title="资源不存在")
    assert chinese.headers["content-language"] == "zh-CN"
    problem_of(english, 404, title="Not found")
    assert english.headers["content-language"] == "en"
    problem_of(unauthenticated, 401, title="Authentication required")
