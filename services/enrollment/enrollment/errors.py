"""Enrollment's typed failures shared across its sub-domains; each renders as problem+json through the kit."""

from __future__ import annotations

from kit.errors import NotFound


class UnknownSchool(NotFound):
    slug = "enrollment/school-not-found"
    title_zh = "学校不存在"
    title_en = "School not found"

    def __init__(self, school_id: str) -> None:
        super().__init__(
            f"没有编号为 {school_id[:64]} 的学校；No school has the id {school_id[:64]!r}.", school_id=school_id[:64]
        )
