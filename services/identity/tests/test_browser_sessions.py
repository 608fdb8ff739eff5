"""Browser sessions: a hashed cookie token, idle and absolute timeouts, logout, and what the OAuth side reads."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI, Response
from sqlmodel import col, select
from starlette.requests import Request

from identity.accounts import service as accounts
from identity.accounts.models import BrowserSession
from identity.people import service as people
from identity.people.models import Person
from identity.testing import Directory
from identity.web import sessions
from kit.audit import AuditEntry

PASSWORD = "Xiamen#Bay2026"


def csrf_token_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


async def signed_in_teacher(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> str:
    """Log the teacher in through the form; returns the session cookie's token."""
    with app.state.database.session() as session:
        row = session.get(Person, directory.teacher_a.id)
        assert row is not None
        accounts.set_password(session, app.state.settings, row, PASSWORD, must_change=False, actor=None)
    token = csrf_token_in((await client.get("/login")).text)
    response = await client.post("/login", data={"csrf_token": token, "username": "13900000006", "password": PASSWORD})
    assert response.status_code == 303
    return str(client.cookies["edu_session"])


def the_session(app: FastAPI) -> BrowserSession:
    with app.state.database.session() as session:
        row = session.exec(select(BrowserSession).order_by(col(BrowserSession.created_at).desc())).first()
        assert row is not None
        return row


def shift_session(app: FastAPI, **ago: timedelta) -> None:
    """Move a session's times into the past instead of waiting."""
    with app.state.database.session() as session:
        row = session.exec(select(BrowserSession)).one()
        for name, delta in ago.items():
            setattr(row, name, datetime.now(UTC) - delta)
        session.add(row)


def page_request(app: FastAPI, token: str | None) -> Request:
    headers = [(b"cookie", f"edu_session={token}".encode())] if token else []
    return Request({"type": "http", "method": "GET", "path": "/oauth/authorize", "query_string": b"",
                    "headers": headers, "app": app, "client": ("127.0.0.1", 5000)})  # fmt: skip


async def test_only_the_tokens_hash_is_stored(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> None:
    token = await signed_in_teacher(client, app, directory)
    assert len(token) == 43  # 256 bits, base64url
    row = the_session(app)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.person_id == directory.teacher_a.id and row.source_ip == "127.0.0.1"
    assert not row.mfa_required and not row.password_change_pending


async def test_signed_in_is_what_the_oauth_side_reads(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    with app.state.database.session() as session:
        assert sessions.signed_in(page_request(app, None), session) is None
    token = await signed_in_teacher(client, app, directory)
    with app.state.database.session() as session:
        who = sessions.signed_in(page_request(app, token), session)
        assert sessions.signed_in(page_request(app, token[:-1] + "x"), session) is None
    assert who is not None
    assert who.person.id == directory.teacher_a.id and who.amr == ["pwd"]
    assert who.session_id == the_session(app).id
    assert datetime.now(UTC) - who.authenticated_at < timedelta(seconds=30)

    # prompt=login: the login page ends the session and asks again.
    redirect = sessions.login_redirect(page_request(app, token), "/oauth/authorize?client_id=a&x=1", force=True)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=%2Foauth%2Fauthorize%3Fclient_id%3Da%26x%3D1&prompt=login"
    assert redirect.headers["cache-control"] == "no-store"
    page = await client.get(redirect.headers["location"])
    assert page.status_code == 200 and "登录名" in page.text
    assert the_session(app).end_reason == "reauth"
    assert "edu_session" not in client.cookies
    plain = sessions.login_redirect(page_request(app, None), "https://evil.example/")
    assert plain.headers["location"] == "/login"


async def test_end_browser_session_for_rp_initiated_logout(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    token = await signed_in_teacher(client, app, directory)
    response = Response()
    with app.state.database.session() as session:
        assert sessions.end_browser_session(page_request(app, token), session, response) == directory.teacher_a.id
    assert 'edu_session=""' in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]
    assert the_session(app).end_reason == "logout"
    with app.state.database.session() as session:
        assert sessions.signed_in(page_request(app, token), session) is None
        assert sessions.end_browser_session(page_request(app, token), session, Response()) is None


async def test_idle_timeout(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> None:
    await signed_in_teacher(client, app, directory)
    idle = app.state.settings.session_idle_seconds
    shift_session(app, last_seen_at=timedelta(seconds=idle - 90))
    assert (await client.get("/account")).status_code == 200  # still within the idle time ...
    assert datetime.now(UTC) - the_session(app).last_seen_at.replace(tzinfo=UTC) < timedelta(seconds=30)  # touched
    shift_session(app, last_seen_at=timedelta(seconds=idle + 1))
    response = await client.get("/account")
    assert response.status_code == 303 and response.headers["location"] == "/login?notice=expired"
    assert "登录已超时，请重新登录。" in (await client.get(response.headers["location"])).text
    assert the_session(app).end_reason == "idle"
    assert (await client.get("/account")).headers["location"] == "/login"  # ended for good
    with app.state.database.session() as session:
        expired = session.exec(select(AuditEntry).where(AuditEntry.action == "session.expired")).one()
        assert expired.target_id == directory.teacher_a.id and '"reason": "idle"' in expired.detail


async def test_absolute_timeout(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> None:
    await signed_in_teacher(client, app, directory)
    shift_session(app, created_at=timedelta(seconds=app.state.settings.session_absolute_seconds + 1))
    assert (await client.get("/account")).headers["location"] == "/login?notice=expired"
    assert the_session(app).end_reason == "absolute"


async def test_logout_ends_the_session_on_the_server(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    token = await signed_in_teacher(client, app, directory)
    form = {"csrf_token": csrf_token_in((await client.get("/account")).text)}
    response = await client.post("/logout", data=form)
    assert response.status_code == 303 and response.headers["location"] == "/login?notice=logged_out"
    assert "edu_session" not in client.cookies
    client.cookies.set("edu_session", token, domain="identity.test")  # a copied cookie is worthless now
    assert (await client.get("/account")).headers["location"] == "/login"
    assert the_session(app).end_reason == "logout"


async def test_deactivation_signs_the_person_out(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> None:
    await signed_in_teacher(client, app, directory)
    with app.state.database.session() as session:
        row = session.get(Person, directory.teacher_a.id)
        assert row is not None
        people.deactivate(session, row, reason="left")
    assert (await client.get("/account")).headers["location"] == "/login"
    assert the_session(app).end_reason == "inactive"


async def test_password_change_rotates_the_token_and_ends_other_sessions(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    token = await signed_in_teacher(client, app, directory)
    async with httpx.AsyncClient(transport=client._transport, base_url="http://identity.test") as laptop:
        other_token = await signed_in_teacher(laptop, app, directory)
        page = await client.get("/account/password")
        assert "这是您第一次登录" not in page.text
        response = await client.post("/account/password", data={
            "csrf_token": csrf_token_in(page.text), "current_password": PASSWORD,
            "new_password": "Lujiang#Bay7", "confirm_password": "Lujiang#Bay7",
        })  # fmt: skip
        assert response.headers["location"] == "/account?notice=password_changed"
        assert client.cookies["edu_session"] != token
        assert "密码已修改" in (await client.get("/account?notice=password_changed")).text
        assert (await laptop.get("/account")).headers["location"] == "/login"
    with app.state.database.session() as session:
        assert (
            session.exec(select(BrowserSession).where(BrowserSession.token_hash == _hash(other_token))).one().ended_at
        )
        assert session.exec(select(BrowserSession).where(BrowserSession.token_hash == _hash(token))).first() is None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def test_cookies_are_secure_when_published_over_https(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"public_base_url": "https://id.xm.edu.example"})
    with app.state.database.session() as session:
        row = session.get(Person, directory.teacher_a.id)
        assert row is not None
        accounts.set_password(session, app.state.settings, row, PASSWORD, must_change=False, actor=None)
    async with httpx.AsyncClient(transport=client._transport, base_url="https://identity.test") as secure:
        page = await secure.get("/login")
        assert "Secure" in page.headers["set-cookie"]  # the pre-session CSRF cookie
        form = {"csrf_token": csrf_token_in(page.text), "username": "13900000006", "password": PASSWORD}
        cookie = (await secure.post("/login", data=form)).headers["set-cookie"]
    assert "edu_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
