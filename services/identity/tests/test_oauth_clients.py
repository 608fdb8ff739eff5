"""Vendor back ends: client registration, client credentials (secret and private_key_jwt), introspection,
revocation announced on the bus, and the OAuth errors bad requests get.

The client side is authlib's httpx OAuth client (a real OAuth library), talking HTTP to the service.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlmodel import select

from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.oauth import tokens
from identity.oauth.models import IssuedAccessToken, OAuthClient
from identity.testing import Directory, RegisteredClient, TokenFactory, all_published, bearer, register_client
from kit.audit import AuditEntry
from kit.auth import JwksCache, TokenVerifier
from kit.natsserver import NatsServer

BASE = "http://identity.test"
TOKEN_URL = f"{BASE}/oauth/token"


def vendor_backend(app: FastAPI, **fields: Any) -> RegisteredClient:
    defaults: dict[str, Any] = {
        "client_name": "课堂助手（后台）",
        "grant_types": ["client_credentials"],
        "scope": "org.read metering.report",
    }
    return register_client(app, **{**defaults, **fields})


def oauth_client(app: FastAPI, registered: RegisteredClient, **kwargs: Any) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=registered.client_id,
        client_secret=registered.secret,
        transport=httpx.ASGITransport(app=app),
        base_url=BASE,
        **kwargs,
    )


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


async def test_discovery_names_every_endpoint(client: httpx.AsyncClient, settings: IdentitySettings) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["issuer"] == settings.token_issuer
    for name in ("authorization", "token", "userinfo", "introspection", "revocation", "end_session"):
        assert document[f"{name}_endpoint"].startswith(settings.token_issuer)
    assert document["jwks_uri"] == settings.jwks_url
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "pairwise" in document["subject_types_supported"]
    assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]


async def test_client_credentials_token_is_an_rfc9068_jwt(app: FastAPI, settings: IdentitySettings) -> None:
    vendor = vendor_backend(app)
    async with oauth_client(app, vendor, scope="org.read") as oauth:
        token = await oauth.fetch_token(TOKEN_URL, grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "org.read"
    assert 0 < token["expires_in"] <= settings.access_token_ttl_seconds
    assert "refresh_token" not in token  # nothing to refresh without a user

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        verifier = TokenVerifier(
            JwksCache(settings.jwks_url, http_client=http),
            issuer=settings.token_issuer,
            audience=settings.token_audience,
        )
        principal = await verifier.verify(token["access_token"])
    assert principal.client_id == vendor.client_id
    assert principal.subject == vendor.client_id
    assert principal.scopes == frozenset({"org.read"})
    claims = claims_of(token["access_token"])
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"} <= set(claims)


async def test_private_key_jwt_authenticates_and_a_replayed_assertion_is_refused(app: FastAPI) -> None:
    private = RSAKey.generate_key(2048, parameters={"kid": "vendor-2026"}, private=True)
    vendor = vendor_backend(
        app, token_endpoint_auth_method="private_key_jwt", jwks={"keys": [private.as_dict(private=False)]}
    )
    async with AsyncOAuth2Client(
        client_id=vendor.client_id,
        client_secret=private.as_dict(private=True),
        token_endpoint_auth_method=PrivateKeyJWT(TOKEN_URL),
        transport=httpx.ASGITransport(app=app),
        base_url=BASE,
    ) as oauth:
        token = await oauth.fetch_token(TOKEN_URL, grant_type="client_credentials", scope="metering.report")
    assert claims_of(token["access_token"])["client_id"] == vendor.client_id

    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "RS256", "kid": "vendor-2026"},
        {
            "iss": vendor.client_id,
            "sub": vendor.client_id,
            "aud": TOKEN_URL,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        },
        private,
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        first = await http.post("/oauth/token", data=form)
        replay = await http.post("/oauth/token", data=form)
        someone_else = RSAKey.generate_key(2048, private=True)
        forged = jwt.encode(
            {"alg": "RS256"},
            {"iss": vendor.client_id, "sub": vendor.client_id, "aud": TOKEN_URL, "exp": now + 60, "jti": "x1"},
            someone_else,
        )
        wrong_key = await http.post("/oauth/token", data={**form, "client_assertion": forged})
    assert first.status_code == 200
    assert replay.json()["error"] == "invalid_client"
    assert wrong_key.json()["error"] == "invalid_client"
    assert "access_token" not in replay.json() and "access_token" not in wrong_key.json()


async def test_bad_token_requests_get_rfc6749_errors_and_no_token(app: FastAPI, client: httpx.AsyncClient) -> None:
    vendor = vendor_backend(app)
    public_app = register_client(
        app,
        client_name="家长端",
        token_endpoint_auth_method="none",
        redirect_uris=["https://app.example/cb"],
        scope="openid profile",
    )
    auth = (vendor.client_id, vendor.secret or "")

    async def post(data: Any, **kwargs: Any) -> httpx.Response:
        return await client.post("/oauth/token", data=data, **kwargs)

    cases = {
        "wrong secret": (
            await post({"grant_type": "client_credentials"}, auth=(vendor.client_id, "nope")),
            "invalid_client",
        ),
        "unknown client": (
            await post({"grant_type": "client_credentials"}, auth=("no-such-app", "x")),
            "invalid_client",
        ),
        "no client": (await post({"grant_type": "client_credentials"}), "invalid_client"),
        "unsupported grant": (
            await post({"grant_type": "password", "username": "a", "password": "b"}, auth=auth),
            "unsupported_grant_type",
        ),
        "scope not granted": (
            await post({"grant_type": "client_credentials", "scope": "people.write"}, auth=auth),
            "invalid_scope",
        ),
        "unknown scope": (
            await post({"grant_type": "client_credentials", "scope": "everything"}, auth=auth),
            "invalid_scope",
        ),
        "public client": (
            await post({"grant_type": "client_credentials", "client_id": public_app.client_id}),
            "invalid_client",
        ),
        "bogus code": (
            await post(
                {"grant_type": "authorization_code", "code": "x" * 40, "redirect_uri": "https://app.example/cb"},
                auth=auth,
            ),
            "unauthorized_client",
        ),
        "json body": (
            await client.post("/oauth/token", json={"grant_type": "client_credentials"}, auth=auth),
            "invalid_request",
        ),
        "oversized": (
            await post({"grant_type": "client_credentials", "scope": "org.read " * 3000}, auth=auth),
            "invalid_request",
        ),
        "parameter too long": (
            await post({"grant_type": "client_credentials", "scope": "o" * 5000}, auth=auth),
            "invalid_request",
        ),
    }
    for name, (response, error) in cases.items():
        assert response.status_code in (400, 401, 413), (name, response.status_code, response.text)
        body = response.json()
        assert body["error"] == error, (name, body)
        assert "access_token" not in body, name
        assert response.headers["content-type"].startswith("application/json"), name


async def test_a_disabled_client_gets_nothing_and_its_tokens_stop(
    app: FastAPI, client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    vendor = vendor_backend(app)
    auth = (vendor.client_id, vendor.secret or "")
    issued = (await client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)).json()
    admin = bearer(token_for(directory.city_admin, scopes=("clients.manage",)))
    assert (await client.post(f"/oauth/clients/{vendor.client_id}/disable", headers=admin)).status_code == 200

    again = await client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert again.json()["error"] == "invalid_client"
    resource_server = vendor_backend(app, client_name="网关", scope="tokens.introspect", first_party=True)
    seen = await client.post(
        "/oauth/introspect",
        data={"token": issued["access_token"]},
        auth=(resource_server.client_id, resource_server.secret or ""),
    )
    assert seen.json() == {"active": False}


async def test_introspection_is_for_the_token_owner_and_resource_servers(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    vendor = vendor_backend(app)
    other_vendor = vendor_backend(app, client_name="作业批改")
    gateway = vendor_backend(app, client_name="网关", scope="tokens.introspect", first_party=True)
    token = (
        await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "org.read"},
            auth=(vendor.client_id, vendor.secret or ""),
        )
    ).json()["access_token"]

    async def introspect(who: RegisteredClient, value: str = token, **extra: str) -> dict[str, Any]:
        response = await client.post(
            "/oauth/introspect", data={"token": value, **extra}, auth=(who.client_id, who.secret or "")
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    own = await introspect(vendor, token_type_hint="access_token")
    assert own["active"] is True
    assert (own["client_id"], own["scope"], own["sub"]) == (vendor.client_id, "org.read", vendor.client_id)
    assert own["exp"] > time.time()
    assert (await introspect(gateway))["active"] is True
    assert await introspect(other_vendor) == {"active": False}  # not its token: nothing is revealed
    assert await introspect(gateway, "not-a-token") == {"active": False}
    unauthenticated = await client.post("/oauth/introspect", data={"token": token})
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"] == "invalid_client"


async def test_forged_tokens_are_inactive_and_refused(
    app: FastAPI, client: httpx.AsyncClient, settings: IdentitySettings, directory: Directory
) -> None:
    """Unknown key, alg none, and HS256 keyed with the public key: introspection and the API refuse all."""
    gateway = vendor_backend(app, client_name="网关", scope="tokens.introspect", first_party=True)
    now = int(time.time())
    claims = {
        "iss": settings.token_issuer,
        "sub": directory.city_admin.id,
        "aud": settings.token_audience,
        "exp": now + 600,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "client_id": "x",
        "scope": "org.read",
    }
    stranger = RSAKey.generate_key(2048, parameters={"kid": "attacker"}, private=True)
    unknown_key = jwt.encode({"alg": "RS256", "kid": "attacker", "typ": "at+jwt"}, claims, stranger)
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
        for part in ({"alg": "none", "typ": "at+jwt"}, claims)
    ]
    alg_none = ".".join(segments) + "."
    published = (await client.get("/.well-known/jwks.json")).json()["keys"][0]
    public_pem = RSAKey.import_key(published).as_pem(private=False)
    # The classic confusion attack: "sign" with HMAC, using the published public key as the secret.
    signing_input = ".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
        for part in ({"alg": "HS256", "kid": published["kid"], "typ": "at+jwt"}, claims)
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs256 = signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    for name, forged in {"unknown key": unknown_key, "alg none": alg_none, "hs256 public key": hs256}.items():
        seen = await client.post(
            "/oauth/introspect", data={"token": forged}, auth=(gateway.client_id, gateway.secret or "")
        )
        assert seen.json() == {"active": False}, name
        api = await client.get("/organisations", headers=bearer(forged))
        assert api.status_code == 401, (name, api.text)
        userinfo = await client.get("/oauth/userinfo", headers=bearer(forged))
        assert userinfo.status_code == 401 and userinfo.json()["error"] == "invalid_token", name


async def test_revocation_is_honoured_and_announced_on_the_bus(
    app: FastAPI, client: httpx.AsyncClient, nats_server: NatsServer
) -> None:
    vendor = vendor_backend(app)
    gateway = vendor_backend(app, client_name="网关", scope="tokens.introspect", first_party=True)
    auth = (vendor.client_id, vendor.secret or "")
    token = (await client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)).json()
    jti = claims_of(token["access_token"])["jti"]

    other = vendor_backend(app, client_name="别家应用")
    refused = await client.post(
        "/oauth/revoke", data={"token": token["access_token"]}, auth=(other.client_id, other.secret or "")
    )
    assert refused.status_code == 400 and refused.json()["error"] in ("invalid_grant", "unauthorized_client")
    revoked = await client.post("/oauth/revoke", data={"token": token["access_token"]}, auth=auth)
    assert revoked.status_code == 200
    again = await client.post("/oauth/revoke", data={"token": token["access_token"]}, auth=auth)
    assert again.status_code == 200  # RFC 7009: revoking twice is not an error
    seen = await client.post(
        "/oauth/introspect", data={"token": token["access_token"]}, auth=(gateway.client_id, gateway.secret or "")
    )
    assert seen.json() == {"active": False}

    await all_published(app)
    connection = await nats.connect(nats_server.url)
    try:
        subscription = await connection.jetstream().pull_subscribe("edu.identity.token.revoked", stream="EDU_IDENTITY")
        [message] = await subscription.fetch(1, timeout=5)
        extra = await connection.jetstream().stream_info("EDU_IDENTITY", subjects_filter="edu.identity.token.revoked")
    finally:
        await connection.close()
    event = json.loads(message.data)
    assert event["type"] == "edu.identity.token.revoked.v1"
    assert event["data"]["jtis"] == [jti]
    assert event["data"]["client_id"] == vendor.client_id
    assert event["data"]["reason"] == "client_request"
    assert event["data"]["expires_at"] == claims_of(token["access_token"])["exp"]
    assert extra.state.messages == 1  # the second revocation announced nothing new


async def test_token_events_are_audited(app: FastAPI, client: httpx.AsyncClient, directory: Directory) -> None:
    vendor = vendor_backend(app)
    auth = (vendor.client_id, vendor.secret or "")
    token = (await client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)).json()
    await client.post("/oauth/revoke", data={"token": token["access_token"]}, auth=auth)
    with directory.database.session() as session:
        actions = [entry.action for entry in session.exec(select(AuditEntry).order_by(AuditEntry.id)).all()]
    assert actions[-2:] == ["oauth.token_issued", "oauth.token_revoked"]


async def test_registration_api_is_internal_and_validates(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    admin = bearer(token_for(directory.city_admin, scopes=("clients.manage",)))
    school_admin = bearer(token_for(directory.school_admin_a, scopes=("clients.manage",)))
    no_scope = bearer(token_for(directory.city_admin, scopes=("org.read",)))
    registration = {
        "client_name": "智慧作业",
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": ["https://homework.example.com/oidc/callback"],
        "scope": "openid profile roster.read",
    }
    assert (await client.post("/oauth/clients", json=registration)).status_code == 401
    assert (await client.post("/oauth/clients", json=registration, headers=school_admin)).status_code == 403
    assert (await client.post("/oauth/clients", json=registration, headers=no_scope)).status_code == 403

    created = await client.post("/oauth/clients", json=registration, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["client_secret"] and body["client_type"] == "confidential" and body["subject_type"] == "pairwise"
    fetched = (await client.get(f"/oauth/clients/{body['client_id']}", headers=admin)).json()
    assert "client_secret" not in fetched

    bad = await client.post(
        "/oauth/clients",
        json={
            **registration,
            "redirect_uris": ["https://a.example/cb#frag", "javascript:alert(1)"],
            "scope": "openid people.write nonsense",
            "token_endpoint_auth_method": "private_key_jwt",
        },
        headers=admin,
    )
    assert bad.status_code == 422
    problem = bad.json()
    assert bad.headers["content-type"].startswith("application/problem+json")
    fields = {error["field"] for error in problem["errors"]}
    assert {"redirect_uris", "scope", "jwks"} <= fields
    messages = " ".join(error["message"] for error in problem["errors"])
    assert "people.write" in messages and "nonsense" in messages


async def test_expired_records_are_purged_and_live_ones_kept(app: FastAPI, client: httpx.AsyncClient) -> None:
    vendor = vendor_backend(app)
    auth = (vendor.client_id, vendor.secret or "")
    for _ in range(3):
        await client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
    with app.state.database.session() as session:
        rows = session.exec(select(IssuedAccessToken)).all()
        rows[0].expires_at = datetime.now(UTC) - timedelta(days=2)
        session.add(rows[0])
    with app.state.database.session() as session:
        assert tokens.purge_expired(session) == 1
    with app.state.database.session() as session:
        assert len(session.exec(select(IssuedAccessToken)).all()) == 2


async def test_a_rotated_secret_replaces_the_old_one_and_updates_apply(
    app: FastAPI, client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    vendor = vendor_backend(app)
    admin = bearer(token_for(directory.city_admin, scopes=("clients.manage",)))
    rotated = await client.post(f"/oauth/clients/{vendor.client_id}/secret", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.json()["client_secret"]
    old = await client.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(vendor.client_id, vendor.secret or ""))  # fmt: skip
    assert old.json()["error"] == "invalid_client"
    fresh = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(vendor.client_id, new_secret)
    )
    assert fresh.status_code == 200

    narrowed = await client.patch(f"/oauth/clients/{vendor.client_id}", json={"scope": "org.read"}, headers=admin)
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "org.read"
    refused = await client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "metering.report"},
                                auth=(vendor.client_id, new_secret))  # fmt: skip
    assert refused.json()["error"] == "invalid_scope"
    bad = await client.patch(f"/oauth/clients/{vendor.client_id}", json={"scope": "people.write"}, headers=admin)
    assert bad.status_code == 422


async def test_an_app_that_moves_to_sign_in_gets_the_code_grant_with_its_redirect_uri(
    app: FastAPI, client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    vendor = vendor_backend(app)  # client credentials only, no redirect URI
    admin = bearer(token_for(directory.city_admin, scopes=("clients.manage",)))
    path = f"/oauth/clients/{vendor.client_id}"
    without_uri = await client.patch(path, json={"grant_types": ["authorization_code"]}, headers=admin)
    assert without_uri.status_code == 422
    assert without_uri.json()["errors"][0]["field"] == "redirect_uris"
    moved = await client.patch(
        path,
        json={
            "grant_types": ["authorization_code", "client_credentials"],
            "redirect_uris": ["https://app.example/cb"],
            "scope": "openid org.read",
        },
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["grant_types"] == ["authorization_code", "client_credentials"]
    authorize = await client.get(
        "/oauth/authorize",
        params={
            "response_type": "code", "client_id": vendor.client_id, "redirect_uri": "https://app.example/cb",
            "scope": "openid", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256", "state": "s",
        },
    )  # fmt: skip
    assert authorize.status_code in (302, 303), authorize.text
    assert authorize.headers["location"].startswith("/login"), authorize.headers["location"]  # not an error


async def test_an_expired_token_is_inactive_and_refused(
    app: FastAPI, client: httpx.AsyncClient, settings: IdentitySettings, directory: Directory
) -> None:
    gateway = vendor_backend(app, client_name="网关", scope="tokens.introspect", first_party=True)
    expired_settings = settings.model_copy(update={"access_token_ttl_seconds": -120})  # expired two minutes ago
    with app.state.database.session() as session:
        row = session.get(OAuthClient, gateway.client_id)
        assert row is not None
        issued = tokens.issue_access_token(
            session, expired_settings, client=row, subject=directory.city_admin.id, person_id=directory.city_admin.id,
            scope="openid org.read", grant_id=None,
        )  # fmt: skip
    seen = await client.post("/oauth/introspect", data={"token": issued.access_token},
                             auth=(gateway.client_id, gateway.secret or ""))  # fmt: skip
    assert seen.json() == {"active": False}
    assert (await client.get("/oauth/userinfo", headers=bearer(issued.access_token))).status_code == 401
    api = await client.get("/organisations", headers=bearer(issued.access_token))
    assert api.status_code == 401 and "expired" in api.json()["detail"].lower()


async def test_concurrent_token_requests_each_get_their_record_and_audit_entry(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Tokens issued at the same time are recorded together (group commit): none lost, the audit chain intact."""
    vendor = vendor_backend(app)
    auth = (vendor.client_id, vendor.secret or "")
    responses = await asyncio.gather(
        *(client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth) for _ in range(40))
    )
    jtis = {claims_of(response.json()["access_token"])["jti"] for response in responses}
    assert len(jtis) == 40
    with app.state.database.session() as session:
        recorded = set(session.exec(select(IssuedAccessToken.jti)).all())
        issued_entries = session.exec(select(AuditEntry).where(AuditEntry.action == "oauth.token_issued")).all()
        assert jtis <= recorded
        assert {json.loads(entry.detail)["jti"] for entry in issued_entries} >= jtis
        assert audit.verify_chain(session).intact
