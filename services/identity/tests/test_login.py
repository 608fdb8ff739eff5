"""Logging in through the pages: redirects, one message for every kind of failure, lockout, throttling, CSRF, audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from argon2 import PasswordHasher, Type
from fastapi import FastAPI
from sqlmodel import col, select

from identity.accounts import passwords
from identity.accounts import service as accounts
from identity.accounts.models import LoginThrottle
from identity.accounts.throttle import IpThrottle
from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.deps import Origin
from identity.people import service as people
from identity.people.models import Person
from identity.testing import Directory, csrf_token_in, message_in
from identity.web.sessions import safe_next
from kit.audit import AuditEntry

PASSWORD = "Xiamen#Bay2026"
WRONG = "Wrong#Pass1"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
ORIGIN = Origin(person_id=None, client_id=None, source_ip="203.0.113.9", request_id=None)


def give_password(app: FastAPI, person: Person, password: str = PASSWORD, *, must_change: bool = False) -> None:
    with app.state.database.session() as session:
        row = session.get(Person, person.id)
        accounts.set_password(session, app.state.settings, row, password, must_change=must_change, actor=None)


async def login(client: httpx.AsyncClient, username: str, password: str, next_url: str | None = None) -> httpx.Response:
    token = csrf_token_in((await client.get("/login")).text)
    form = {"csrf_token": token, "username": username, "password": password}
    if next_url is not None:
        form["next"] = next_url
    return await client.post("/login", data=form)


def audit_entries(app: FastAPI, action: str) -> list[AuditEntry]:
    with app.state.database.session() as session:
        return list(session.exec(select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.id))))


async def test_login_page_in_chinese_with_an_english_switch_and_security_headers(
    client: httpx.AsyncClient, directory: Directory
) -> None:
    response = await client.get("/login", params={"next": "/account/password"})
    assert response.status_code == 200
    html = response.text
    assert '<html lang="zh-CN">' in html
    assert '<label for="username">登录名</label>' in html and '<label for="password">密码</label>' in html
    assert 'href="/login?next=%2Faccount%2Fpassword&amp;lang=en"' in html  # the switch keeps ``next``
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "edu_csrf" in client.cookies
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://', "")  # no third-party assets

    english = await client.get("/login", params={"lang": "en"})
    assert '<html lang="en">' in english.text and "Sign in to" in english.text
    assert "lang=en" in english.headers["set-cookie"]
    assert '<html lang="en">' in (await client.get("/login")).text  # remembered in the cookie
    assert "登录名" in (await client.get("/login?lang=zh-CN")).text

    stylesheet = await client.get("/static/identity.css")
    assert stylesheet.status_code == 200 and "font-family" in stylesheet.text


async def test_accept_language_picks_english_and_json_routes_get_no_page_headers(
    client: httpx.AsyncClient, directory: Directory
) -> None:
    response = await client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9,zh;q=0.5"})
    assert "Username" in response.text
    health = await client.get("/health/live")
    assert "content-security-policy" not in health.headers


async def test_valid_login_goes_to_next(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> None:
    give_password(app, directory.teacher_a)
    response = await login(client, "13900000006", PASSWORD, "/account/password?from=menu")
    assert response.status_code == 303
    assert response.headers["location"] == "/account/password?from=menu"
    cookie = response.headers["set-cookie"]
    assert "edu_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # the test service is published over plain http
    account = await client.get("/account")
    assert account.status_code == 200
    assert "林慧敏" in account.text and "我的应用授权" in account.text and 'href="/account/apps"' in account.text
    assert "教师（滨海小学）" in account.text


async def test_next_outside_the_pages_is_reached_through_a_fresh_navigation(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    """Chromium applies form-action to the posted form's redirects: /oauth/authorize may leave the site."""
    give_password(app, directory.teacher_a)
    target = "/oauth/authorize?client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=x"
    response = await login(client, "13900000006", PASSWORD, target)
    assert response.status_code == 303
    continuing = await client.get(response.headers["location"])
    assert continuing.status_code == 200
    escaped = target.replace("&", "&amp;")
    assert f'<meta http-equiv="refresh" content="0;url={escaped}">' in continuing.text
    # Already signed in: the login page sends the browser straight on.
    again = await client.get("/login", params={"next": "/account"})
    assert again.status_code == 303 and again.headers["location"] == "/account"


@pytest.mark.parametrize(
    "next_url",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "evil", "/a\r\nb", ""],
)
def test_open_redirect_refused(next_url: str) -> None:
    assert safe_next(next_url) == "/account"


async def test_open_redirect_refused_through_the_form(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    give_password(app, directory.teacher_a)
    response = await login(client, "13900000006", PASSWORD, "//evil.example/steal")
    assert response.status_code == 303 and response.headers["location"] == "/account"
    page = await client.get("/login", params={"next": "https://evil.example/"})
    assert page.status_code == 303 and page.headers["location"] == "/account"


async def test_failures_look_the_same_whatever_the_reason(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    give_password(app, directory.teacher_a)
    give_password(app, directory.school_admin_b)
    with app.state.database.session() as session:
        row = session.get(Person, directory.school_admin_b.id)
        people.deactivate(session, row, reason="left the school")
    unknown = await login(client, "13999999999", PASSWORD)
    wrong = await login(client, "13900000006", "Xiamen#Bay2025")
    disabled_wrong = await login(client, "13900000004", "Xiamen#Bay2025")
    never_set = await login(client, "13900000005", PASSWORD)  # the auditor has no password yet
    pages = [unknown, wrong, disabled_wrong, never_set]
    assert {page.status_code for page in pages} == {200}
    assert {message_in(page.text) for page in pages} == {
        "登录名或密码不正确。请检查后重试；连续多次失败，账号将被暂时锁定。"
    }
    assert "edu_session" not in client.cookies
    # Only once the password is right may the account say it is deactivated.
    disabled_right = await login(client, "13900000004", PASSWORD)
    assert "该账号已停用" in message_in(disabled_right.text)
    assert "edu_session" not in client.cookies
    english = await client.get("/login?lang=en")
    assert english.status_code == 200
    assert message_in((await login(client, "13999999999", PASSWORD)).text).startswith(
        "The username or password is incorrect."
    )


def test_every_failure_costs_one_argon2_verification(
    app: FastAPI, settings: IdentitySettings, directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown names are checked against a dummy hash, so they take as long as a wrong password."""
    give_password(app, directory.teacher_a)
    give_password(app, directory.school_admin_b)
    with app.state.database.session() as session:
        row = session.get(Person, directory.school_admin_b.id)
        assert row is not None
        people.deactivate(session, row, reason="left")
    verified: list[str] = []
    real_verify = PasswordHasher.verify

    def counting_verify(self: PasswordHasher, password_hash: str, password: str) -> bool:
        verified.append(password_hash[:9])
        return real_verify(self, password_hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    for username in ("13999999999", "13900000006", "13900000004", "13900000005"):  # unknown, wrong, disabled, unset
        with app.state.database.session() as session:
            outcome = accounts.authenticate(
                session, settings, app.state.cipher, username=username, password=WRONG, origin=ORIGIN
            )
        assert outcome.status == "invalid" and outcome.person is None
        assert verified == ["$argon2id"], username
        verified.clear()


async def test_lockout_after_five_failures_refuses_even_the_right_password(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    give_password(app, directory.teacher_a)
    for _ in range(4):
        assert "不正确" in message_in((await login(client, "13900000006", "Wrong#Pass1")).text)
    fifth = message_in((await login(client, "13900000006", "Wrong#Pass1")).text)
    assert fifth.startswith("失败次数过多，账号已暂时锁定") and "北京时间" in fifth
    right = await login(client, "13900000006", PASSWORD)
    assert "账号已暂时锁定" in message_in(right.text) and "edu_session" not in client.cookies
    # A name nobody holds locks in exactly the same way: lockout says nothing about existence.
    for _ in range(5):
        page = await login(client, "13911112222", "Wrong#Pass1")
    assert message_in(page.text).startswith("失败次数过多，账号已暂时锁定")
    (lockout, ghost) = audit_entries(app, "login.lockout")
    assert lockout.target_id == directory.teacher_a.id and json.loads(lockout.detail)["seconds"] == 900
    assert ghost.target_id is None and ghost.actor_id is None

    # The lock runs out: the right password works again.
    with app.state.database.session() as session:
        for row in session.exec(select(LoginThrottle)):
            row.locked_until = datetime.now(UTC) - timedelta(seconds=1)
            session.add(row)
    response = await login(client, "13900000006", PASSWORD)
    assert response.status_code == 303 and "edu_session" in client.cookies


def test_lockouts_escalate_and_reset_after_a_clean_day(
    app: FastAPI, settings: IdentitySettings, directory: Directory
) -> None:
    give_password(app, directory.teacher_a)
    cipher = app.state.cipher

    def attempt(at: datetime, password: str = WRONG) -> accounts.LoginOutcome:
        with app.state.database.session() as session:
            return accounts.authenticate(
                session, settings, cipher, username="13900000006", password=password, origin=ORIGIN, now=at
            )

    def lock_for(start: datetime) -> timedelta:
        outcomes = [attempt(start + timedelta(seconds=i)) for i in range(settings.login_failure_threshold)]
        assert [o.status for o in outcomes] == ["invalid"] * 4 + ["locked"]
        until = outcomes[-1].locked_until
        assert until is not None
        return until - (start + timedelta(seconds=4))

    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert lock_for(t0) == timedelta(minutes=15)
    assert attempt(t0 + timedelta(minutes=10), PASSWORD).status == "locked"
    assert attempt(t0 + timedelta(minutes=16), PASSWORD).ok  # a success does not reset the escalation ...
    assert lock_for(t0 + timedelta(minutes=20)) == timedelta(hours=1)
    assert lock_for(t0 + timedelta(hours=2)) == timedelta(hours=4)
    assert lock_for(t0 + timedelta(hours=7)) == timedelta(hours=24)
    assert lock_for(t0 + timedelta(hours=32)) == timedelta(hours=24)  # the last length repeats
    # ... a day without failures (after the last lock ran out) does.
    assert lock_for(t0 + timedelta(hours=32 + 24 + 25)) == timedelta(minutes=15)
    # Failures spread wider than the window never add up to a lock.
    start = t0 + timedelta(days=10)
    statuses = [attempt(start + timedelta(minutes=16 * i)).status for i in range(8)]
    assert statuses == ["invalid"] * 8


async def test_ip_throttle_answers_429(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> None:
    app.state.login_throttle = IpThrottle(3, 300)
    for number in range(3):
        assert (await login(client, f"1380000000{number}", "Wrong#Pass1")).status_code == 200
    refused = await login(client, "13900000006", PASSWORD)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 300
    assert "尝试过于频繁" in refused.text and "5 分钟后再试" in refused.text
    assert refused.headers["content-security-policy"] == CSP


def test_ip_throttle_window() -> None:
    throttle = IpThrottle(2, 60)
    throttle.record_failure("198.51.100.7", now=0)
    throttle.record_failure("198.51.100.7", now=10)
    assert throttle.retry_after("198.51.100.7", now=11) == 49
    assert throttle.retry_after("198.51.100.8", now=11) is None  # per address
    assert throttle.retry_after("198.51.100.7", now=60.5) is None  # the first failure left the window
    small = IpThrottle(1, 60, max_addresses=2)
    for address in ("a", "b", "c"):
        small.record_failure(address, now=0)
    assert small.retry_after("a", now=1) is None and small.retry_after("c", now=1) == 59  # bounded memory


async def test_csrf_refused(client: httpx.AsyncClient, app: FastAPI, directory: Directory) -> None:
    give_password(app, directory.teacher_a)
    missing = await client.post("/login", data={"username": "13900000006", "password": PASSWORD})
    assert missing.status_code == 403
    assert "页面已过期" in missing.text and "请刷新页面后重新提交" in missing.text
    assert missing.headers["content-security-policy"] == CSP
    # A token of another browser (another pre-session cookie) does not fit this one.
    async with httpx.AsyncClient(transport=client._transport, base_url="http://identity.test") as other:
        foreign = csrf_token_in((await other.get("/login")).text)
    await client.get("/login")
    forged = await client.post("/login", data={"csrf_token": foreign, "username": "13900000006", "password": PASSWORD})
    assert forged.status_code == 403
    # A token from before the login is not valid after it: it was bound to no session.
    before = csrf_token_in((await client.get("/login")).text)
    assert (await login(client, "13900000006", PASSWORD)).status_code == 303
    stale = await client.post("/logout", data={"csrf_token": before})
    assert stale.status_code == 403
    assert (await client.get("/account")).status_code == 200  # still signed in
    assert audit_entries(app, "logout") == []


async def test_forced_password_change_on_first_login(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    give_password(app, directory.teacher_a, "Chushi#Mima2026", must_change=True)
    response = await login(client, "13900000006", "Chushi#Mima2026", "/account")
    assert response.headers["location"] == "/account/password"
    # Not signed in until the password is changed: every page leads back to the change.
    assert (await client.get("/account")).headers["location"] == "/account/password"
    page = await client.get("/account/password")
    assert "这是您第一次登录" in page.text
    token = csrf_token_in(page.text)

    async def change(new: str, again: str | None = None, current: str = "Chushi#Mima2026") -> httpx.Response:
        form = {"csrf_token": token, "current_password": current, "new_password": new, "confirm_password": again or new}
        return await client.post("/account/password", data=form)

    weak = await change("woaini1314")
    assert message_in(weak.text) == "新密码不符合要求："
    assert "请至少包含以下四类中的三类" in weak.text and "这是最常见的密码之一" in weak.text
    assert "新密码不能与当前密码相同" in (await change("Chushi#Mima2026")).text
    assert "两次输入的新密码不一致" in (await change("Lujiang#Bay7", "Lujiang#Bay8")).text
    assert message_in((await change("Lujiang#Bay7", current="Nope#2026x")).text) == "当前密码不正确。"
    done = await change("Lujiang#Bay7")
    assert done.status_code == 303 and done.headers["location"] == "/account"
    assert (await client.get("/account")).status_code == 200
    with app.state.database.session() as session:
        person = session.get(Person, directory.teacher_a.id)
        assert person is not None
        assert not person.must_change_password and person.password_changed_at is not None
    assert [json.loads(e.detail) for e in audit_entries(app, "account.password_change") if e.result == "success"] == [
        {"forced": True}
    ]
    # English messages for the same rules.
    await client.get("/account/password?lang=en")
    english = await client.post(
        "/account/password",
        data={"csrf_token": csrf_token_in((await client.get("/account/password")).text),
              "current_password": "Lujiang#Bay7", "new_password": "short", "confirm_password": "short"},
    )  # fmt: skip
    assert "Too short: use at least 8 characters (this one has 5)." in english.text


async def test_password_rehashed_at_login_when_the_cost_changed(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    old = PasswordHasher(time_cost=2, memory_cost=8 * 1024, parallelism=1, type=Type.ID)
    with app.state.database.session() as session:
        person = session.get(Person, directory.teacher_a.id)
        assert person is not None
        person.password_hash, person.must_change_password = passwords.hash_password(old, PASSWORD), False
        session.add(person)
    assert (await login(client, "13900000006", PASSWORD)).status_code == 303
    with app.state.database.session() as session:
        person = session.get(Person, directory.teacher_a.id)
        assert person is not None and person.password_hash is not None
        assert person.password_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")


async def test_audit_log_records_logins_without_names_or_passwords(
    client: httpx.AsyncClient, app: FastAPI, directory: Directory
) -> None:
    give_password(app, directory.teacher_a)
    await login(client, "no.such.person", "Secret#Guess1")
    await login(client, "13900000006", "Secret#Guess2")
    await login(client, "13900000006", PASSWORD)
    token = csrf_token_in((await client.get("/account")).text)
    assert (await client.post("/logout", data={"csrf_token": token})).headers["location"] == "/login?notice=logged_out"
    assert "您已安全退出" in (await client.get("/login?notice=logged_out")).text

    with app.state.database.session() as session:
        entries = list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id))))
        assert audit.verify_chain(session).intact
    login_entries = [e for e in entries if e.action.startswith(("login", "logout"))]
    assert [(e.action, e.result) for e in login_entries] == [
        ("login.failure", "denied"),
        ("login.failure", "denied"),
        ("login.password_verified", "success"),
        ("login.success", "success"),
        ("logout", "success"),
    ]
    unknown, wrong = login_entries[0], login_entries[1]
    assert unknown.actor_id is None and unknown.source_ip == "127.0.0.1"
    assert json.loads(unknown.detail) == {
        "reason": "unknown_account", "account_key": accounts.account_key(app.state.cipher, "no.such.person")
    }  # fmt: skip
    assert wrong.actor_id == directory.teacher_a.id and json.loads(wrong.detail) == {"reason": "bad_password"}
    assert json.loads(login_entries[3].detail)["amr"] == ["pwd"]
    everything = " ".join(e.detail for e in entries)
    assert "no.such.person" not in everything and "Secret#Guess" not in everything and PASSWORD not in everything


def test_a_password_checked_before_the_transaction_counts_only_against_the_same_hash(
    app: FastAPI, directory: Directory, settings: IdentitySettings
) -> None:
    """The hash runs outside the login's transaction; if the password changed meanwhile, it is checked again."""
    give_password(app, directory.teacher_a)
    username = "teacher.lin"
    with directory.database.session() as session:
        row = session.get(Person, directory.teacher_a.id)
        assert row is not None
        row.username = username
        session.add(row)
    database = app.state.database
    origin = Origin(None, None, "10.1.2.3", None)
    checked = accounts.check_password_outside_transaction(database, settings, username, PASSWORD)
    assert checked.verified and checked.password_hash is not None

    give_password(app, directory.teacher_a, "Another#Pass2026")  # changed between the check and the login
    with database.session() as session:
        outcome = accounts.authenticate(session, settings, app.state.cipher, username=username, password=PASSWORD,
                                        origin=origin, checked=checked)  # fmt: skip
    assert outcome.status == "invalid"
    with database.session() as session:
        fresh = accounts.check_password_outside_transaction(database, settings, username, "Another#Pass2026")
        outcome = accounts.authenticate(session, settings, app.state.cipher, username=username,
                                        password="Another#Pass2026", origin=origin, checked=fresh)  # fmt: skip
    assert outcome.status == "ok"
