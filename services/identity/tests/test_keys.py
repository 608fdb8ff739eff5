"""Signing keys: the published JWKS, rotation ahead of use, and tokens the service refuses."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.jwk import RSAKey
from sqlmodel import select

from identity.config import IdentitySettings
from identity.keys import service as keys
from identity.testing import Directory, TokenFactory, bearer
from kit.audit import AuditEntry

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def kid_of(token: str) -> str:
    kid: str = jws.extract_compact(token.encode()).headers()["kid"]
    return kid


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


async def published(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    document: list[dict[str, Any]] = response.json()["keys"]
    return document


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_jwks_publishes_public_members_only(client: httpx.AsyncClient, directory: Directory) -> None:
    response = await client.get("/.well-known/jwks.json")  # anonymous: verifiers are not logged in
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    [key] = response.json()["keys"]
    assert (key["kty"], key["use"], key["alg"]) == ("RSA", "sig", "RS256")
    assert key["kid"] and key["n"] and key["e"]
    assert not PRIVATE_MEMBERS & set(key)
    with directory.database.session() as session:
        assert key["kid"] == keys.signing_key(session).kid


async def test_rotation_publishes_first_and_signs_later(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory, settings: IdentitySettings
) -> None:
    [old] = await published(client)
    old_token = token_for(directory.city_admin)
    assert kid_of(old_token) == old["kid"]

    requested_at = datetime.now(UTC)
    response = await client.post("/keys/rotate", headers=bearer(token_for(directory.city_admin)))
    assert response.status_code == 200, response.text
    new_kid, signs_from = response.json()["kid"], moment(response.json()["signs_from"])
    assert new_kid != old["kid"]
    ahead = timedelta(seconds=settings.key_publish_ahead_seconds)
    assert requested_at + ahead <= signs_from <= datetime.now(UTC) + ahead

    # Published at once, next to the old key, public members only.
    after = await published(client)
    assert [key["kid"] for key in after] == [old["kid"], new_kid]
    assert not PRIVATE_MEMBERS & set(after[1])
    # Until signs_from the old key keeps signing, and its tokens keep working.
    assert kid_of(token_for(directory.city_admin)) == old["kid"]
    response = await client.get("/people", headers=bearer(old_token))
    assert response.status_code == 200

    with directory.database.session() as session:
        assert keys.signing_key(session, now=signs_from - timedelta(seconds=1)).kid == old["kid"]
        assert keys.signing_key(session, now=signs_from).kid == new_kid
        # The old key stays published until every token it signed has expired.
        unpublish_at = signs_from + timedelta(seconds=settings.access_token_ttl_seconds + keys.CLOCK_LEEWAY_SECONDS)
        still = keys.published_jwks(session, now=unpublish_at - timedelta(seconds=1))
        gone = keys.published_jwks(session, now=unpublish_at)
        assert [key["kid"] for key in still["keys"]] == [old["kid"], new_kid]
        assert [key["kid"] for key in gone["keys"]] == [new_kid]
        rotated = session.exec(select(AuditEntry).where(AuditEntry.action == "keys.rotate")).all()
        assert [(entry.actor_id, entry.target_id) for entry in rotated] == [(directory.city_admin.id, new_kid)]


async def test_tokens_of_both_keys_verify_during_the_overlap(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory, settings: IdentitySettings
) -> None:
    old_token = token_for(directory.school_admin_a)
    with directory.database.session() as session:
        # A rotation that happened just over the publish-ahead period ago: the new key signs now.
        ago = timedelta(seconds=settings.key_publish_ahead_seconds + 5)
        new_key = keys.rotate(session, settings, now=datetime.now(UTC) - ago)
    new_token = token_for(directory.school_admin_a)
    assert kid_of(new_token) == new_key.kid != kid_of(old_token)
    for token in (old_token, new_token):
        response = await client.get(f"/people/{directory.teacher_a.id}", headers=bearer(token))
        assert response.status_code == 200, response.text


async def test_token_of_an_unpublished_key_is_refused(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory, settings: IdentitySettings
) -> None:
    old_token = token_for(directory.school_admin_a)
    with directory.database.session() as session:
        lifetime = settings.key_publish_ahead_seconds + settings.access_token_ttl_seconds + keys.CLOCK_LEEWAY_SECONDS
        keys.rotate(session, settings, now=datetime.now(UTC) - timedelta(seconds=lifetime + 10))
    response = await client.get(f"/people/{directory.teacher_a.id}", headers=bearer(old_token))
    assert response.status_code == 401
    assert "unknown key" in response.json()["detail"]
    response = await client.get(
        f"/people/{directory.teacher_a.id}", headers=bearer(token_for(directory.school_admin_a))
    )
    assert response.status_code == 200


async def test_rotation_is_for_the_city_admin_with_the_scope(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    before = await published(client)
    response = await client.post("/keys/rotate")
    assert response.status_code == 401
    for person in (directory.school_admin_a, directory.district_admin_a, directory.auditor):
        response = await client.post("/keys/rotate", headers=bearer(token_for(person)))
        assert response.status_code == 403, response.text
    response = await client.post("/keys/rotate", headers=bearer(token_for(directory.city_admin, scopes=("org.write",))))
    assert response.status_code == 403
    assert response.json()["type"].endswith("/insufficient-scope")
    assert await published(client) == before


async def test_bad_tokens_are_401_problems(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    url = f"/people/{directory.teacher_a.id}"
    genuine = token_for(directory.school_admin_a)
    assert (await client.get(url, headers=bearer(genuine))).status_code == 200

    header = jws.extract_compact(genuine.encode()).headers()
    claims = claims_of(genuine)
    # Signed by someone else's key that claims the service's kid.
    impostor = RSAKey.generate_key(2048, private=True)
    forged = jwt.encode(header, claims, impostor)
    # The genuine signature over a payload with the city admin's role added.
    escalated = dict(claims, roles=[*claims["roles"], {"role": "city_admin", "org_id": directory.city.id,
                                                        "org_path": directory.city.path}])  # fmt: skip
    payload = base64.urlsafe_b64encode(json.dumps(escalated).encode()).rstrip(b"=").decode()
    spliced = ".".join([genuine.split(".")[0], payload, genuine.split(".")[2]])
    unsigned_header = base64.urlsafe_b64encode(json.dumps({**header, "alg": "none"}).encode()).rstrip(b"=").decode()
    unsigned = ".".join([unsigned_header, genuine.split(".")[1], ""])

    cases = {
        "forged signature": forged,
        "payload changed": spliced,
        "alg none": unsigned,
        "expired": token_for(directory.school_admin_a, ttl_seconds=-120),
        "wrong audience": token_for(directory.school_admin_a, audience="edu-other-platform"),
        "wrong issuer": token_for(directory.school_admin_a, extra_claims={"iss": "http://evil.example"}),
    }
    for case, token in cases.items():
        response = await client.get(url, headers=bearer(token))
        assert response.status_code == 401, (case, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), case
        assert response.json()["type"].endswith("/unauthenticated"), case
        assert 'error="invalid_token"' in response.headers["www-authenticate"], case
    assert "expired" in (await client.get(url, headers=bearer(cases["expired"]))).json()["detail"]
    assert "audience" in (await client.get(url, headers=bearer(cases["wrong audience"]))).json()["detail"]
    assert "signature" in (await client.get(url, headers=bearer(cases["forged signature"]))).json()["detail"]
    # None of them got as far as reading personal data.
    with directory.database.session() as session:
        reads = session.exec(select(AuditEntry).where(AuditEntry.action == "person.read")).all()
    assert len(reads) == 1
