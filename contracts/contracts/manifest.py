"""The app manifest: how a vendor describes an app to the app store (应用超市), one version at a time.

A vendor submits a manifest for each version of an app; city reviewers approve it; a published version never
changes. The JSON Schema generated from :class:`AppManifestV1` is published in ``contracts/generated`` so a
vendor can validate a manifest before submitting it. Pure data: imports pydantic only.

Rules the schema cannot state, because they depend on where the platform runs, are checked by the app store:
URLs must be https outside local development, and a webhook endpoint must not resolve to a private address.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.scopes import SCOPES_BY_ID

MANIFEST_SCHEMA_URI = "https://schemas.edu-platform.cn/apps/manifest.v1.json"

_SEMVER = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$"
_WEB_URL = re.compile(r"^https?://[^\s/?#@]+(:\d{1,5})?(/[^\s#]*)?$")


def _web_url(value: str) -> str:
    if not _WEB_URL.match(value):
        raise ValueError("must be an absolute http(s) URL without credentials or fragment")
    return value


#: An absolute http(s) URL; https is required outside local development (checked by the app store).
WebUrl = Annotated[
    str,
    Field(max_length=2000, json_schema_extra={"format": "uri", "pattern": _WEB_URL.pattern}),
    AfterValidator(_web_url),
]

Category = Literal[
    "teaching",  # 教学工具
    "learning",  # 自主学习
    "homework",  # 作业练习
    "assessment",  # 测评考试
    "classroom",  # 课堂互动
    "quality_education",  # 素质教育（德育、体育、美育、劳动）
    "home_school",  # 家校沟通
    "management",  # 教务管理
    "resources",  # 教学资源
    "tools",  # 通用工具
]
CATEGORY_LABELS: dict[str, str] = {
    "teaching": "教学工具",
    "learning": "自主学习",
    "homework": "作业练习",
    "assessment": "测评考试",
    "classroom": "课堂互动",
    "quality_education": "素质教育",
    "home_school": "家校沟通",
    "management": "教务管理",
    "resources": "教学资源",
    "tools": "通用工具",
}
GradeBand = Literal["preschool", "primary_lower", "primary_upper", "junior", "senior"]
GRADE_BAND_LABELS: dict[str, str] = {
    "preschool": "学前",
    "primary_lower": "小学低段（1–3年级）",
    "primary_upper": "小学高段（4–6年级）",
    "junior": "初中",
    "senior": "高中",
}
Subject = Literal[
    "chinese",
    "mathematics",
    "english",
    "morality_law",
    "science",
    "physics",
    "chemistry",
    "biology",
    "history",
    "geography",
    "politics",
    "information_technology",
    "music",
    "art",
    "physical_education",
    "labour",
    "psychology",
    "general",
]
SUBJECT_LABELS: dict[str, str] = {
    "chinese": "语文",
    "mathematics": "数学",
    "english": "英语",
    "morality_law": "道德与法治",
    "science": "科学",
    "physics": "物理",
    "chemistry": "化学",
    "biology": "生物",
    "history": "历史",
    "geography": "地理",
    "politics": "思想政治",
    "information_technology": "信息科技",
    "music": "音乐",
    "art": "美术",
    "physical_education": "体育与健康",
    "labour": "劳动",
    "psychology": "心理健康",
    "general": "综合",
}
PricingUnit = Literal["launch", "monthly_active_user", "minute", "api_call", "reported_unit"]
PRICING_UNIT_LABELS: dict[str, str] = {
    "launch": "按启动次数",
    "monthly_active_user": "按月活跃用户",
    "minute": "按使用分钟",
    "api_call": "按接口调用次数",
    "reported_unit": "按应用上报的计量单位",
}

#: Webhook event types an app may subscribe to, with the scopes a school must have granted for the app to get them.
WEBHOOK_EVENT_SCOPES: dict[str, tuple[str, ...]] = {
    "installation.created": (),
    "installation.updated": (),
    "installation.removed": (),
    "app.status_changed": (),
    "roster.class.changed": ("roster.read",),
    "roster.class.deleted": ("roster.read",),
    "roster.membership.changed": ("roster.read", "roster.students.read"),
}
WebhookEventType = Literal[
    "installation.created",
    "installation.updated",
    "installation.removed",
    "app.status_changed",
    "roster.class.changed",
    "roster.class.deleted",
    "roster.membership.changed",
]


class LocalizedText(BaseModel):
    """Text in Simplified Chinese (required) and English (optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    zh_cn: str = Field(alias="zh-CN", min_length=1, max_length=4000, description="Simplified Chinese")
    en: str | None = Field(default=None, min_length=1, max_length=4000, description="English")

    @field_validator("zh_cn", "en")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


class ShortText(LocalizedText):
    """A name or one-line summary."""

    zh_cn: str = Field(alias="zh-CN", min_length=1, max_length=60, description="Simplified Chinese")
    en: str | None = Field(default=None, min_length=1, max_length=120, description="English")


class ScopeRequest(BaseModel):
    """One OAuth scope the app asks schools for, and why: the purpose is shown to schools and guardians."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str = Field(description="A scope of the platform's catalogue that apps may request")
    purpose: LocalizedText = Field(description="What the app does with the data this scope releases")

    @field_validator("scope")
    @classmethod
    def _app_scope(cls, value: str) -> str:
        known = SCOPES_BY_ID.get(value)
        if known is None:
            raise ValueError(f"unknown scope {value!r}; see the platform's scope catalogue (scopes.json)")
        if "app" not in known.audience:
            raise ValueError(f"scope {value!r} is reserved for the platform's own services")
        return value

    @field_validator("purpose")
    @classmethod
    def _purpose_says_something(cls, value: LocalizedText) -> LocalizedText:
        if len(value.zh_cn.strip()) < 6:
            raise ValueError("state the purpose in at least 6 characters of Chinese, e.g. 用于生成班级作业名单")
        return value


class OidcLaunch(BaseModel):
    """The app signs users in with OpenID Connect (authorization code flow against the platform's provider)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["oidc"]
    initiate_login_uri: WebUrl = Field(description="Opened when a user clicks the app; it starts the OIDC login")
    redirect_uris: list[WebUrl] = Field(min_length=1, max_length=10)
    post_logout_redirect_uris: list[WebUrl] = Field(default_factory=list, max_length=10)


class Lti13Launch(BaseModel):
    """The app is an LTI 1.3 tool launched with resource-link requests (OIDC third-party initiated login)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["lti_1p3"]
    initiate_login_uri: WebUrl = Field(description="The tool's OIDC login initiation endpoint")
    target_link_uri: WebUrl = Field(description="Where the tool wants the resource-link launch to land")
    redirect_uris: list[WebUrl] = Field(min_length=1, max_length=10, description="Where the id_token is posted")
    jwks_url: WebUrl = Field(description="The tool's public keys (client assertions for LTI Advantage services)")


class Webhook(BaseModel):
    """Where the platform delivers events, and which events the app wants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: WebUrl
    events: list[WebhookEventType] = Field(min_length=1, max_length=len(WEBHOOK_EVENT_SCOPES))

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("events must be unique")
        return value


class PricingPlan(BaseModel):
    """What the city pays the vendor per unit of use, in fen (分); an optional cap per school per month."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: PricingUnit
    unit_price_fen: int = Field(ge=0, le=10_000_000, description="Price of one unit in fen (1 yuan = 100 fen)")
    monthly_cap_fen_per_school: int | None = Field(
        default=None, ge=0, le=1_000_000_000, description="Most the city pays for one school in one month"
    )
    reported_unit_name: ShortText | None = Field(
        default=None, description="What one vendor-reported unit is (e.g. 一份批改的作业); required for reported_unit"
    )

    @model_validator(mode="after")
    def _reported_unit_named(self) -> PricingPlan:
        if self.unit == "reported_unit" and self.reported_unit_name is None:
            raise ValueError("a plan priced per reported unit must name the unit in reported_unit_name")
        return self


class Support(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    phone: str | None = Field(default=None, pattern=r"^[0-9+\-() ]{5,30}$")
    url: WebUrl | None = None


class AppManifestV1(BaseModel):
    """Version 1 of the app manifest."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="App manifest v1",
        json_schema_extra={"$id": MANIFEST_SCHEMA_URI},
    )

    manifest_version: Literal[1] = 1
    version: str = Field(pattern=_SEMVER, max_length=40, description="The app's version, semantic versioning")
    name: ShortText
    summary: ShortText = Field(description="One line shown in catalog listings")
    description: LocalizedText
    category: Category
    grade_bands: list[GradeBand] = Field(min_length=1, max_length=5)
    subjects: list[Subject] = Field(min_length=1, max_length=18)
    icon_url: WebUrl | None = None
    screenshots: list[WebUrl] = Field(default_factory=list, max_length=8)
    launch: OidcLaunch | Lti13Launch = Field(discriminator="type")
    webhook: Webhook | None = None
    scopes: list[ScopeRequest] = Field(min_length=1, max_length=20)
    data_retention_days: int = Field(
        ge=0, le=3650, description="Days the vendor keeps a school's data after the school uninstalls the app"
    )
    pricing: PricingPlan
    privacy_policy_url: WebUrl
    support: Support

    @field_validator("grade_bands", "subjects")
    @classmethod
    def _unique_entries(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("entries must be unique")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AppManifestV1:
        requested = [request.scope for request in self.scopes]
        if len(set(requested)) != len(requested):
            raise ValueError("each scope may be requested once")
        if "openid" not in requested:
            raise ValueError("apps sign users in through the platform: request the 'openid' scope")
        if self.webhook is not None:
            granted = set(requested)
            for event in self.webhook.events:
                missing = [scope for scope in WEBHOOK_EVENT_SCOPES[event] if scope not in granted]
                if missing:
                    raise ValueError(f"webhook event {event!r} needs the scope(s) {', '.join(missing)} requested")
        return self

    @property
    def scope_ids(self) -> list[str]:
        return sorted(request.scope for request in self.scopes)

    def urls(self) -> list[tuple[str, str]]:
        """Every URL in the manifest with its JSON pointer, for checks that depend on the deployment."""
        found: list[tuple[str, str]] = []

        def walk(value: object, pointer: str) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(item, f"{pointer}/{key}")
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    walk(item, f"{pointer}/{index}")
            elif isinstance(value, str) and _WEB_URL.match(value):
                found.append((pointer, value))

        walk(self.model_dump(mode="json", by_alias=True), "")
        return found


AppManifest = AppManifestV1


def json_pointer(location: tuple[int | str, ...]) -> str:
    """RFC 6901 pointer of a pydantic error location (``("scopes", 2, "scope")`` → ``/scopes/2/scope``)."""
    parts: list[str] = []
    for part in location:
        text = str(part)
        if text in ("oidc", "lti_1p3") and parts and parts[-1] == "launch":
            continue  # the discriminated union's tag is not a member of the document
        parts.append(text.replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(parts) if parts else ""
