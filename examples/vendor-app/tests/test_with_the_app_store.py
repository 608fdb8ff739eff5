"""The sample app as the LTI 1.3 tool of the real app store: a teacher launches it from a class, the app store's
authorize endpoint posts the id_token, the sample app (PyLTI1p3) validates it against the store's JWKS and reads
the class roster through the store's NRPS endpoint with its signed client assertion.

Both run as real HTTP servers; the app store is mounted under the gateway's /api/appstore prefix, as vendors
reach it. The listing and installation come from the app store's own test factories.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appstore import testing_launch
from appstore.subjects import user_pseudonym
from appstore.testing_launch import ServedStore, form_fields, served_app_store
from kit.natsserver import NatsServer
from kit.testing import free_port, live_server
from vendor_app.app import create_app
from vendor_app.config import Settings

ROOT = Path(__file__).resolve().parents[3]
PREFIX = "/api/appstore"


@pytest.fixture
async def store(database_url: str, nats_server: NatsServer) -> AsyncIterator[ServedStore]:
    async with served_app_store(database_url, nats_server.url, run_background_workers=False) as served:
        yield served


def sample_lti_manifest(tool: str) -> dict[str, Any]:
    """The sample app's own LTI manifest, with its URLs where the test serves it."""
    text = (ROOT / "examples" / "vendor-app" / "manifest-lti.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text.replace("http://127.0.0.1:8110", tool))
    return document


async def test_a_teacher_opens_the_sample_app_from_a_class_and_sees_the_roster(
    store: ServedStore, tmp_path: Path
) -> None:
    factories = testing_launch
    city, database = store.city, store.app.state.database
    tool_port = free_port()
    tool = f"http://127.0.0.1:{tool_port}"
    document = sample_lti_manifest(tool)
    homework = factories.listed_app(database, document)
    scopes = " ".join(sorted(request["scope"] for request in document["scopes"]))
    installation = factories.install(database, city, homework, city.school_a1, scopes=scopes)
    class_id = factories.add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher",))
    for key, name in (("p1", "刘小明"), ("p2", "陈小雨")):
        factories.add_pupil(city, key, name, city.school_a1, class_id)
    settings = Settings(
        port=tool_port, base_url=tool, platform_url=store.base, lti_client_id=homework.client_id,
        tool_key_file=tmp_path / "tool-key.pem",
    )  # fmt: skip

    started = await store.client.post(
        "/launches", json={"installation_id": installation, "class_id": class_id},
        headers=city.token("a1_teacher", "apps.read"),
    )  # fmt: skip
    assert started.status_code == 201, started.text

    with live_server(create_app(settings), port=tool_port):
        async with httpx.AsyncClient(timeout=30) as browser:
            login = await browser.get(started.json()["url"])  # the sample app's login initiation
            assert login.status_code == 302, login.text
            assert login.headers["location"].startswith(f"{store.base}{PREFIX}/lti/authorize?")
            action, fields = form_fields(await browser.get(login.headers["location"]))
            assert action == f"{tool}/lti/launch" and "id_token" in fields
            launched = await browser.post(action, data=fields)
            assert launched.status_code == 303, launched.text
            page = await browser.get(f"{tool}{launched.headers['location']}")
            assert page.status_code == 200, page.text

            salt = store.settings.pairwise_salt.get_secret_value()
            assert user_pseudonym(salt, homework.id, city.people["a1_teacher"].id) in page.text
            assert "五年级2班" in page.text
            assert installation in page.text  # the deployment is the school's installation
            assert "班级名单（共 3 人" in page.text, page.text
            for name in ("王老师", "刘小明", "陈小雨"):
                assert name in page.text
            assert page.text.count("<td>学生</td>") == 2

            # The platform's answer cannot be posted twice: the sample app refuses the replayed id_token.
            replayed = await browser.post(action, data=fields)
            assert replayed.status_code == 400
