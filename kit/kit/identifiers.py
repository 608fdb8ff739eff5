"""Validation and masking of the identifiers people are known by in Chinese schools.

Pure functions, no database. Every validator accepts what a person would type or paste (surrounding
whitespace, lower-case ``x``, full-width digits from a Chinese input method) and returns the
normalised form; on failure it raises a subclass of :class:`IdentifierError` carrying a stable
``code`` and a bilingual message (Chinese first) suitable for ``FieldError.message``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Literal

__all__ = [
    "CreditCodeError",
    "IdNumberError",
    "IdentifierError",
    "PhoneError",
    "ResidentId",
    "SchoolCodeError",
    "StudentNumberError",
    "credit_code_check_character",
    "mask_name",
    "mask_phone",
    "mask_resident_id",
    "mask_student_number",
    "parse_resident_id",
    "validate_credit_code",
    "validate_phone",
    "validate_school_code",
    "validate_student_number",
]


class IdentifierError(ValueError):
    """An identifier is malformed. ``str(error)`` is ``"中文 / English"``."""

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en
        super().__init__(f"{message_zh} / {message_en}")

    @property
    def message(self) -> str:
        return str(self)


class IdNumberError(IdentifierError):
    """Resident identity card number is invalid.

    Codes: ``length``, ``characters``, ``birth_date``, ``future_birth_date``, ``check_digit``.
    """


class StudentNumberError(IdentifierError):
    """National student number (全国中小学生学籍号) is invalid.

    Codes: ``length``, ``prefix``, ``characters``, ``birth_date``, ``future_birth_date``,
    ``check_digit``, ``resident_id_mismatch``.
    """


class SchoolCodeError(IdentifierError):
    """National school code (学校标识码) is invalid. Code: ``format``."""


class PhoneError(IdentifierError):
    """Mainland mobile phone number is invalid. Code: ``format``."""


@dataclass(frozen=True, slots=True)
class ResidentId:
    """A valid 18-character resident identity card number and what it encodes."""

    number: str
    area_code: str
    birth_date: date
    sex: Literal["male", "female"]


# GB 11643-1999 §8.2 check character, ISO 7064:1983 MOD 11-2: weight of position i (1-based from
# the left) is 2^(18-i) mod 11; R = Σ(a_i × W_i) mod 11 over the first 17 digits; the check
# character is "10X98765432"[R].
_CHECK_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_DIGITS = frozenset("0123456789")


def _normalise(value: str) -> str:
    """NFKC folds full-width digits and letters (１２３Ｘ) to ASCII; then trim and upper-case."""
    return unicodedata.normalize("NFKC", value).strip().upper()


def _is_digits(value: str) -> bool:
    # str.isdigit() also accepts superscripts and other scripts' digits; be exact.
    return bool(value) and all(ch in _DIGITS for ch in value)


def resident_id_check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits (GB 11643-1999)."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _CHECK_WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def _birth_date(digits: str, today: date | None, error: type[IdentifierError], what_zh: str, what_en: str) -> date:
    """Parse YYYYMMDD as a real calendar date that is not in the future."""
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise error(
            "birth_date",
            f"{what_zh}中的出生日期 {digits} 不是有效日期",
            f"the birth date {digits} in the {what_en} is not a real date",
        ) from None
    if born > (today or date.today()):
        raise error(
            "future_birth_date",
            f"{what_zh}中的出生日期 {born.isoformat()} 晚于今天",
            f"the birth date {born.isoformat()} in the {what_en} is in the future",
        )
    return born


def _parse_id_body(
    number: str, today: date | None, error: type[IdentifierError], what_zh: str, what_en: str
) -> ResidentId:
    """Validate 18 characters by the GB 11643-1999 rules; ``number`` is already normalised."""
    # GB 11643-1999 §4: 6-digit address code + 8-digit birth date code + 3-digit sequence code +
    # 1 check character (a digit or X).
    if len(number) != 18:
        raise error(
            "length",
            f"{what_zh}应为 18 位，实际为 {len(number)} 位",
            f"the {what_en} must be 18 characters long, not {len(number)}",
        )
    if not _is_digits(number[:17]) or not (number[17] in _DIGITS or number[17] == "X"):
        raise error(
            "characters",
            f"{what_zh}前 17 位必须是数字，最后一位是数字或 X",
            f"the {what_en} must be 17 digits followed by a digit or X",
        )
    born = _birth_date(number[6:14], today, error, what_zh, what_en)
    if resident_id_check_character(number[:17]) != number[17]:
        raise error(
            "check_digit",
            f"{what_zh}校验位错误",
            f"the {what_en} check digit does not match",
        )
    # GB 11643-1999 §4.3: the sequence code is odd for men and even for women.
    sex: Literal["male", "female"] = "male" if int(number[16]) % 2 == 1 else "female"
    return ResidentId(number=number, area_code=number[:6], birth_date=born, sex=sex)


def parse_resident_id(value: str, *, today: date | None = None) -> ResidentId:
    """Validate a resident identity card number (居民身份证号码, GB 11643-1999).

    Accepts surrounding whitespace, lower-case ``x`` and full-width characters. ``today`` bounds the
    birth date (defaults to the local date).
    """
    return _parse_id_body(_normalise(value), today, IdNumberError, "身份证号", "ID number")


def validate_student_number(value: str, *, resident_id: str | None = None, today: date | None = None) -> str:
    """Validate a national student number (全国中小学生学籍号, 19 characters) and normalise it.

    - ``G`` + the student's valid 18-character resident ID number (official number);
    - ``J`` + 18 characters built by the ID number rules, check character included, for students
      without an ID number;
    - ``L`` + 6-digit area code + 8-digit birth date + 4 digits (temporary number).

    When ``resident_id`` is given and the number is G-form, its last 18 characters must equal it.
    """
    number = _normalise(value)
    if len(number) != 19:
        raise StudentNumberError(
            "length",
            f"学籍号应为 19 位（G/J/L 加 18 位），实际为 {len(number)} 位",
            f"the student number must be 19 characters (G, J or L plus 18), not {len(number)}",
        )
    prefix, body = number[0], number[1:]
    if prefix in ("G", "J"):
        _parse_id_body(body, today, StudentNumberError, "学籍号", "student number")
        if prefix == "G" and resident_id is not None and body != _normalise(resident_id):
            raise StudentNumberError(
                "resident_id_mismatch",
                "G 字头学籍号的后 18 位必须与身份证号一致",
                "the last 18 characters of a G student number must equal the ID number",
            )
        return number
    if prefix == "L":
        if not _is_digits(body):
            raise StudentNumberError(
                "characters",
                "L 字头临时学籍号的后 18 位必须全是数字",
                "the 18 characters after L in a temporary student number must all be digits",
            )
        _birth_date(body[6:14], today, StudentNumberError, "学籍号", "student number")
        return number
    raise StudentNumberError(
        "prefix",
        "学籍号必须以 G、J 或 L 开头",
        "the student number must start with G, J or L",
    )


def validate_school_code(value: str) -> str:
    """Validate a national school code (学校标识码): exactly 10 digits."""
    code = _normalise(value)
    if len(code) != 10 or not _is_digits(code):
        raise SchoolCodeError(
            "format",
            "学校标识码应为 10 位数字",
            "the school code must be exactly 10 digits",
        )
    return code


_PHONE = re.compile(r"1[3-9][0-9]{9}")
_PHONE_SEPARATORS = re.compile(r"[\s\-]")


def validate_phone(value: str) -> str:
    """Validate a mainland China mobile number and return its 11 digits.

    Spaces and hyphens inside the number and a ``+86``/``0086``/``86`` country prefix are accepted
    and removed (``+86 138-0013-8000`` → ``13800138000``).
    """
    phone = _PHONE_SEPARATORS.sub("", _normalise(value))
    for prefix in ("+86", "0086"):
        if phone.startswith(prefix):
            phone = phone[len(prefix) :]
            break
    else:
        if len(phone) == 13 and phone.startswith("86"):
            phone = phone[2:]
    if not _PHONE.fullmatch(phone):
        raise PhoneError(
            "format",
            "手机号应为 11 位数字，以 13–19 开头",
            "the mobile number must be 11 digits starting with 13 to 19",
        )
    return phone


def _mask_middle(value: str, keep_head: int, keep_tail: int) -> str:
    if len(value) <= keep_head + keep_tail:
        return "*" * len(value)
    return value[:keep_head] + "*" * (len(value) - keep_head - keep_tail) + value[len(value) - keep_tail :]


def mask_resident_id(number: str) -> str:
    """``11010519491231002X`` → ``110105********002X`` (area code and last 4 kept)."""
    return _mask_middle(_normalise(number), 6, 4)


def mask_student_number(number: str) -> str:
    """``G11010519491231002X`` → ``G110105********002X`` (a G number embeds the ID number)."""
    return _mask_middle(_normalise(number), 7, 4)


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``."""
    return _mask_middle(unicodedata.normalize("NFKC", phone).strip(), 3, 4)


def mask_name(name: str) -> str:
    """Keep the first character: ``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``; one character → ``*``."""
    name = name.strip()
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


def pairwise_subject(salt: str, sector_identifier: str, person_id: str) -> str:
    """The pairwise subject identifier (OIDC Core 8.1) a sector knows a person by: the same for every client of the
    sector, different across sectors, and not reversible without ``salt``. The identity provider and the app store
    (for LTI launches) derive it the same way, so an app sees one pseudonym per user whichever way it launches."""
    mac = hmac.new(salt.encode(), f"{sector_identifier}|{person_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


# ------------------------------------------------------------------ unified social credit code (GB 32100-2015)


class CreditCodeError(IdentifierError):
    """Unified social credit code (统一社会信用代码) is invalid.

    Codes: ``length``, ``characters``, ``authority``, ``type``, ``division``, ``check_character``.
    """


#: GB 32100-2015 §4.2: the code's character set (digits and capitals without I, O, Z, S, V), each worth its index.
CREDIT_CODE_CHARACTERS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_CODE_VALUES = {character: value for value, character in enumerate(CREDIT_CODE_CHARACTERS)}
# Weight of position i (1-based) is 3^(i-1) mod 31.
_CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
#: Registration authorities (position 1) and the organisation types (position 2) each may register.
CREDIT_CODE_AUTHORITIES: dict[str, tuple[str, frozenset[str]]] = {
    "1": ("机构编制", frozenset("1239")),
    "2": ("外交", frozenset("19")),
    "3": ("司法行政", frozenset("123459")),
    "4": ("文化", frozenset("19")),
    "5": ("民政", frozenset("1239")),
    "6": ("旅游", frozenset("129")),
    "7": ("宗教", frozenset("129")),
    "8": ("工会", frozenset("19")),
    "9": ("市场监督管理（工商）", frozenset("123")),
    "A": ("中央军委改革和编制办公室", frozenset("19")),
    "N": ("农业", frozenset("1239")),
    "Y": ("其他", frozenset("1")),
}


def credit_code_check_character(first17: str) -> str:
    """The check character of the first 17 characters: C18 = 31 − (Σ Ci × Wi mod 31), 31 counting as 0."""
    total = sum(_CREDIT_CODE_VALUES[ch] * weight for ch, weight in zip(first17, _CREDIT_CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_CHARACTERS[(31 - total % 31) % 31]


def validate_credit_code(value: str) -> str:
    """Validate a unified social credit code (统一社会信用代码, GB 32100-2015) and return it normalised.

    18 characters: registration authority (1), organisation type (1), administrative division code (6 digits),
    organisation code (9), check character (1). Accepts surrounding whitespace, lower case and full-width characters.
    """
    code = _normalise(value)
    if len(code) != 18:
        raise CreditCodeError(
            "length",
            f"统一社会信用代码应为 18 位，实际为 {len(code)} 位",
            f"the unified social credit code must be 18 characters long, not {len(code)}",
        )
    wrong = sorted({ch for ch in code if ch not in _CREDIT_CODE_VALUES})
    if wrong:
        shown = "".join(wrong)[:10]
        raise CreditCodeError(
            "characters",
            f"统一社会信用代码只能由数字和除 I、O、Z、S、V 以外的大写字母组成，不能含有 {shown}",
            f"the unified social credit code may only use digits and capitals other than I, O, Z, S, V, not {shown!r}",
        )
    authority = CREDIT_CODE_AUTHORITIES.get(code[0])
    if authority is None:
        raise CreditCodeError(
            "authority",
            f"第 1 位登记管理部门代码 {code[0]} 不存在（应为 1–9、A、N 或 Y）",
            f"the registration authority code {code[0]!r} (position 1) does not exist; use 1–9, A, N or Y",
        )
    authority_name, types = authority
    if code[1] not in types:
        allowed = "、".join(sorted(types))
        raise CreditCodeError(
            "type",
            f"第 2 位机构类别代码 {code[1]} 不适用于{authority_name}登记（可为 {allowed}）",
            f"the organisation type code {code[1]!r} (position 2) does not exist for registration authority "
            f"{code[0]!r}; use one of {', '.join(sorted(types))}",
        )
    if not _is_digits(code[2:8]):
        raise CreditCodeError(
            "division",
            "第 3–8 位应为 6 位数字的登记管理机关行政区划码",
            "positions 3–8 must be the 6-digit administrative division code of the registering office",
        )
    if credit_code_check_character(code[:17]) != code[17]:
        raise CreditCodeError(
            "check_character",
            "统一社会信用代码校验位错误，请核对是否输错",
            "the unified social credit code's check character does not match; check for a typing error",
        )
    return code
