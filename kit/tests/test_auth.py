"""Access tokens are verified for real: RSA/EC keys, a JWKS served over HTTP, signed tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

from contracts.auth import AccessTokenClaims, RoleClaim
from kit.auth import (
    CurrentPrincipal,
    JwksCache,
    Principal,
    TokenVerifier,
    authorize,
    require_scope,
)
from kit.errors import (
    PROBLEM_CONTENT_TYPE,
    Forbidden,
    InsufficientScope,
    ServiceUnavailable,
    Unauthenticated,
    install_problem_handlers,
)

ISSUER = "http://identity.test"
AUDIENCE = "edu-platform"


# ------------------------------------------------------------------------------------ JWKS over HTTP


class JwksServer:
    """A real HTTP server publishing a JWK Set that tests can rotate or break."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.status = 200
        self.hits = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits += 1
                    status = server.status
                    body = json.dumps({"keys": [key.as_dict(private=False) for key in server.keys]}).encode()
                if self.path != "/.well-known/jwks.json":
                    status, body = 404, b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._started = False

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/.well-known/jwks.json"

    def publish(self, *keys: Key) -> None:
        with self._lock:
            self.keys = list(keys)

    def start(self) -> None:
        self._thread.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})


@pytest.fixture(scope="module")
def rotated_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"})


@pytest.fixture
def jwks_server(rsa_key: RSAKey, ec_key: ECKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(rsa_key, ec_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def jwks(jwks_server: JwksServer) -> AsyncIterator[JwksCache]:
    cache = JwksCache(jwks_server.url, min_refresh_interval=30.0)
    try:
        yield cache
    finally:
        await cache.aclose()


@pytest.fixture
def verifier(jwks: JwksCache) -> TokenVerifier:
    return TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE)


def claims_for(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "person-1",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "school-portal",
        "scope": "people:read organisations:read",
        "roles": [{"role": "school_admin", "org_id": "s1", "org_path": "/c1/d1/s1"}],
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def sign(key: Key, *, alg: str = "RS256", typ: str | None = "at+jwt", kid: str | None = None, **claims: Any) -> str:
    header: dict[str, Any] = {"alg": alg, "kid": kid if kid is not None else key.kid}
    if typ is not None:
        header["typ"] = typ
    return jwt.encode(header, claims_for(**claims), key, algorithms=[alg], default_type=None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], secret: bytes | None) -> str:
    """A token assembled by hand, the way an attacker would (HS256 with a chosen secret, or none)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims_for()).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def rejected(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    assert caught.value.status == 401
    return caught.value.detail or ""


# -------------------------------------------------------------------------------------- verification


async def test_a_valid_token_becomes_a_principal(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, jti="token-1")
    principal = await verifier.verify(token)
    assert principal.subject == "person-1"
    assert principal.client_id == "school-portal"
    assert principal.token_id == "token-1"
    assert principal.scopes == frozenset({"people:read", "organisations:read"})
    assert principal.roles == (RoleClaim(role="school_admin", org_id="s1", org_path="/c1/d1/s1"),)
    assert principal.claims.iss == ISSUER
    assert principal.has_scope("people:read") and not principal.has_scope("people:write")


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
async def test_both_spellings_of_the_access_token_type_are_accepted(
    verifier: TokenVerifier, rsa_key: RSAKey, typ: str
) -> None:
    assert (await verifier.verify(sign(rsa_key, typ=typ))).subject == "person-1"


async def test_ec_and_pss_signatures_are_accepted(
    verifier: TokenVerifier, ec_key: ECKey, rotated_key: RSAKey, jwks_server: JwksServer, rsa_key: RSAKey
) -> None:
    assert (await verifier.verify(sign(ec_key, alg="ES256"))).subject == "person-1"
    jwks_server.publish(rsa_key, ec_key, rotated_key)
    await verifier.jwks.refresh()
    assert (await verifier.verify(sign(rotated_key, alg="PS256"))).subject == "person-1"


async def test_audience_may_be_a_list_containing_ours(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    principal = await verifier.verify(sign(rsa_key, aud=["gradebook", AUDIENCE]))
    assert principal.claims.aud == ["gradebook", AUDIENCE]


async def test_an_expired_token_is_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    now = int(time.time())
    detail = await rejected(verifier, sign(rsa_key, iat=now - 600, exp=now - 60))
    assert "expired" in detail


async def test_clock_skew_within_the_leeway_is_tolerated(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    now = int(time.time())
    assert await verifier.verify(sign(rsa_key, iat=now + 10, exp=now - 5, nbf=now + 10))


async def test_a_token_not_yet_valid_is_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    detail = await rejected(verifier, sign(rsa_key, nbf=int(time.time()) + 600))
    assert "not valid yet" in detail


async def test_a_token_from_another_issuer_is_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    detail = await rejected(verifier, sign(rsa_key, iss="http://evil.test"))
    assert "issued by 'http://evil.test'" in detail


@pytest.mark.parametrize("audience", ["gradebook", ["gradebook", "homework"]])
async def test_a_token_for_another_audience_is_rejected(
    verifier: TokenVerifier, rsa_key: RSAKey, audience: str | list[str]
) -> None:
    detail = await rejected(verifier, sign(rsa_key, aud=audience))
    assert "audience" in detail


@pytest.mark.parametrize("claim", ["sub", "client_id", "jti", "exp", "iat", "aud", "iss"])
async def test_required_claims_must_be_present(verifier: TokenVerifier, rsa_key: RSAKey, claim: str) -> None:
    detail = await rejected(verifier, sign(rsa_key, **{claim: None}))
    assert claim in detail


async def test_alg_none_is_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    token = forge({"alg": "none", "typ": "at+jwt", "kid": rsa_key.kid}, None)
    detail = await rejected(verifier, token)
    assert "algorithm 'none' is not accepted" in detail


async def test_hs256_signed_with_the_public_key_is_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    """The classic confusion attack: HMAC keyed with the (public) RSA key a naive verifier would use."""
    public_pem = rsa_key.as_pem(private=False)
    for secret in (public_pem, json.dumps(rsa_key.as_dict(private=False)).encode()):
        token = forge({"alg": "HS256", "typ": "at+jwt", "kid": rsa_key.kid}, secret)
        detail = await rejected(verifier, token)
        assert "algorithm 'HS256' is not accepted" in detail


async def test_a_key_is_only_used_with_its_own_algorithm(
    verifier: TokenVerifier, rsa_key: RSAKey, ec_key: ECKey
) -> None:
    # The RSA key is published with alg RS256, so a PS256 token naming it does not verify.
    unrestricted = RSAKey.import_key({k: v for k, v in rsa_key.as_dict(private=True).items() if k != "alg"})
    assert "could not be verified" in await rejected(verifier, sign(unrestricted, alg="PS256"))
    # An ES256 header naming the RSA key: wrong key type.
    token = sign(ec_key, alg="ES256", kid=rsa_key.kid)
    assert "could not be verified" in await rejected(verifier, token)


@pytest.mark.parametrize("typ", [None, "JWT", "id_token+jwt", "application/jwt"])
async def test_only_access_tokens_are_accepted(verifier: TokenVerifier, rsa_key: RSAKey, typ: str | None) -> None:
    detail = await rejected(verifier, sign(rsa_key, typ=typ))
    assert "Wrong token type" in detail


async def test_a_tampered_token_has_a_bad_signature(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    header, _payload, signature = sign(rsa_key).split(".")
    other_payload = b64(json.dumps(claims_for(sub="person-2")).encode())
    detail = await rejected(verifier, f"{header}.{other_payload}.{signature}")
    assert "signature is not valid" in detail


async def test_a_token_signed_by_an_unpublished_key_is_rejected(verifier: TokenVerifier) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, different key
    assert "signature is not valid" in await rejected(verifier, sign(stranger))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b.c.d.e", "ü.ü.ü"])
async def test_garbage_is_rejected_cleanly(verifier: TokenVerifier, garbage: str) -> None:
    assert "well-formed" in await rejected(verifier, garbage)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": ["RS256"], "typ": "at+jwt", "kid": "rsa-1"},
        {"alg": "RS256", "typ": "at+jwt", "kid": ["rsa-1"]},
        {"alg": "RS256", "typ": ["at+jwt"], "kid": "rsa-1"},
        {"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1", "crit": ["exp"], "exp": 1},
    ],
)
async def test_odd_header_values_are_a_401_not_a_500(verifier: TokenVerifier, header: dict[str, Any]) -> None:
    await rejected(verifier, forge(header, b"whatever"))


async def test_a_token_without_kid_is_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    token = jwt.encode({"alg": "RS256", "typ": "at+jwt"}, claims_for(), rsa_key, algorithms=["RS256"])
    assert "no kid" in await rejected(verifier, token)


async def test_malformed_role_claims_are_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    detail = await rejected(verifier, sign(rsa_key, roles=[{"role": "emperor", "org_id": "c1", "org_path": "/c1"}]))
    assert "roles" in detail


# ------------------------------------------------------------------------------------- key rotation


async def test_an_unknown_kid_triggers_one_refresh_then_succeeds(
    jwks_server: JwksServer, rsa_key: RSAKey, rotated_key: RSAKey
) -> None:
    cache = JwksCache(jwks_server.url, min_refresh_interval=0.3)
    verifier = TokenVerifier(cache, issuer=ISSUER, audience=AUDIENCE)
    try:
        await verifier.verify(sign(rsa_key))
        assert jwks_server.hits == 1
        await verifier.verify(sign(rsa_key))
        assert jwks_server.hits == 1  # cached

        # The identity service rotates: the new key is published and tokens are signed with it.
        jwks_server.publish(rsa_key, rotated_key)
        await asyncio.sleep(0.35)
        tokens = [sign(rotated_key) for _ in range(20)]
        principals = await asyncio.gather(*(verifier.verify(token) for token in tokens))
        assert all(principal.subject == "person-1" for principal in principals)
        assert jwks_server.hits == 2  # twenty concurrent requests, one refresh
        assert cache.kids == {"rsa-1", "rsa-2"}
    finally:
        await cache.aclose()


async def test_bogus_kids_do_not_cause_a_fetch_storm(
    verifier: TokenVerifier, jwks_server: JwksServer, rsa_key: RSAKey
) -> None:
    await verifier.verify(sign(rsa_key))
    assert jwks_server.hits == 1
    tokens = [sign(rsa_key, kid=f"bogus-{index}") for index in range(50)]
    results = await asyncio.gather(*(verifier.verify(token) for token in tokens), return_exceptions=True)
    assert all(isinstance(result, Unauthenticated) for result in results)
    assert all("unknown key" in (result.detail or "") for result in results if isinstance(result, Unauthenticated))
    assert jwks_server.hits == 1


async def test_a_cold_cache_with_only_bogus_kids_fetches_once(
    verifier: TokenVerifier, jwks_server: JwksServer, rsa_key: RSAKey
) -> None:
    tokens = [sign(rsa_key, kid=f"bogus-{index}") for index in range(30)]
    results = await asyncio.gather(*(verifier.verify(token) for token in tokens), return_exceptions=True)
    assert all(isinstance(result, Unauthenticated) for result in results)
    assert jwks_server.hits == 1


async def test_an_unreachable_identity_service_is_a_503_not_a_500(rsa_key: RSAKey, jwks_server: JwksServer) -> None:
    jwks_server.status = 500
    cache = JwksCache(jwks_server.url, failure_retry_interval=0.2)
    verifier = TokenVerifier(cache, issuer=ISSUER, audience=AUDIENCE)
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            await verifier.verify(sign(rsa_key))
        assert caught.value.status == 503
        assert "could not be fetched" in (caught.value.detail or "")
        with pytest.raises(ServiceUnavailable):
            await verifier.verify(sign(rsa_key))
        assert jwks_server.hits == 1  # failures are retried, but not on every request

        jwks_server.status = 200
        await asyncio.sleep(0.25)
        assert (await verifier.verify(sign(rsa_key))).subject == "person-1"
        assert jwks_server.hits == 2
    finally:
        await cache.aclose()


async def test_a_closed_port_is_a_503(rsa_key: RSAKey) -> None:
    server = JwksServer()
    url = server.url
    server.stop()  # never served: the port is closed
    cache = JwksCache(url)
    try:
        with pytest.raises(ServiceUnavailable):
            await TokenVerifier(cache, issuer=ISSUER, audience=AUDIENCE).verify(sign(rsa_key))
    finally:
        await cache.aclose()


async def test_cached_keys_survive_an_outage_after_max_age(jwks_server: JwksServer, rsa_key: RSAKey) -> None:
    cache = JwksCache(jwks_server.url, max_age=0.1, min_refresh_interval=0.05, failure_retry_interval=10)
    verifier = TokenVerifier(cache, issuer=ISSUER, audience=AUDIENCE)
    try:
        await verifier.verify(sign(rsa_key))
        jwks_server.status = 500
        await asyncio.sleep(0.15)
        assert (await verifier.verify(sign(rsa_key))).subject == "person-1"  # stale but usable
        assert jwks_server.hits == 2
    finally:
        await cache.aclose()


async def test_a_key_withdrawn_from_the_jwks_stops_being_trusted(
    jwks_server: JwksServer, rsa_key: RSAKey, ec_key: ECKey
) -> None:
    cache = JwksCache(jwks_server.url, max_age=0.1, min_refresh_interval=0.05)
    verifier = TokenVerifier(cache, issuer=ISSUER, audience=AUDIENCE)
    try:
        await verifier.verify(sign(rsa_key))
        jwks_server.publish(ec_key)
        await asyncio.sleep(0.15)
        assert "unknown key" in await rejected(verifier, sign(rsa_key))
    finally:
        await cache.aclose()


# ------------------------------------------------------------------------------------- authorisation


def principal_with(*roles: tuple[str, str], scope: str = "") -> Principal:
    claims = AccessTokenClaims.model_validate(
        claims_for(
            scope=scope,
            roles=[
                {"role": role, "org_id": path.rstrip("/").rsplit("/", 1)[-1], "org_path": path} for role, path in roles
            ],
        )
    )
    return Principal.from_claims(claims)


def test_can_act_matches_whole_path_segments() -> None:
    district_admin = principal_with(("district_admin", "/c1/d1"))
    assert district_admin.can_act(["district_admin"], org_path="/c1/d1")
    assert district_admin.can_act(["district_admin"], org_path="/c1/d1/s1")
    assert district_admin.can_act("district_admin", org_path="/c1/d1/s1/")
    assert not district_admin.can_act(["district_admin"], org_path="/c1/d10")
    assert not district_admin.can_act(["district_admin"], org_path="/c1/d10/s1")
    assert not district_admin.can_act(["district_admin"], org_path="/c1")
    assert not district_admin.can_act(["district_admin"], org_path="/c2/d1")
    assert not district_admin.can_act(["district_admin"], org_path="")
    assert not district_admin.can_act(["school_admin", "teacher"], org_path="/c1/d1/s1")


def test_roles_named_and_multiple_roles() -> None:
    principal = principal_with(("teacher", "/c1/d1/s1"), ("parent", "/c1/d2/s7"))
    assert [role.org_id for role in principal.roles_named("teacher", "parent")] == ["s1", "s7"]
    assert principal.roles_named("auditor") == ()
    assert principal.can_act(["auditor", "parent"], org_path="/c1/d2/s7")
    assert not principal.can_act(["teacher"], org_path="/c1/d2/s7")


def test_inconsistent_role_claims_grant_nothing() -> None:
    principal = Principal.from_claims(
        principal_with(scope="").claims.model_copy(
            update={
                "roles": [
                    RoleClaim(role="city_admin", org_id="c1", org_path="/"),
                    RoleClaim(role="city_admin", org_id="c9", org_path="/c1"),
                ]
            }
        )
    )
    assert not principal.can_act(["city_admin"], org_path="/c1/d1")


def test_authorize_names_the_missing_scope() -> None:
    principal = principal_with(("school_admin", "/c1/d1/s1"), scope="people:read")
    authorize(principal, roles=["school_admin"], org_path="/c1/d1/s1", scope="people:read")
    with pytest.raises(InsufficientScope) as caught:
        authorize(principal, roles=["school_admin"], org_path="/c1/d1/s1", scope="people:write")
    assert caught.value.status == 403
    assert "people:write" in (caught.value.detail or "")
    assert caught.value.extensions["required_scope"] == "people:write"


def test_authorize_names_the_roles_and_the_organisation() -> None:
    principal = principal_with(("teacher", "/c1/d1/s1"), scope="people:write")
    with pytest.raises(Forbidden) as caught:
        authorize(principal, roles=("school_admin", "district_admin"), org_path="/c1/d1/s2", scope="people:write")
    assert not isinstance(caught.value, InsufficientScope)
    detail = caught.value.detail or ""
    assert "school_admin, district_admin" in detail and "/c1/d1/s2" in detail
    assert caught.value.extensions["required_roles"] == ["school_admin", "district_admin"]


# ---------------------------------------------------------------------------------- through FastAPI


def make_app(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    app.state.token_verifier = verifier
    install_problem_handlers(app)

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/people")
    async def people(
        principal: Annotated[Principal, Depends(require_scope("people:read"))],
    ) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.post("/people", dependencies=[Depends(require_scope("people:write"))])
    async def create_person() -> dict[str, str]:
        return {"created": "yes"}

    @app.get("/schools/{school_id}/roster")
    async def roster(school_id: str, principal: CurrentPrincipal) -> dict[str, str]:
        authorize(principal, roles=["school_admin", "teacher"], org_path=f"/c1/d1/{school_id}")
        return {"school": school_id}

    return app


@pytest.fixture
async def client(verifier: TokenVerifier) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        yield client


async def test_no_token_is_a_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/me", headers={"Accept-Language": "en"})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["www-authenticate"] == 'Bearer realm="edu-platform"'
    body = response.json()
    assert body["status"] == 401
    assert body["type"].endswith("/unauthenticated")
    assert "Authorization: Bearer" in body["detail"]


async def test_another_scheme_is_a_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert "Bearer" in response.headers["www-authenticate"]


async def test_an_invalid_token_is_a_401_saying_why(client: httpx.AsyncClient, rsa_key: RSAKey) -> None:
    now = int(time.time())
    token = sign(rsa_key, iat=now - 600, exp=now - 60)
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "expired" in response.json()["detail"]


async def test_a_valid_token_reaches_the_route(client: httpx.AsyncClient, rsa_key: RSAKey) -> None:
    response = await client.get("/me", headers={"Authorization": f"bearer {sign(rsa_key)}"})
    assert response.status_code == 200
    assert response.json() == {"subject": "person-1"}
    response = await client.get("/people", headers={"Authorization": f"Bearer {sign(rsa_key)}"})
    assert response.status_code == 200


async def test_a_missing_scope_is_a_403_naming_it(client: httpx.AsyncClient, rsa_key: RSAKey) -> None:
    response = await client.post("/people", headers={"Authorization": f"Bearer {sign(rsa_key)}"})
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert body["type"].endswith("/insufficient-scope")
    assert body["required_scope"] == "people:write"
    assert "people:write" in body["detail"]
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_a_role_outside_the_organisation_is_a_403(client: httpx.AsyncClient, rsa_key: RSAKey) -> None:
    headers = {"Authorization": f"Bearer {sign(rsa_key)}"}
    assert (await client.get("/schools/s1/roster", headers=headers)).status_code == 200
    response = await client.get("/schools/s10/roster", headers=headers)
    assert response.status_code == 403
    body = response.json()
    assert body["type"].endswith("/forbidden")
    assert "/c1/d1/s10" in body["detail"]


async def test_an_unreachable_jwks_is_a_503_problem(rsa_key: RSAKey) -> None:
    server = JwksServer()
    url = server.url
    server.stop()
    cache = JwksCache(url)
    app = make_app(TokenVerifier(cache, issuer=ISSUER, audience=AUDIENCE))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/me", headers={"Authorization": f"Bearer {sign(rsa_key)}"})
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    finally:
        await cache.aclose()
