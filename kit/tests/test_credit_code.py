"""Unified social credit codes (统一社会信用代码, GB 32100-2015): what a vendor types is accepted or refused clearly."""

from __future__ import annotations

import pytest

from kit.identifiers import CreditCodeError, credit_code_check_character, validate_credit_code

# Published codes of real organisations (each carries a correct check character).
REAL_CODES = ["91350100M000100Y43", "91110000600037341L"]


@pytest.mark.parametrize("code", REAL_CODES)
def test_real_codes_are_accepted(code: str) -> None:
    assert validate_credit_code(code) == code


def test_typed_forms_are_normalised() -> None:
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in "91350100M000100Y43")
    assert validate_credit_code(f"  {full_width} ") == "91350100M000100Y43"
    assert validate_credit_code("91110000600037341l") == "91110000600037341L"


def test_the_check_character_is_computed_by_the_standard() -> None:
    # Σ Ci×Wi mod 31 = r, C18 = 31 − r (0 when r = 0): every 17-character body has exactly one valid ending.
    body = "91350100M000100Y4"
    assert credit_code_check_character(body) == "3"
    for character in "0123456789ABCDEFGHJKLMNPQRTUWXY":
        if character != "3":
            with pytest.raises(CreditCodeError) as error:
                validate_credit_code(body + character)
            assert error.value.code == "check_character"


def _with_check(first17: str) -> str:
    return first17 + credit_code_check_character(first17)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("9135010", "length"),
        ("91350100M000100Y431", "length"),
        ("91350100M0001O0Y43", "characters"),  # the letter O is not used
        ("91350100M000100I43", "characters"),
        ("B1350100M000100Y4", "authority"),  # B is no registration authority (check added below)
        ("94350100M000100Y4", "type"),  # market regulators register types 1–3 only
        ("Y2350100M000100Y4", "type"),
        ("913501A0M000100Y4", "division"),
    ],
)
def test_defects_are_named(value: str, code: str) -> None:
    candidate = value if len(value) != 17 else _with_check(value)
    with pytest.raises(CreditCodeError) as error:
        validate_credit_code(candidate)
    assert error.value.code == code
    assert "/" in str(error.value)  # "中文 / English"


def test_every_authority_and_type_pair_of_the_standard_is_accepted() -> None:
    pairs = ["11", "12", "13", "19", "21", "31", "35", "41", "51", "52", "53", "61", "71", "81", "91", "92", "93",
             "A1", "N1", "N2", "N3", "Y1"]  # fmt: skip
    for pair in pairs:
        assert validate_credit_code(_with_check(pair + "350100MA2YQ8K1X")).startswith(pair)


def test_messages_say_what_to_fix() -> None:
    with pytest.raises(CreditCodeError) as error:
        validate_credit_code("91350100M000100Y44")
    assert "校验位" in error.value.message_zh
    assert "check character" in error.value.message_en
