"""TOTP second factor: administrators enrol at their first login and give a code at every login after."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pyotp
from fastapi import FastAPI
from sqlmodel import col, select
from starlette.requests import Request

from identity.accounts import service as accounts
from identity.accounts import totp
from identity.accounts.models import BrowserSession, TotpCredential
from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.deps import Origin
from identity.people import service as people
from identity.people.models import Person, RoleGrant
from identity.testing import Directory, csrf_token_in, message_in
from identity.web import sessions
from kit.audit import AuditEntry

INITIAL = "Chushi#Mima2026"
PASSWORD = "Lujiang#Bay7"
ADMIN = "13900000003"  # the school admin's username (her phone number)
ORIGIN = Origin(person_id=None, client_id=None, source_ip="203.0.113.9", request_id=None)


async def post(client: httpx.AsyncClient, url: str, **fields: str) -> httpx.Response:
    token = csrf_token_in((await client.get(url if url != "/logout" else "/account")).text)
    return await client.post(url, data={"csrf_token": token, **fields})


def imported_admin(app: FastAPI, directory: Directory) -> None:
    with app.state.database.session() as session:
        row = session.get(Person, directory.school_admin_a.id)
        assert row is not None
        accounts.set_password(session, app.state.settings, row, INITIAL, must_change=True, actor=None)


async def enrol(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> str:
    """First login of the imported school admin: password change, then TOTP set-up; returns the secret."""
    imported_admin(app, directory)
    response = await post(client, "/login", username=ADMIN, password=INITIAL)
    assert response.headers["location"] == "/account/password"
    response = await post(
        client, "/account/password", current_password=INITIAL, new_password=PASSWORD, confirm_password=PASSWORD
    )
    assert response.headers["location"] == "/account/mfa/setup"
    page = await client.get("/account/mfa/setup")
    assert page.status_code == 200
    match = re.search(r'<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>', page.text)
    assert match
    assert re.fullmatch(r"([A-Z2-7]{4} ){7}[A-Z2-7]{4}", match.group(1))  # grouped by four
    assert '<img class="qr" src="data:image/svg+xml' in page.text and 'alt="两步验证二维码' in page.text
    return match.group(1).replace(" ", "")


async def test_admin_enrols_on_first_login(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> None:
    secret = await enrol(client, app, directory)
    page = await client.get("/account/mfa/setup")
    assert "管理员和审计员账号必须启用两步验证" in page.text
    assert secret in page.text.replace(" ", "")  # the same secret on a reload, until confirmed
    # Not signed in before the factor is set up: pages lead back to the set-up.
    assert (await client.get("/account")).headers["location"] == "/account/mfa/setup"
    wrong = await post(client, "/account/mfa/setup", code="000000")
    assert message_in(wrong.text).startswith("验证码不正确。请确认扫描的是本页的二维码")
    before = client.cookies["edu_session"]
    done = await post(client, "/account/mfa/setup", code=pyotp.TOTP(secret).now())
    assert done.status_code == 303 and done.headers["location"] == "/account"
    assert client.cookies["edu_session"] != before  # rotated on elevation
    account = await client.get("/account")
    assert account.status_code == 200 and "方校长" in account.text and "已启用" in account.text

    with app.state.database.session() as session:
        credential = session.get(TotpCredential, directory.school_admin_a.id)
        assert credential is not None and credential.confirmed_at is not None
        assert secret not in credential.secret_cipher  # encrypted at rest
        assert app.state.cipher.decrypt(totp.SECRET_PURPOSE, credential.secret_cipher) == secret
        actions = [
            (e.action, e.result) for e in session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))
            if e.action.startswith(("mfa", "login.success", "account"))
        ]  # fmt: skip
        assert audit.verify_chain(session).intact
    assert actions == [
        ("account.password_set", "success"),
        ("account.password_change", "success"),
        ("mfa.enrol", "denied"),
        ("mfa.enrol", "success"),
        ("login.success", "success"),
    ]


async def test_code_at_every_later_login_and_replay_refused(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    secret = await enrol(client, app, directory)
    enrolment_code = pyotp.TOTP(secret).now()
    assert (await post(client, "/account/mfa/setup", code=enrolment_code)).headers["location"] == "/account"
    await post(client, "/logout")

    response = await post(client, "/login", username=ADMIN, password=PASSWORD)
    assert response.headers["location"] == "/login/mfa"
    page = await client.get("/login/mfa")
    assert "6 位验证码" in page.text and 'autocomplete="one-time-code"' in page.text
    # Administrators cannot step around the code.
    for url in ("/account", "/account/password", "/account/mfa/setup", "/login/continue?next=/account"):
        response = await client.get(url)
        assert response.status_code in (200, 303)
        if response.status_code == 303:
            assert response.headers["location"] == "/login/mfa", url
    with app.state.database.session() as session:
        assert sessions.signed_in(_request(app, client), session) is None

    replayed = await post(client, "/login/mfa", code=enrolment_code)  # the code used to enrol, same time step
    assert message_in(replayed.text) == "该验证码已经用过，请等待应用显示下一个验证码后再输入。"
    next_step = pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30))  # clock drift of one step is fine
    before = client.cookies["edu_session"]
    response = await post(client, "/login/mfa", code=" ".join([next_step[:3], next_step[3:]]))
    assert response.status_code == 303 and response.headers["location"] == "/account"
    assert client.cookies["edu_session"] != before
    with app.state.database.session() as session:
        who = sessions.signed_in(_request(app, client), session)
        assert who is not None and who.amr == ["pwd", "otp", "mfa"]
        assert session.exec(select(AuditEntry).where(AuditEntry.action == "mfa.verified")).one()
    # The same code again, in a new login: replay.
    await post(client, "/logout")
    await post(client, "/login", username=ADMIN, password=PASSWORD)
    assert "已经用过" in message_in((await post(client, "/login/mfa", code=next_step)).text)


def test_codes_checked_with_drift_and_replay(app: FastAPI, settings: IdentitySettings, directory: Directory) -> None:
    cipher = app.state.cipher
    now = datetime(2026, 3, 2, 8, 0, 10, tzinfo=UTC)
    with app.state.database.session() as session:
        person = session.get(Person, directory.school_admin_a.id)
        assert person is not None
        secret = totp.pending_secret(session, cipher, person)
        code = pyotp.TOTP(secret)
        assert totp.confirm_enrolment(session, cipher, person, code.at(now), origin=ORIGIN, now=now).ok

        def check(at: datetime, moment: datetime) -> str:
            return totp.verify(session, settings, cipher, person, code.at(at), origin=ORIGIN, now=moment).status

        later = now + timedelta(minutes=5)
        assert check(later - timedelta(seconds=60), later) == "invalid"  # two steps old
        assert check(later - timedelta(seconds=30), later) == "ok"  # one step old
        assert check(later - timedelta(seconds=30), later) == "replayed"
        assert check(later, later) == "ok"
        assert check(later - timedelta(seconds=30), later) == "replayed"  # older than the last one used
        assert check(later + timedelta(seconds=60), later) == "invalid"  # two steps ahead
        assert totp.verify(session, settings, cipher, person, "abc", origin=ORIGIN, now=later).status == "invalid"


async def test_wrong_codes_count_toward_the_lockout(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    secret = await enrol(client, app, directory)
    await post(client, "/account/mfa/setup", code=pyotp.TOTP(secret).now())
    await post(client, "/logout")
    await post(client, "/login", username=ADMIN, password=PASSWORD)
    for _ in range(4):
        assert message_in((await post(client, "/login/mfa", code="000000")).text).startswith("验证码不正确")
    locked = await post(client, "/login/mfa", code="000000")
    assert message_in(locked.text).startswith("失败次数过多，账号已暂时锁定")
    assert "edu_session" not in client.cookies
    again = await post(client, "/login", username=ADMIN, password=PASSWORD)
    assert "账号已暂时锁定" in message_in(again.text)
    with app.state.database.session() as session:
        row = session.exec(select(BrowserSession).where(BrowserSession.end_reason == "locked")).one()
        assert row.person_id == directory.school_admin_a.id
        assert len(session.exec(select(AuditEntry).where(AuditEntry.action == "mfa.failure")).all()) == 5


def test_who_needs_a_second_factor(app: FastAPI, directory: Directory) -> None:
    with app.state.database.session() as session:
        for admin in (directory.city_admin, directory.district_admin_a, directory.school_admin_a, directory.auditor):
            assert accounts.mfa_required(session, admin.id)
        assert not accounts.mfa_required(session, directory.teacher_a.id)
        grant = session.exec(select(RoleGrant).where(RoleGrant.person_id == directory.school_admin_b.id)).one()
        people.revoke_role(session, grant)
        assert not accounts.mfa_required(session, directory.school_admin_b.id)


async def test_a_role_granted_during_a_session_asks_for_the_factor(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    with app.state.database.session() as session:
        row = session.get(Person, directory.teacher_a.id)
        assert row is not None
        accounts.set_password(session, app.state.settings, row, PASSWORD, must_change=False, actor=None)
    assert (await post(client, "/login", username="13900000006", password=PASSWORD)).status_code == 303
    assert (await client.get("/account")).status_code == 200
    with app.state.database.session() as session:
        teacher = session.get(Person, directory.teacher_a.id)
        assert teacher is not None
        people.grant_role(session, teacher, role="school_admin", org_id=directory.school_a.id, granted_by=None)
    assert (await client.get("/account")).headers["location"] == "/account/mfa/setup"


def _request(app: FastAPI, client: httpx.AsyncClient) -> Request:
    token = client.cookies["edu_session"]
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                             "headers": [(b"cookie", f"edu_session={token}".encode())], "app": app,
                             "client": ("127.0.0.1", 5000)})  # fmt: skip
