"""OneRoster 1.2 query parameters (section 3.4 of the REST binding), parsed and translated into SQL.

* ``filter``: ``<field><predicate>'<value>'`` with predicates ``= != > >= < <= ~`` (``~`` = contains), joined by
  ``AND`` or ``OR``; a filter uses one kind of logical operator only (mixing them is refused). A quote inside a
  value is written twice (``'O''Brien'``). Unknown fields and malformed filters → ``invalid_filter_field``.
* ``sort`` / ``orderBy``: one field, ``asc`` (default) or ``desc``; rows with equal sort values keep a stable order
  by sourcedId. A field that cannot be sorted on falls back to that default order, as the binding says.
* ``fields``: comma-separated top-level fields to return; a blank entry is an invalid request, and an unknown
  field makes the whole record come back (both as the binding says).
* ``limit`` (default 100, at most the service's maximum) and ``offset``.

Everything here is plain: parsing gives values, :func:`filter_condition` and :func:`order_by` give SQLAlchemy
expressions over the columns a collection declares, so nothing is ever filtered in Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from enrollment.oneroster.errors import InvalidData, InvalidFilterField, InvalidSelectionField

Operator = Literal["=", "!=", ">", ">=", "<", "<=", "~"]
Logical = Literal["AND", "OR"]
ValueKind = Literal["string", "datetime", "date", "boolean", "integer", "status", "enum"]

DEFAULT_LIMIT = 100
#: More predicates than this in one filter is refused: the SQL must stay small whatever a client sends.
MAX_PREDICATES = 10
_MAX_FILTER_LENGTH = 2000


# ------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Predicate:
    field: str
    operator: Operator
    value: str


@dataclass(frozen=True)
class Filter:
    predicates: tuple[Predicate, ...]
    logical: Logical = "AND"


@dataclass(frozen=True)
class ListParams:
    """The query of one collection request, validated."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort: str | None = None
    descending: bool = False
    filter: Filter | None = None
    fields: tuple[str, ...] | None = None


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<value>'(?:[^']|'')*')
      | (?P<operator>!=|>=|<=|=|>|<|~)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


def _bad_filter(text: str, reason_zh: str, reason_en: str) -> InvalidFilterField:
    return InvalidFilterField(f"过滤条件 {text[:200]!r} 无效：{reason_zh}；Invalid filter {text[:200]!r}: {reason_en}.")


def parse_filter(text: str) -> Filter:
    """Parse a ``filter`` parameter; raises ``InvalidFilterField`` naming what is wrong."""
    if len(text) > _MAX_FILTER_LENGTH:
        raise _bad_filter(text, "过长", f"longer than {_MAX_FILTER_LENGTH} characters")
    tokens: list[tuple[str, str]] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise _bad_filter(text, f"第 {position + 1} 个字符无法识别", f"unexpected text at character {position + 1}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    predicates: list[Predicate] = []
    logicals: set[str] = set()
    index = 0
    while True:
        if index + 3 > len(tokens):
            raise _bad_filter(text, "应为 字段 运算符 '值'", "expected field, predicate and a quoted value")
        (field_kind, field_name), (operator_kind, operator), (value_kind, quoted) = tokens[index : index + 3]
        if field_kind != "word" or operator_kind != "operator" or value_kind != "value":
            raise _bad_filter(text, "应为 字段 运算符 '值'", "expected field, predicate and a quoted value")
        predicates.append(Predicate(field_name, operator, quoted[1:-1].replace("''", "'")))  # type: ignore[arg-type]
        index += 3
        if index == len(tokens):
            break
        kind, word = tokens[index]
        if kind != "word" or word.upper() not in ("AND", "OR"):
            raise _bad_filter(text, "条件之间应为 AND 或 OR", "conditions must be joined by AND or OR")
        logicals.add(word.upper())
        index += 1
    if len(logicals) > 1:
        raise _bad_filter(text, "不能同时使用 AND 和 OR", "AND and OR cannot be mixed in one filter")
    if len(predicates) > MAX_PREDICATES:
        raise _bad_filter(text, f"条件超过 {MAX_PREDICATES} 个", f"more than {MAX_PREDICATES} conditions")
    return Filter(tuple(predicates), logicals.pop() if logicals else "AND")  # type: ignore[arg-type]


def parse_fields(text: str) -> tuple[str, ...]:
    """Parse a ``fields`` parameter; a blank entry is an invalid request."""
    names = tuple(part.strip() for part in text.split(","))
    if any(not name for name in names):
        raise InvalidSelectionField(
            f"fields 参数 {text[:200]!r} 含空字段；The fields parameter {text[:200]!r} has a blank entry."
        )
    return names


def list_params(
    *,
    limit: str | None,
    offset: str | None,
    sort: str | None,
    order_by: str | None,
    filter_text: str | None,
    fields: str | None,
    max_limit: int,
) -> ListParams:
    """Validate the query parameters of a collection request."""
    return ListParams(
        limit=_bounded_int("limit", limit, default=DEFAULT_LIMIT, minimum=1, maximum=max_limit),
        offset=_bounded_int("offset", offset, default=0, minimum=0, maximum=None),
        sort=_sort_field(sort),
        descending=_descending(order_by),
        filter=parse_filter(filter_text) if filter_text is not None and filter_text.strip() else None,
        fields=parse_fields(fields) if fields is not None else None,
    )


def _bounded_int(name: str, text: str | None, *, default: int, minimum: int, maximum: int | None) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidData(f"{name} 必须是整数；{name} must be an integer, not {text[:32]!r}.") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f"–{maximum}" if maximum is not None else " or more"
        raise InvalidData(f"{name} 必须在 {minimum}{upper} 之间；{name} must be {minimum}{upper}, not {value}.")
    return value


def _sort_field(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    return text.strip()


def _descending(text: str | None) -> bool:
    if text is None or text == "" or text == "asc":
        return False
    if text == "desc":
        return True
    raise InvalidData(f"orderBy 只能是 asc 或 desc；orderBy must be 'asc' or 'desc', not {text[:32]!r}.")


# ------------------------------------------------------------------------------------ fields to SQL


@dataclass(frozen=True)
class FieldSpec:
    """A field of a collection that can be filtered (and sorted) on, as a SQL expression.

    ``kind`` says how a filter value is read: ``status`` fields take ``active`` / ``tobedeleted`` and ``column`` is
    then the boolean "is active" expression; ``enum`` fields map OneRoster values to stored ones through ``values``.
    A ``predicate`` replaces the generic comparison for fields that are not one column (a user's role).
    """

    column: ColumnElement[Any] | None
    kind: ValueKind = "string"
    sortable: bool = True
    values: Mapping[str, Any] = field(default_factory=dict)
    predicate: Callable[[Operator, str], ColumnElement[bool]] | None = None


def _parse_datetime(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _typed_value(name: str, spec: FieldSpec, predicate: Predicate) -> Any:
    text = predicate.value
    try:
        if spec.kind == "datetime":
            return _parse_datetime(text)
        if spec.kind == "date":
            return date.fromisoformat(text)
        if spec.kind == "integer":
            return int(text)
    except ValueError:
        raise InvalidFilterField(
            f"字段 {name} 的值 {text[:64]!r} 格式不对；The value {text[:64]!r} of {name} is not a valid {spec.kind}."
        ) from None
    if spec.kind == "boolean":
        if text not in ("true", "false"):
            raise InvalidFilterField(f"字段 {name} 只能是 true 或 false；{name} must be 'true' or 'false'.")
        return text == "true"
    if spec.kind == "enum":
        # An unknown enumeration value matches nothing, as any value that no record has.
        return spec.values.get(text, text)
    return text


_COMPARISONS: dict[str, Callable[[ColumnElement[Any], Any], ColumnElement[bool]]] = {
    "=": lambda column, value: column == value,
    "!=": lambda column, value: column != value,
    ">": lambda column, value: column > value,
    ">=": lambda column, value: column >= value,
    "<": lambda column, value: column < value,
    "<=": lambda column, value: column <= value,
}


def _condition(name: str, spec: FieldSpec, predicate: Predicate) -> ColumnElement[bool]:
    operator = predicate.operator
    if spec.predicate is not None:
        return spec.predicate(operator, predicate.value)
    assert spec.column is not None
    if spec.kind == "status":
        if operator not in ("=", "!=") or predicate.value not in ("active", "tobedeleted"):
            raise InvalidFilterField(
                f"status 只能用 = 或 != 与 active、tobedeleted 比较；"
                f"status compares with = or != to 'active' or 'tobedeleted' only, not {predicate.value[:32]!r}."
            )
        wanted_active = (predicate.value == "active") == (operator == "=")
        return spec.column if wanted_active else sa.not_(spec.column)
    if operator == "~":
        if spec.kind != "string":
            raise InvalidFilterField(f"字段 {name} 不支持 ~（包含）；{name} does not support ~ (contains).")
        return spec.column.icontains(predicate.value, autoescape=True)
    value = _typed_value(name, spec, predicate)
    if spec.kind == "boolean" and operator not in ("=", "!="):
        raise InvalidFilterField(f"字段 {name} 只能用 = 或 != 比较；{name} compares with = or != only.")
    return _COMPARISONS[operator](spec.column, value)


def filter_condition(expression: Filter, fields: Mapping[str, FieldSpec]) -> ColumnElement[bool]:
    """The SQL condition of a parsed filter over a collection's fields."""
    conditions = []
    for predicate in expression.predicates:
        spec = fields.get(predicate.field)
        if spec is None:
            known = ", ".join(sorted(fields))
            raise InvalidFilterField(
                f"不能按字段 {predicate.field[:64]!r} 过滤，可用字段：{known}；"
                f"Cannot filter on {predicate.field[:64]!r}; filterable fields: {known}."
            )
        conditions.append(_condition(predicate.field, spec, predicate))
    return sa.and_(*conditions) if expression.logical == "AND" else sa.or_(*conditions)


def order_by(
    params: ListParams, fields: Mapping[str, FieldSpec], id_column: ColumnElement[Any]
) -> list[ColumnElement[Any]]:
    """ORDER BY terms: the requested field (when it can be sorted on), then sourcedId for a stable order."""
    terms: list[ColumnElement[Any]] = []
    spec = fields.get(params.sort) if params.sort else None
    if spec is not None and spec.sortable and spec.column is not None and spec.column is not id_column:
        column = spec.column
        if spec.kind == "status":
            column = sa.case((spec.column, 0), else_=1)  # "active" sorts before "tobedeleted"
        terms.append(column.desc() if params.descending else column.asc())
    terms.append(id_column.desc() if params.descending and params.sort == "sourcedId" else id_column.asc())
    return terms


def id_order(params: ListParams, fields: Mapping[str, FieldSpec], id_column: ColumnElement[Any]) -> str | None:
    """``asc`` or ``desc`` when the page order is by sourcedId alone (a page can then resume after a key), else None."""
    if len(order_by(params, fields, id_column)) > 1:
        return None
    return "desc" if params.descending and params.sort == "sourcedId" else "asc"


def select_fields(record: dict[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """Only the requested top-level fields; every field when one of them is unknown (binding section 3.4)."""
    if not fields or any(name not in record for name in fields):
        return record
    return {name: record[name] for name in fields}


def known_selection(fields: Sequence[str] | None, known: set[str]) -> tuple[str, ...] | None:
    """The selection to apply: None (everything) when a requested field is not one of the collection's."""
    if not fields or any(name not in known for name in fields):
        return None
    return tuple(fields)


# ------------------------------------------------------------------------------------------- paging


def link_header(base_url: str, query: Sequence[tuple[str, str]], *, offset: int, limit: int, total: int) -> str:
    """RFC 8288 ``Link`` with first, prev, next and last pages of an offset-paginated collection."""

    def url(page_offset: int) -> str:
        items = [(key, value) for key, value in query if key not in ("offset", "limit")]
        items += [("limit", str(limit)), ("offset", str(page_offset))]
        return f"{base_url}?{urlencode(items)}"

    last = max(0, ((total - 1) // limit) * limit) if total else 0
    links = [f'<{url(0)}>; rel="first"']
    if offset > 0:
        links.append(f'<{url(max(0, min(offset - limit, last)))}>; rel="prev"')
    if offset + limit < total:
        links.append(f'<{url(offset + limit)}>; rel="next"')
    links.append(f'<{url(last)}>; rel="last"')
    return ", ".join(links)
