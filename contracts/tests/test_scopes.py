"""The OAuth scope catalogue is consistent and says which personal fields each scope releases."""

from __future__ import annotations

import re
import typing

import pytest
from pydantic import ValidationError

from contracts.scopes import (
    PERSONAL_FIELDS,
    SCOPES,
    SCOPES_BY_ID,
    PersonalField,
    Scope,
    parse_scope_string,
    personal_field_label,
    personal_fields_for,
    requires_guardian_consent,
    scope,
)

CJK = re.compile(r"[\u4e00-\u9fff]")
WELL_FORMED_ID = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)*$")
OIDC_STANDARD = {"openid", "profile", "phone", "offline_access"}
# Fields that, for a student, are facts about a minor; any scope releasing one needs guardian consent.
MINOR_FACTS = {
    "name",
    "sex",
    "phone_number",
    "student_number",
    "resident_id_number_masked",
    "class_membership",
    "guardian_relationship",
    "enrollment_record",
    "evaluation_record",
    "attendance_record",
}
# Scopes that only concern staff, organisations or aggregates, so they may release staff names.
STAFF_ONLY_SCOPES = {"roster.read"}


def test_ids_are_unique_and_well_formed() -> None:
    ids = [item.id for item in SCOPES]
    assert len(ids) == len(set(ids)), f"duplicate scope ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    for scope_id in ids:
        assert WELL_FORMED_ID.match(scope_id), scope_id
        assert "." in scope_id or scope_id in OIDC_STANDARD, f"{scope_id} should be a dotted name"
    assert set(SCOPES_BY_ID) == set(ids)


def test_catalogue_contains_the_scopes_services_rely_on() -> None:
    expected = {
        "openid",
        "profile",
        "phone",
        "org.read",
        "people.read",
        "people.write",
        "roster.read",
        "roster.students.read",
        "student.identity.read",
        "guardian.read",
        "audit.read",
        "metering.report",
    }
    assert expected <= set(SCOPES_BY_ID)


@pytest.mark.parametrize("item", SCOPES, ids=lambda item: item.id)
def test_descriptions_are_given_in_both_languages(item: Scope) -> None:
    assert item.description_zh.strip()
    assert item.description_en.strip()
    assert CJK.search(item.description_zh), f"{item.id}: description_zh should be Simplified Chinese"
    assert not CJK.search(item.description_en), f"{item.id}: description_en should be English"


@pytest.mark.parametrize("item", SCOPES, ids=lambda item: item.id)
def test_sensitive_scopes_release_personal_fields(item: Scope) -> None:
    if item.sensitive:
        assert item.personal_fields, f"{item.id} is sensitive but releases no personal field"
    if not item.personal_fields:
        assert not item.sensitive


@pytest.mark.parametrize("item", SCOPES, ids=lambda item: item.id)
def test_scopes_releasing_facts_about_minors_are_sensitive(item: Scope) -> None:
    if item.id in STAFF_ONLY_SCOPES:
        return
    minors = MINOR_FACTS & set(item.personal_fields)
    assert not minors or item.sensitive, f"{item.id} releases {sorted(minors)} but is not sensitive"


def test_identity_of_students_is_for_platform_services_only() -> None:
    assert scope("student.identity.read").audience == ("platform",)
    assert not scope("student.identity.read").requestable_by("app")
    assert scope("people.write").audience == ("platform",)
    assert scope("metering.report").requestable_by("app")
    assert scope("openid").requestable_by("app") and scope("openid").requestable_by("platform")


def test_every_personal_field_has_labels_and_is_used() -> None:
    declared = set(typing.get_args(PersonalField))
    labelled = [label.id for label in PERSONAL_FIELDS]
    assert sorted(labelled) == sorted(declared)
    for label in PERSONAL_FIELDS:
        assert CJK.search(label.label_zh) and label.label_en.strip()
    used = {field for item in SCOPES for field in item.personal_fields}
    assert used == declared, f"personal fields no scope releases: {sorted(declared - used)}"
    assert personal_field_label("phone_number").label_zh == "手机号码"


def test_unknown_scope_raises_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="nope") as caught:
        scope("nope")
    assert "openid" in str(caught.value), "the message should list the known scopes"
    assert scope("openid").id == "openid"


def test_personal_fields_for_a_set_of_scopes() -> None:
    assert personal_fields_for([]) == ()
    assert personal_fields_for(["org.read", "resources.read"]) == ()
    fields = personal_fields_for(["profile", "phone", "guardian.read"])
    assert fields == tuple(sorted({"name", "person_kind", "phone_number", "guardian_relationship"}))
    with pytest.raises(KeyError):
        personal_fields_for(["profile", "nope"])


def test_guardian_consent_and_scope_strings() -> None:
    assert not requires_guardian_consent(["openid", "org.read"])
    assert requires_guardian_consent(["openid", "roster.students.read"])
    parsed = parse_scope_string("phone  openid\tphone")
    assert [item.id for item in parsed] == ["openid", "phone"]
    with pytest.raises(KeyError):
        parse_scope_string("openid admin")


def test_scope_model_rejects_malformed_entries() -> None:
    with pytest.raises(ValidationError):
        Scope(id="Roster.Read", description_zh="读取", description_en="Read", audience=("app",))
    with pytest.raises(ValidationError):
        Scope(id="roster.read", description_zh="读取", description_en="Read", audience=())
    with pytest.raises(ValidationError):
        Scope(id="roster.read", description_zh="", description_en="Read", audience=("app",))
    with pytest.raises(ValidationError):
        Scope(
            id="roster.read",
            description_zh="读取",
            description_en="Read",
            personal_fields=("favourite_colour",),
            audience=("app",),
        )
    with pytest.raises(ValidationError):
        Scope.model_validate({**scope("openid").model_dump(), "unexpected": 1})
    with pytest.raises(ValidationError):
        scope("openid").sensitive = True
