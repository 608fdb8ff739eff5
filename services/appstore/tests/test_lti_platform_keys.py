"""The LTI platform's signing keys: one is made on first use and stored encrypted; every key not retired is
published at /lti/jwks, so a newer key can sign while tools still hold the older one."""

from __future__ import annotations

import json

import httpx
from fastapi import FastAPI
from joserfc.jwk import RSAKey
from joserfc.jws import extract_compact
from sqlmodel import select

from appstore.launch.keys import PlatformKeys
from appstore.launch.models import PlatformKey
from appstore.testing_launch import (
    add_class,
    auth_request,
    form_fields,
    install,
    listed_app,
    lti_launch,
    manifest,
    start,
)
from kit.testing import TestCity


async def test_the_first_key_is_made_on_first_use_and_only_its_public_half_is_published(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.get("/lti/jwks")

    assert response.status_code == 200
    [key] = response.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    with app.state.database.session() as session:
        [row] = session.exec(select(PlatformKey)).all()
    assert row.kid == key["kid"]
    assert "PRIVATE KEY" not in row.private_key_cipher  # encrypted at rest
    assert (await client.get("/lti/jwks")).json() == response.json()  # the same key, not a new one per call


async def test_a_newer_key_signs_while_the_older_one_stays_published(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    old = (await client.get("/lti/jwks")).json()["keys"][0]["kid"]
    newer = RSAKey.generate_key(2048)
    with app.state.database.session() as session:
        public = newer.as_dict(private=False, alg="RS256", use="sig")
        public["kid"] = newer.thumbprint()
        session.add(
            PlatformKey(
                kid=newer.thumbprint(),
                private_key_cipher=app.state.cipher.encrypt("lti_platform_key", newer.as_pem(private=True).decode()),
                public_jwk=json.dumps(public),
            )
        )
    keys: PlatformKeys = app.state.lti_platform_keys
    keys.forget()  # what a rotation does after adding the key
    quiz = listed_app(app.state.database, manifest(launch=lti_launch()))
    installation = install(app.state.database, city, quiz, city.school_a1)
    class_id = add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher",))
    launch = await start(client, city, "a1_teacher", installation, class_id)

    _, fields = form_fields(await client.get("/lti/authorize", params=auth_request(launch)))

    assert extract_compact(fields["id_token"].encode()).headers()["kid"] == newer.thumbprint()
    published = {key["kid"] for key in (await client.get("/lti/jwks")).json()["keys"]}
    assert published == {old, newer.thumbprint()}
