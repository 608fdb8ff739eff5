"""The password policy says what to fix, in Chinese and English; hashes are argon2id and follow the configured cost."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type
from fastapi import FastAPI

from identity.accounts import passwords
from identity.accounts import service as accounts
from identity.accounts.passwords import WeakPassword, check_policy
from identity.config import IdentitySettings
from identity.people.models import Person
from identity.testing import Directory

HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID)


def codes(password: str, username: str | None = "fang.principal", current_hash: str | None = None) -> list[str]:
    return [v.code for v in check_policy(password, username=username, current_hash=current_hash, hasher=HASHER)]


def test_valid_passwords_pass() -> None:
    for password in ("Xiamen#Bay2026", "晴天-Lu7jiang", "correct Horse 9 battery", "Ｘｉａｍｅｎ＃２０２６ｂａｙ"):
        assert codes(password) == [], password


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("Ab1!", "too_short"),
        ("A" * 60 + "b1!" * 30, "too_long"),
        ("xiamenbaylujiang", "too_few_classes"),  # lower only
        ("xiamen2026bay", "too_few_classes"),  # lower + digits
        ("Fang.Principal2026", "contains_username"),  # case-insensitive
        ("fang.principal", "contains_username"),
        ("Password1", "too_common"),  # zxcvbn's list, case-folded
        ("P@ssw0rd", "too_common"),  # and its l33t spelling
        ("Woaini1314", "too_common"),  # common Chinese-pattern passwords
        ("Qq123456", "too_common"),
    ],
)
def test_each_rule(password: str, code: str) -> None:
    assert code in codes(password)


def test_chinese_pattern_list() -> None:
    for password in ("woaini1314", "qq123456", "a123456", "5201314", "1qaz2wsx"):
        assert passwords.is_common(password), password


def test_messages_say_what_to_fix_in_both_languages() -> None:
    violations = {v.code: v for v in check_policy("abc", username=None)}
    assert violations["too_short"].message("zh") == "密码太短：至少需要 8 个字符，当前为 3 个。"
    assert violations["too_short"].message("en") == "Too short: use at least 8 characters (this one has 3)."
    assert "三类" in violations["too_few_classes"].message("zh")
    assert "three of these four" in violations["too_few_classes"].message("en")
    common = check_policy("Password1", username=None)[0]
    assert common.code == "too_common"
    assert "常见" in common.message("zh") and "common" in common.message("en")


def test_new_password_must_differ_from_current() -> None:
    current = passwords.hash_password(HASHER, "Xiamen#Bay2026")
    assert codes("Xiamen#Bay2026", current_hash=current) == ["same_as_current"]
    assert codes("Xiamen#Bay2027", current_hash=current) == []


def test_hashes_are_argon2id_and_full_width_input_is_the_same_password() -> None:
    password_hash = passwords.hash_password(HASHER, "Ａｂｃ＃１２３４５")
    assert password_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert passwords.verify_password(HASHER, password_hash, "Abc#12345")
    assert not passwords.verify_password(HASHER, password_hash, "Abc#12346")
    assert not passwords.verify_password(HASHER, "not a hash", "Abc#12345")
    assert not passwords.verify_password(HASHER, None, "Abc#12345")  # the dummy hash: same work, always no


def test_rehash_needed_when_the_cost_changes() -> None:
    password_hash = passwords.hash_password(HASHER, "Xiamen#Bay2026")
    assert not passwords.needs_rehash(HASHER, password_hash)
    stronger = PasswordHasher(time_cost=2, memory_cost=8 * 1024, parallelism=1, type=Type.ID)
    assert passwords.needs_rehash(stronger, password_hash)


def test_hasher_follows_the_settings(settings: IdentitySettings) -> None:
    hasher = passwords.hasher_for(settings)
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (1, 8 * 1024, 1)
    assert hasher.type is Type.ID
    assert passwords.hasher_for(IdentitySettings()).memory_cost == 64 * 1024  # production default (RFC 9106)


def test_administrators_setting_a_password_meet_the_same_policy(
    app: FastAPI, settings: IdentitySettings, directory: Directory
) -> None:
    with directory.database.session() as session:
        person = session.get(Person, directory.teacher_a.id)
        assert person is not None
        with pytest.raises(WeakPassword) as raised:
            accounts.set_password(session, settings, person, "woaini1314", must_change=True, actor=None)
        assert {error.code for error in raised.value.errors} == {"too_few_classes", "too_common"}
        accounts.set_password(session, settings, person, "Xiamen#Bay2026", must_change=True, actor=None)
        assert person.must_change_password and person.password_changed_at is not None
        assert person.password_hash and person.password_hash.startswith("$argon2id$")


def test_other_pages_register_their_messages() -> None:
    from identity.web import i18n

    i18n.register_messages({"test.greeting": ("你好，{name}", "Hello, {name}")})
    i18n.register_messages({"test.greeting": ("你好，{name}", "Hello, {name}")})  # the same again is fine
    assert i18n.translate("zh", "test.greeting", name="方") == "你好，方"
    assert i18n.translate("en", "test.greeting", name="Fang") == "Hello, Fang"
    with pytest.raises(ValueError, match=r"login\.title"):
        i18n.register_messages({"login.title": ("登入", "Log in")})
    del i18n.MESSAGES["test.greeting"]
