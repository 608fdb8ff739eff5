"""Checking a submitted manifest: the published schema (AppManifestV1), then the rules that depend on where the
platform runs (https outside local development; webhook endpoints reachable only at public addresses)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from appstore.apps.errors import InvalidManifest
from contracts.manifest import AppManifestV1, json_pointer
from kit.errors import FieldError
from kit.netguard import UnsafeUrl, check_outbound_url

LOCAL_ENVIRONMENTS = ("local", "test")

# What to fix, in Chinese, for pydantic's error types; pydantic's own English message follows it.
_HINTS_ZH: dict[str, str] = {
    "missing": "缺少必填项",
    "extra_forbidden": "清单中不允许出现此字段，请删除",
    "string_too_short": "内容过短",
    "string_too_long": "内容过长",
    "string_pattern_mismatch": "格式不正确",
    "string_type": "应为字符串",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "bool_type": "应为 true 或 false",
    "list_type": "应为数组",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "literal_error": "取值不在允许的范围内",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "too_short": "条目过少",
    "too_long": "条目过多",
    "union_tag_invalid": "launch.type 应为 oidc 或 lti_1p3",
    "union_tag_not_found": "请填写 launch.type（oidc 或 lti_1p3）",
    "value_error": "取值有误",
}


def _message(error: ErrorDetails) -> str:
    hint = _HINTS_ZH.get(error["type"], "取值有误")
    text = error["msg"].removeprefix("Value error, ")
    if error["type"] == "literal_error" and "expected" in error.get("ctx", {}):
        return f"{hint}，可选：{error['ctx']['expected']}；{text}"
    return f"{hint}；{text}"


def parse_manifest(document: Any, *, environment: str, resolve_hosts: bool = True) -> AppManifestV1:
    """The manifest, or a 422 whose ``errors[]`` name each problem by its JSON pointer and say what to fix."""
    if not isinstance(document, dict):
        raise InvalidManifest(
            "应用清单应为 JSON 对象；The manifest must be a JSON object (see app-manifest.v1.json).",
            errors=[FieldError(field="", message="应为 JSON 对象；must be a JSON object", code="type")],
        )
    try:
        manifest = AppManifestV1.model_validate(document)
    except ValidationError as error:
        raise InvalidManifest(
            "应用清单不符合规范，请按 errors[] 中的 JSON 指针逐项修改；"
            "The manifest does not match the schema: fix each problem at the JSON pointer given in errors[].",
            errors=[
                FieldError(field=json_pointer(tuple(item["loc"])), message=_message(item), code=item["type"])
                for item in error.errors(include_url=False)
            ],
        ) from None
    if environment not in LOCAL_ENVIRONMENTS:
        check_deployment_rules(manifest, resolve_hosts=resolve_hosts)
    return manifest


def check_deployment_rules(manifest: AppManifestV1, *, resolve_hosts: bool = True) -> None:
    """Outside local development every URL is https, and the webhook endpoint is not on a private network."""
    errors: list[FieldError] = []
    for pointer, url in manifest.urls():
        if not url.startswith("https://"):
            errors.append(
                FieldError(
                    field=pointer,
                    message="正式环境中所有网址都必须使用 https；every URL must use https outside local development",
                    code="https_required",
                )
            )
    if manifest.webhook is not None and manifest.webhook.url.startswith("https://"):
        try:
            check_outbound_url(manifest.webhook.url, production=True, resolve=resolve_hosts)
        except UnsafeUrl as unsafe:
            errors.append(
                FieldError(
                    field="/webhook/url",
                    message="回调地址必须是公网可访问的地址，不能指向内网、本机或保留地址；"
                    f"the webhook endpoint must be a public address, not private, loopback or reserved ({unsafe})",
                    code="unsafe_url",
                )
            )
    if errors:
        raise InvalidManifest(
            "应用清单中的网址不符合正式环境的要求；Some URLs in the manifest are not acceptable in production.",
            errors=errors,
        )
