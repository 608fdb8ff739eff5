"""Typed failures of the webhooks sub-domain."""

from __future__ import annotations

from kit.errors import Conflict, NotFound


class UnknownDelivery(NotFound):
    slug = "appstore/webhook-delivery-not-found"
    title_zh = "推送记录不存在"
    title_en = "Webhook delivery not found"

    def __init__(self, delivery_id: str) -> None:
        super().__init__(
            f"该应用没有编号为 {delivery_id[:64]} 的推送记录；The app has no webhook delivery {delivery_id[:64]!r}.",
            delivery_id=delivery_id[:64],
        )


class NotRedeliverable(Conflict):
    slug = "appstore/webhook-not-redeliverable"
    title_zh = "该推送无法重新发送"
    title_en = "Delivery cannot be sent again"

    def __init__(self, delivery_id: str, status: str) -> None:
        zh, en = {
            "pending": ("它仍在发送队列中", "it is still queued"),
            "cancelled": ("学校已卸载该应用，推送已取消", "the school uninstalled the app, so it was cancelled"),
        }.get(status, ("学校已卸载该应用", "the school uninstalled the app"))
        super().__init__(
            f"推送 {delivery_id} 无法重新发送：{zh}；Delivery {delivery_id} cannot be sent again: {en}. Only delivered "
            "or dead-lettered deliveries of an active installation can.",
            delivery_id=delivery_id,
            delivery_status=status,
        )
