"""Password hashing (argon2id) and the password policy, with messages in Simplified Chinese and English."""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from identity.config import IdentitySettings
from kit.errors import InvalidInput

MIN_LENGTH = 8
MAX_LENGTH = 128
MIN_CLASSES = 3
# Checked only for usernames at least this long: "containing" a two-letter name says nothing.
MIN_USERNAME_CHECK = 3

# Common in Chinese leaks (CSDN, 178, 7k7k) but absent from zxcvbn's English-centred list.
COMMON_CHINESE_PASSWORDS = frozenset(
    {
        "woaini1314", "woaini520", "woaini", "iloveyou1314", "5201314", "1314520", "52013145201314",
        "qq123456", "qq5201314", "a123456", "a123456789", "aa123456", "abc123456", "a1234567", "a12345678",
        "123456a", "123456aa", "123456abc", "1qaz2wsx", "1q2w3e4r", "1q2w3e4r5t", "qazwsx123", "zxcvbnm123",
        "woaiwojia", "wodemima", "mima123", "mima123456", "caonima", "nihao123", "zhang123", "wang123456",
        "li123456", "liu123456", "chen123456", "huang123", "asd123456", "asdf1234", "qwe123456", "admin123",
        "admin888", "abc123abc", "888888", "666666", "88888888", "147258369", "123123123", "112233",
        "321321", "7758521", "7758258", "584520", "a5201314", "woaini123", "wangyi123", "baidu123",
        "taobao123", "xiaoming", "zhangwei", "wangfang", "jiayou123", "p@ssw0rd", "passw0rd",
    }
)  # fmt: skip
_LEET = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "l", "3": "e", "$": "s", "5": "s", "7": "t", "!": "i"})


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"]) | COMMON_CHINESE_PASSWORDS


def normalise(password: str) -> str:
    """NFKC, so a full-width ``Ａ１`` typed with a Chinese input method is the same password as ``A1``."""
    return unicodedata.normalize("NFKC", password)


# ---------------------------------------------------------------------------------------------- hashing


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)


def hasher_for(settings: IdentitySettings) -> PasswordHasher:
    """The argon2id hasher with the configured cost (one per distinct cost, reused)."""
    return _hasher(settings.password_hash_time_cost, settings.password_hash_memory_kib,
                   settings.password_hash_parallelism)  # fmt: skip


@lru_cache(maxsize=8)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("not-a-password: compared against for unknown accounts")


def hash_password(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(normalise(password))


def verify_password(hasher: PasswordHasher, password_hash: str | None, password: str) -> bool:
    """Check ``password``; without a hash, spend the same time on a dummy hash and say no."""
    if password_hash is None:
        _verify(hasher, _dummy_hash(hasher), password)
        return False
    return _verify(hasher, password_hash, password)


def _verify(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, normalise(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hasher: PasswordHasher, password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones."""
    try:
        return hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


# ----------------------------------------------------------------------------------------------- policy


class WeakPassword(InvalidInput):
    """A password set through the API breaks the policy; errors[] says which rules."""

    slug = "identity/weak-password"
    title_zh = "密码不符合安全要求"
    title_en = "Password does not meet the policy"


@dataclass(frozen=True)
class PolicyViolation:
    """One rule a new password breaks, and what to do about it in both languages."""

    code: str
    zh: str
    en: str

    def message(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


def character_classes(password: str) -> int:
    """How many of lower-case letters, upper-case letters, digits and other symbols occur."""
    lower = any(ch.islower() for ch in password)
    upper = any(ch.isupper() for ch in password)
    digit = any(ch.isdigit() for ch in password)
    symbol = any(not ch.isalnum() and not ch.isspace() for ch in password)
    return lower + upper + digit + symbol


def is_common(password: str) -> bool:
    folded = password.casefold()
    common = _common_passwords()
    return folded in common or folded.translate(_LEET) in common


def check_policy(
    password: str,
    *,
    username: str | None,
    current_hash: str | None = None,
    hasher: PasswordHasher | None = None,
) -> list[PolicyViolation]:
    """Every rule ``password`` breaks (empty when it is acceptable)."""
    password = normalise(password)
    violations: list[PolicyViolation] = []
    if len(password) < MIN_LENGTH:
        violations.append(PolicyViolation(
            "too_short",
            f"密码太短：至少需要 {MIN_LENGTH} 个字符，当前为 {len(password)} 个。",
            f"Too short: use at least {MIN_LENGTH} characters (this one has {len(password)}).",
        ))  # fmt: skip
    if len(password) > MAX_LENGTH:
        violations.append(PolicyViolation(
            "too_long",
            f"密码太长：最多 {MAX_LENGTH} 个字符。",
            f"Too long: use at most {MAX_LENGTH} characters.",
        ))  # fmt: skip
    if character_classes(password) < MIN_CLASSES:
        violations.append(PolicyViolation(
            "too_few_classes",
            "请至少包含以下四类中的三类：小写字母、大写字母、数字、符号（如 ! @ # ￥）。",
            "Use at least three of these four: lower-case letters, upper-case letters, digits, symbols (e.g. ! @ #).",
        ))  # fmt: skip
    name = (username or "").strip().casefold()
    if len(name) >= MIN_USERNAME_CHECK and name in password.casefold():
        violations.append(PolicyViolation(
            "contains_username",
            "密码不能是登录名，也不能包含登录名。",
            "The password must not be or contain your username.",
        ))  # fmt: skip
    if is_common(password):
        violations.append(PolicyViolation(
            "too_common",
            "这是最常见的密码之一，很容易被猜中，请换一个。",
            "This is one of the most common passwords and is easily guessed; choose another.",
        ))  # fmt: skip
    if current_hash and hasher is not None and not violations and _verify(hasher, current_hash, password):
        violations.append(PolicyViolation(
            "same_as_current",
            "新密码不能与当前密码相同。",
            "The new password must differ from the current one.",
        ))  # fmt: skip
    return violations


# Characters easy to read out and type: no 0/O, 1/l/I.
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_LOWER = "abcdefghijkmnopqrstuvwxyz"
_DIGITS = "23456789"
_SYMBOLS = "#@%+=?"


def generate_initial_password() -> str:
    """A random initial password an administrator hands out (about 64 bits), which meets the policy."""
    chosen = [secrets.choice(_UPPER) for _ in range(3)] + [secrets.choice(_LOWER) for _ in range(4)]
    chosen += [secrets.choice(_DIGITS) for _ in range(4)] + [secrets.choice(_SYMBOLS)]
    secrets.SystemRandom().shuffle(chosen)
    return "".join(chosen)
