"""Typed failures of apps, their manifest versions and attachments."""

from __future__ import annotations

from kit.errors import Conflict, InvalidInput, NotFound


class InvalidManifest(InvalidInput):
    """The manifest fails the schema or the deployment's rules; ``errors[].field`` is the JSON pointer."""

    slug = "appstore/invalid-manifest"
    title_zh = "应用清单有误"
    title_en = "Invalid app manifest"


class UnknownVersion(NotFound):
    slug = "appstore/version-not-found"
    title_zh = "应用版本不存在"
    title_en = "App version not found"

    def __init__(self, version_id: str) -> None:
        super().__init__(
            f"没有编号为 {version_id[:64]} 的应用版本；No app version has the id {version_id[:64]!r}.",
            version_id=version_id[:64],
        )


class VersionImmutable(Conflict):
    """The version has been submitted (or reviewed, or published): it never changes again."""

    slug = "appstore/version-immutable"
    title_zh = "该版本已提交，不能修改"
    title_en = "Version can no longer change"


class VersionNotIncreasing(Conflict):
    slug = "appstore/version-not-increasing"
    title_zh = "版本号必须大于已有版本"
    title_en = "Version must be greater than earlier versions"


class VersionStateConflict(Conflict):
    """The version is not in the state the operation needs (e.g. submitting one already submitted)."""

    slug = "appstore/version-state"
    title_zh = "应用版本状态不允许此操作"
    title_en = "Version state does not allow this"


class SubmissionIncomplete(InvalidInput):
    slug = "appstore/submission-incomplete"
    title_zh = "提交审核前还缺少材料"
    title_en = "Submission incomplete"


class NoAttachment(NotFound):
    slug = "appstore/attachment-not-found"
    title_zh = "尚未上传安全自评估报告"
    title_en = "No security self-assessment uploaded"
