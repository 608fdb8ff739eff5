"""The sample app's pages: small, server-rendered, in Chinese (the users are Chinese teachers and pupils)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

ROLE_LABELS = {
    "teacher": "教师",
    "student": "学生",
    "parent": "家长",
    "school_admin": "学校管理员",
    "district_admin": "区县管理员",
    "city_admin": "市级管理员",
    "Instructor": "教师",
    "Learner": "学生",
    "Administrator": "管理员",
    "Mentor": "家长/导师",
    "ContentDeveloper": "内容开发者",
    "TeachingAssistant": "助教",
}

_STYLE = """
body{font-family:"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;margin:2rem auto;max-width:52rem;
color:#1f2933;padding:0 1rem}h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d9e2ec;padding:.4rem;text-align:left}
.muted{color:#627d98;font-size:.9rem}.box{background:#f0f4f8;border-radius:6px;padding:1rem}
button{padding:.4rem 1rem;font-size:1rem}code{font-size:.85rem}
"""


def role_label(role: str) -> str:
    """A role as a person reads it: the LTI role URI's last part or the platform's role name, in Chinese."""
    short = role.rsplit("#", 1)[-1].rsplit("/", 1)[-1]
    return ROLE_LABELS.get(short, short)


def page(title: str, *sections: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{''.join(sections)}"
        '<p class="muted">示例第三方应用 · Sample vendor app · 仅用于演示平台对接</p></body></html>'
    )


def definition_list(items: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(str(value)) if value not in (None, '') else '—'}</td></tr>"
        for label, value in items
    )
    return f"<table>{rows}</table>"


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell)) if cell not in (None, '') else '—'}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(heading: str, *parts: str) -> str:
    return f"<h2>{escape(heading)}</h2>{''.join(parts)}"


def paragraph(text: str, *, muted: bool = False) -> str:
    return f'<p class="muted">{escape(text)}</p>' if muted else f"<p>{escape(text)}</p>"


def form_button(action: str, label: str, fields: Mapping[str, str] | None = None) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in (fields or {}).items()
    )
    return (
        f'<form method="post" action="{escape(action)}">{hidden}<button type="submit">{escape(label)}</button></form>'
    )


def error_page(title: str, detail: str) -> str:
    return page(title, paragraph(detail), paragraph("请回到平台重新打开应用；如仍失败，请联系应用提供商。", muted=True))
