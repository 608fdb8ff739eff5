"""The app store's typed failures shared across its sub-domains; each renders as problem+json through the kit."""

from __future__ import annotations

from kit.errors import NotFound


class UnknownApp(NotFound):
    slug = "appstore/app-not-found"
    title_zh = "应用不存在"
    title_en = "App not found"

    def __init__(self, app_id: str) -> None:
        super().__init__(f"没有编号为 {app_id[:64]} 的应用；No app has the id {app_id[:64]!r}.", app_id=app_id[:64])


class UnknownVendor(NotFound):
    slug = "appstore/vendor-not-found"
    title_zh = "开发企业不存在"
    title_en = "Vendor not found"

    def __init__(self, vendor_id: str) -> None:
        super().__init__(
            f"没有编号为 {vendor_id[:64]} 的开发企业；No vendor has the id {vendor_id[:64]!r}.",
            vendor_id=vendor_id[:64],
        )
