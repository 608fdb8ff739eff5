"""The app manifest: what vendors submit is checked the same way by the model and by the published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from contracts.manifest import AppManifestV1, json_pointer

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "generated" / "schemas" / "app-manifest.v1.json").read_text("utf-8")
)


def manifest(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "manifest_version": 1,
        "version": "1.2.0",
        "name": {"zh-CN": "作业小助手", "en": "Homework Helper"},
        "summary": {"zh-CN": "布置、批改和讲评作业"},
        "description": {"zh-CN": "教师布置分层作业，学生在线提交，系统辅助批改并生成学情报告。"},
        "category": "homework",
        "grade_bands": ["primary_upper", "junior"],
        "subjects": ["mathematics", "chinese"],
        "screenshots": ["https://vendor.example.cn/shots/1.png"],
        "launch": {
            "type": "lti_1p3",
            "initiate_login_uri": "https://vendor.example.cn/lti/login",
            "target_link_uri": "https://vendor.example.cn/lti/launch",
            "redirect_uris": ["https://vendor.example.cn/lti/launch"],
            "jwks_url": "https://vendor.example.cn/.well-known/jwks.json",
        },
        "webhook": {
            "url": "https://vendor.example.cn/webhooks",
            "events": ["installation.removed", "roster.class.changed"],
        },
        "scopes": [
            {"scope": "openid", "purpose": {"zh-CN": "识别登录的教师和学生"}},
            {"scope": "roster.read", "purpose": {"zh-CN": "按班级布置作业，需要读取班级和任课教师"}},
        ],
        "data_retention_days": 30,
        "pricing": {"unit": "monthly_active_user", "unit_price_fen": 150, "monthly_cap_fen_per_school": 300_000},
        "privacy_policy_url": "https://vendor.example.cn/privacy",
        "support": {"email": "support@vendor.example.cn"},
    }
    document.update(changes)
    return document


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return ["/" + "/".join(str(part) for part in error.absolute_path) for error in validator.iter_errors(document)]


def model_pointers(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as failure:
        AppManifestV1.model_validate(document)
    return [json_pointer(error["loc"]) for error in failure.value.errors()]


def test_a_complete_manifest_is_valid_for_the_model_and_the_schema() -> None:
    document = manifest()
    parsed = AppManifestV1.model_validate(document)
    assert schema_errors(document) == []
    assert parsed.scope_ids == ["openid", "roster.read"]
    assert parsed.name.zh_cn == "作业小助手"
    assert ("/launch/jwks_url", "https://vendor.example.cn/.well-known/jwks.json") in parsed.urls()
    assert parsed.model_dump(mode="json", by_alias=True)["name"]["zh-CN"] == "作业小助手"


def test_chinese_name_is_required_english_optional() -> None:
    document = manifest(name={"en": "Homework Helper"})
    assert "/name/zh-CN" in model_pointers(document)
    assert schema_errors(document) == ["/name"]


def test_each_problem_is_named_by_its_json_pointer() -> None:
    document = manifest(
        grade_bands=["junior", "college"],
        pricing={"unit": "per_hour", "unit_price_fen": -1},
        launch={**manifest()["launch"], "jwks_url": "ftp://vendor.example.cn/keys"},
    )
    pointers = model_pointers(document)
    assert "/grade_bands/1" in pointers
    assert "/pricing/unit" in pointers
    assert "/pricing/unit_price_fen" in pointers
    assert "/launch/jwks_url" in pointers
    published = schema_errors(document)
    assert {"/grade_bands/1", "/pricing/unit", "/pricing/unit_price_fen"} <= set(published)
    assert any(pointer.startswith("/launch") for pointer in published)  # the schema reports at the union


def test_unknown_and_platform_only_scopes_are_refused_with_the_reason() -> None:
    document = manifest(
        scopes=[
            {"scope": "openid", "purpose": {"zh-CN": "识别登录的教师和学生"}},
            {"scope": "grades.everything", "purpose": {"zh-CN": "读取全部成绩数据用于分析"}},
            {"scope": "people.write", "purpose": {"zh-CN": "同步修改学校人员信息"}},
        ]
    )
    with pytest.raises(ValidationError) as failure:
        AppManifestV1.model_validate(document)
    problems = {json_pointer(error["loc"]): error["msg"] for error in failure.value.errors()}
    assert "unknown scope 'grades.everything'" in problems["/scopes/1/scope"]
    assert "reserved for the platform" in problems["/scopes/2/scope"]


def test_a_purpose_must_say_something_and_openid_is_required() -> None:
    too_short = manifest(scopes=[{"scope": "openid", "purpose": {"zh-CN": "登录"}}])
    assert model_pointers(too_short) == ["/scopes/0/purpose"]
    without_openid = manifest(scopes=[{"scope": "roster.read", "purpose": {"zh-CN": "读取班级和任课教师安排"}}])
    with pytest.raises(ValidationError, match="request the 'openid' scope"):
        AppManifestV1.model_validate(without_openid)


def test_webhook_events_need_the_scopes_that_release_their_data() -> None:
    document = manifest(webhook={"url": "https://vendor.example.cn/webhooks", "events": ["roster.membership.changed"]})
    with pytest.raises(ValidationError, match=r"roster\.students\.read"):
        AppManifestV1.model_validate(document)


def test_a_plan_per_reported_unit_names_its_unit() -> None:
    with pytest.raises(ValidationError, match="reported_unit_name"):
        AppManifestV1.model_validate(manifest(pricing={"unit": "reported_unit", "unit_price_fen": 10}))
    named = manifest(
        pricing={"unit": "reported_unit", "unit_price_fen": 10, "reported_unit_name": {"zh-CN": "一份批改的作业"}}
    )
    assert AppManifestV1.model_validate(named).pricing.reported_unit_name is not None
    assert schema_errors(named) == []


def test_urls_with_credentials_or_other_schemes_are_refused() -> None:
    for url in ("https://user:pw@vendor.example.cn/privacy", "javascript:alert(1)", "vendor.example.cn/privacy"):
        assert "/privacy_policy_url" in model_pointers(manifest(privacy_policy_url=url))
