"""Resident ID numbers (GB 11643-1999), student numbers, school codes, phones and masking."""

from __future__ import annotations

from datetime import date

import pytest

from kit.identifiers import (
    IdentifierError,
    IdNumberError,
    PhoneError,
    SchoolCodeError,
    StudentNumberError,
    mask_name,
    mask_phone,
    mask_resident_id,
    mask_student_number,
    parse_resident_id,
    validate_phone,
    validate_school_code,
    validate_student_number,
)

TODAY = date(2024, 6, 1)


def with_check(first17: str) -> str:
    """Append the ISO 7064 MOD 11-2 check character, computed independently of the module."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
    remainder = sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11
    return first17 + "10X98765432"[remainder]


def test_weights_match_the_standard() -> None:
    assert [2 ** (17 - i) % 11 for i in range(17)] == [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


@pytest.mark.parametrize(
    ("value", "number", "area", "born", "sex"),
    [
        ("11010519491231002X", "11010519491231002X", "110105", date(1949, 12, 31), "female"),
        ("34052419800101001X", "34052419800101001X", "340524", date(1980, 1, 1), "male"),
        ("370101190102039973", "370101190102039973", "370101", date(1901, 2, 3), "male"),
        ("  11010519491231002x\t", "11010519491231002X", "110105", date(1949, 12, 31), "female"),
        (
            "１１０１０５１９４９１２３１００２Ｘ",
            "11010519491231002X",
            "110105",
            date(1949, 12, 31),
            "female",
        ),
        (
            with_check("11010520000229002"),
            with_check("11010520000229002"),
            "110105",
            date(2000, 2, 29),
            "female",
        ),
    ],
)
def test_valid_resident_ids(value: str, number: str, area: str, born: date, sex: str) -> None:
    parsed = parse_resident_id(value, today=TODAY)
    assert (parsed.number, parsed.area_code, parsed.birth_date, parsed.sex) == (number, area, born, sex)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "length"),
        ("1101051949123100", "length"),
        ("11010519491231002XX", "length"),
        ("11010519491231002Y", "characters"),
        ("X10105194912310021", "characters"),
        ("1101051949123100X2", "characters"),
        ("110105 19491231002", "characters"),
        (with_check("11010519490229002"), "birth_date"),  # 1949 is not a leap year
        (with_check("11010519001329002"), "birth_date"),  # month 13
        (with_check("11010519491200002"), "birth_date"),  # day 0
        (with_check("11010520240602002"), "future_birth_date"),  # tomorrow
        ("110105194912310021", "check_digit"),
        ("11010519491231002x".replace("x", "9"), "check_digit"),
    ],
)
def test_invalid_resident_ids(value: str, code: str) -> None:
    with pytest.raises(IdNumberError) as caught:
        parse_resident_id(value, today=TODAY)
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)


def test_birth_date_today_is_allowed() -> None:
    assert parse_resident_id(with_check("11010520240601002"), today=TODAY).birth_date == TODAY


def test_error_message_is_bilingual_chinese_first() -> None:
    with pytest.raises(IdNumberError) as caught:
        parse_resident_id("110105194912310021")
    assert str(caught.value) == "身份证号校验位错误 / the ID number check digit does not match"
    assert caught.value.message == str(caught.value)
    assert caught.value.message_zh == "身份证号校验位错误"


@pytest.mark.parametrize(
    ("value", "resident_id", "expected"),
    [
        ("G11010519491231002X", None, "G11010519491231002X"),
        (" g11010519491231002x ", "11010519491231002x", "G11010519491231002X"),
        ("G370101190102039973", "370101190102039973", "G370101190102039973"),
        ("J" + with_check("11010520150101001"), None, "J" + with_check("11010520150101001")),
        # A resident ID of someone else does not matter for J and L numbers.
        ("J" + with_check("11010520150101001"), "11010519491231002X", "J" + with_check("11010520150101001")),
        ("L110105201501010001", "11010519491231002X", "L110105201501010001"),
        ("l110105201502280123", None, "L110105201502280123"),
    ],
)
def test_valid_student_numbers(value: str, resident_id: str | None, expected: str) -> None:
    assert validate_student_number(value, resident_id=resident_id, today=TODAY) == expected


@pytest.mark.parametrize(
    ("value", "resident_id", "code"),
    [
        ("G11010519491231002", None, "length"),
        ("11010519491231002X", None, "length"),
        ("X11010519491231002X", None, "prefix"),
        ("G110105194912310021", None, "check_digit"),
        ("J110105194912310021", None, "check_digit"),
        ("G11010519491231002X", "34052419800101001X", "resident_id_mismatch"),
        ("G" + with_check("11010519490229002"), None, "birth_date"),
        ("J" + with_check("11010520300101001"), None, "future_birth_date"),
        ("L11010520150101000A", None, "characters"),
        ("L110105201502290001", None, "birth_date"),
        ("L110105203001010001", None, "future_birth_date"),
    ],
)
def test_invalid_student_numbers(value: str, resident_id: str | None, code: str) -> None:
    with pytest.raises(StudentNumberError) as caught:
        validate_student_number(value, resident_id=resident_id, today=TODAY)
    assert caught.value.code == code
    assert " / " in str(caught.value)


@pytest.mark.parametrize(("value", "expected"), [("1101051234", "1101051234"), (" 3701010001 ", "3701010001")])
def test_valid_school_codes(value: str, expected: str) -> None:
    assert validate_school_code(value) == expected


@pytest.mark.parametrize("value", ["", "110105123", "11010512345", "11010512a4", "1101 51234"])
def test_invalid_school_codes(value: str) -> None:
    with pytest.raises(SchoolCodeError) as caught:
        validate_school_code(value)
    assert caught.value.code == "format"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("13800138000", "13800138000"),
        (" 19912345678 ", "19912345678"),
        ("138-0013-8000", "13800138000"),
        ("+86 138 0013 8000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("8613800138000", "13800138000"),
        ("１３８００１３８０００", "13800138000"),
    ],
)
def test_valid_phones(value: str, expected: str) -> None:
    assert validate_phone(value) == expected


@pytest.mark.parametrize(
    "value", ["", "12800138000", "10800138000", "1380013800", "138001380001", "1380013800a", "+8512800138000"]
)
def test_invalid_phones(value: str) -> None:
    with pytest.raises(PhoneError) as caught:
        validate_phone(value)
    assert caught.value.code == "format"
    assert isinstance(caught.value, IdentifierError)


def test_masks() -> None:
    assert mask_resident_id("11010519491231002X") == "110105********002X"
    assert mask_resident_id("11010519491231002x") == "110105********002X"
    assert mask_resident_id("12345") == "*****"
    assert mask_student_number("G11010519491231002X") == "G110105********002X"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("123") == "***"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name(" 李 ") == "*"
    assert mask_name("") == ""
