"""A school administrator manages the school's apps in the portal (with the real identity provider behind the
installation): installs an app with the scopes and grades chosen on its page, uninstalls it, and approves a
teacher's request, which installs the app."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from appstore.config import AppStoreSettings
from appstore.installations.models import AppRequest, Installation
from appstore.testing_identity import IdentityServer, identity_server
from kit.testing import TestCity

from .store_factories import manifest, publish_app
from .web_factories import PORTAL, form_token, sign_in

__all__ = ["identity_server"]


@pytest.fixture
def settings(settings: AppStoreSettings, identity_server: IdentityServer) -> AppStoreSettings:
    return identity_server.configure(settings).model_copy(update={"portal_base_url": f"http://appstore.test{PORTAL}"})


def installations(app: FastAPI) -> list[dict[str, object]]:
    with app.state.database.read_session() as session:
        return [row.model_dump() for row in session.exec(select(Installation)).all()]


async def test_install_with_chosen_scopes_and_grades_then_uninstall(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    store_app = await publish_app(client, city, manifest())
    sign_in(app, client, city, "a1_admin")
    detail = await client.get(f"{PORTAL}/catalog/{store_app.app_id}")
    assert "安装到本校（春晓第一小学）" in detail.text
    assert "申请本校安装" not in detail.text

    installed = await client.post(
        f"{PORTAL}/catalog/{store_app.app_id}/install",
        data={"csrf_token": form_token(detail), "school_id": city.school_a1, "scopes": ["openid"], "grades": ["05"]},
    )
    assert installed.status_code == 303, installed.text
    assert installed.headers["location"] == f"{PORTAL}/school/{city.school_a1}/apps"
    [row] = installations(app)
    assert (row["school_id"], row["scopes"], row["status"]) == (city.school_a1, "openid", "active")
    assert json.loads(str(row["grades"])) == ["05"]
    school_page = await client.get(installed.headers["location"])
    assert "口算小达人" in school_page.text and "卸载" in school_page.text

    again = await client.post(
        f"{PORTAL}/catalog/{store_app.app_id}/install",
        data={"csrf_token": form_token(detail), "school_id": city.school_a1, "scopes": ["openid"]},
    )
    assert again.status_code == 409 and 'role="alert"' in again.text  # already installed: said, not a 500
    assert len(installations(app)) == 1

    removed = await client.post(
        f"{PORTAL}/school/{city.school_a1}/apps/{row['id']}/uninstall", data={"csrf_token": form_token(school_page)}
    )
    assert removed.status_code == 303, removed.text
    assert "本校还没有安装应用" in (await client.get(removed.headers["location"])).text
    assert installations(app)[0]["status"] == "removed"


async def test_approving_a_teachers_request_installs_the_app(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    store_app = await publish_app(client, city, manifest())
    sign_in(app, client, city, "a1_teacher")
    detail = await client.get(f"{PORTAL}/catalog/{store_app.app_id}")
    asked = await client.post(
        f"{PORTAL}/catalog/{store_app.app_id}/request",
        data={"csrf_token": form_token(detail), "school_id": city.school_a1, "reason": "数学组想用来做口算练习"},
    )
    assert asked.status_code == 303, asked.text

    client.cookies.clear()
    sign_in(app, client, city, "a1_admin")
    school_page = await client.get(f"{PORTAL}/school/{city.school_a1}/apps")
    assert "数学组想用来做口算练习" in school_page.text
    with app.state.database.read_session() as session:
        request_id = session.exec(select(AppRequest.id)).one()
    approved = await client.post(
        f"{PORTAL}/school/{city.school_a1}/requests/{request_id}/approve",
        data={"csrf_token": form_token(school_page), "note": ""},
    )
    assert approved.status_code == 303, approved.text
    [row] = installations(app)
    assert (row["school_id"], row["status"]) == (city.school_a1, "active")

    client.cookies.clear()
    sign_in(app, client, city, "a1_teacher")
    mine = await client.get(PORTAL)
    assert "口算小达人" in mine.text and "已批准" in mine.text
