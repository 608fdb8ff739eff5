"""OneRoster query parameters: the filter grammar, paging, field selection, and their translation into SQL.

The SQL side runs on a real database (SQLite, or PostgreSQL with TEST_DATABASE_URL): a filter must select the same
people there as the rules say, and the SQL family and given names must split every name as the JSON does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col

from enrollment.directory.models import DirectoryPerson
from enrollment.oneroster.errors import InvalidData, InvalidFilterField, InvalidSelectionField
from enrollment.oneroster.query import (
    MAX_PREDICATES,
    Filter,
    ListParams,
    Predicate,
    filter_condition,
    known_selection,
    link_header,
    list_params,
    order_by,
    parse_fields,
    parse_filter,
    select_fields,
)
from enrollment.oneroster.service import USERS, split_name
from kit.db import Database
from kit.testing import database_with_tables

# ----------------------------------------------------------------------------------------- grammar


def test_a_filter_is_field_predicate_and_quoted_value() -> None:
    assert parse_filter("status='active'") == Filter((Predicate("status", "=", "active"),))
    assert parse_filter(" dateLastModified >= '2026-01-01T00:00:00Z' ") == Filter(
        (Predicate("dateLastModified", ">=", "2026-01-01T00:00:00Z"),)
    )
    assert parse_filter("school.sourcedId!='s-1'").predicates == (Predicate("school.sourcedId", "!=", "s-1"),)
    assert parse_filter("familyName~''").predicates == (Predicate("familyName", "~", ""),)


def test_a_quote_inside_a_value_is_written_twice() -> None:
    assert parse_filter("familyName='O''Brien'").predicates == (Predicate("familyName", "=", "O'Brien"),)
    assert parse_filter("title='a AND b'").predicates == (Predicate("title", "=", "a AND b"),)


def test_conditions_join_with_one_kind_of_logical_operator() -> None:
    both = parse_filter("status='active' AND familyName='王' AND givenName~'明'")
    assert (both.logical, len(both.predicates)) == ("AND", 3)
    either = parse_filter("familyName='王' or familyName='李'")
    assert (either.logical, [item.value for item in either.predicates]) == ("OR", ["王", "李"])
    with pytest.raises(InvalidFilterField, match="AND and OR"):
        parse_filter("a='1' AND b='2' OR c='3'")


@pytest.mark.parametrize(
    "text",
    [
        "status",
        "status=",
        "status=active",
        "status='active",
        "='active'",
        "status=='active'",
        "status='active' AND",
        "status='active' familyName='王'",
        "status='active' XOR familyName='王'",
        "status='active'; DROP TABLE directory_person",
        "status^'active'",
    ],
)
def test_malformed_filters_are_refused(text: str) -> None:
    with pytest.raises(InvalidFilterField):
        parse_filter(text)


def test_a_filter_has_a_bounded_number_of_conditions() -> None:
    many = " AND ".join(f"familyName!='{index}'" for index in range(MAX_PREDICATES))
    assert len(parse_filter(many).predicates) == MAX_PREDICATES
    with pytest.raises(InvalidFilterField, match="more than"):
        parse_filter(many + " AND status='active'")


def test_paging_sorting_and_selection_parameters() -> None:
    params = list_params(
        limit="25",
        offset="50",
        sort="familyName",
        order_by="desc",
        filter_text=None,
        fields="sourcedId, familyName",
        max_limit=1000,
    )
    assert params == ListParams(
        limit=25, offset=50, sort="familyName", descending=True, fields=("sourcedId", "familyName")
    )
    defaults = list_params(
        limit=None, offset=None, sort=None, order_by=None, filter_text="  ", fields=None, max_limit=1000
    )
    assert defaults == ListParams()
    for limit, offset, order in (
        ("0", "0", "asc"),
        ("1001", "0", "asc"),
        ("x", "0", "asc"),
        ("10", "-5", "asc"),
        ("10", "0", "DESC"),
    ):
        with pytest.raises(InvalidData):
            list_params(
                limit=limit, offset=offset, sort=None, order_by=order, filter_text=None, fields=None, max_limit=1000
            )


def test_field_selection_follows_the_binding() -> None:
    record = {"sourcedId": "u-1", "givenName": "小明", "familyName": "王"}
    assert parse_fields("sourcedId,givenName") == ("sourcedId", "givenName")
    with pytest.raises(InvalidSelectionField):
        parse_fields("sourcedId,,givenName")
    with pytest.raises(InvalidSelectionField):
        parse_fields("")
    known = {"sourcedId", "givenName", "familyName"}
    assert select_fields(record, known_selection(("givenName",), known)) == {"givenName": "小明"}
    # An unknown field returns every field of the record.
    assert select_fields(record, known_selection(("givenName", "nickname"), known)) == record


def test_link_header_names_first_prev_next_and_last_pages() -> None:
    query = [("filter", "status='active'"), ("limit", "10"), ("offset", "20")]
    header = link_header("https://api.example.cn/users", query, offset=20, limit=10, total=45)
    links = dict(reversed(part.split("; ")) for part in header.split(", "))
    assert links == {
        'rel="first"': "<https://api.example.cn/users?filter=status%3D%27active%27&limit=10&offset=0>",
        'rel="prev"': "<https://api.example.cn/users?filter=status%3D%27active%27&limit=10&offset=10>",
        'rel="next"': "<https://api.example.cn/users?filter=status%3D%27active%27&limit=10&offset=30>",
        'rel="last"': "<https://api.example.cn/users?filter=status%3D%27active%27&limit=10&offset=40>",
    }
    last_page = link_header("https://x/users", [], offset=40, limit=10, total=45)
    assert 'rel="next"' not in last_page and 'rel="prev"' in last_page
    empty = link_header("https://x/users", [], offset=0, limit=10, total=0)
    assert empty == '<https://x/users?limit=10&offset=0>; rel="first", <https://x/users?limit=10&offset=0>; rel="last"'


@pytest.mark.parametrize(
    ("name", "family", "given"),
    [
        ("王小明", "王", "小明"),
        ("李雷", "李", "雷"),
        ("欧阳子轩", "欧阳", "子轩"),
        ("司马光", "司马", "光"),
        ("欧阳", "欧", "阳"),
        ("单", "单", ""),
        ("诸葛亮明", "诸葛", "亮明"),
    ],
)
def test_chinese_names_split_into_family_and_given_names(name: str, family: str, given: str) -> None:
    assert split_name(name) == (family, given)


# ---------------------------------------------------------------------------------------------- SQL

NAMES = ["王小明", "欧阳子轩", "欧阳", "司马光", "李", "单", "Ann_Lee", "100%纯", "O'Brien", "张三丰"]


@pytest.fixture
def people(database_url: str) -> Iterator[Database]:
    database = database_with_tables(database_url, DirectoryPerson)
    with database.session() as session:
        for index, name in enumerate(NAMES):
            session.add(
                DirectoryPerson(
                    id=f"p{index:02d}",
                    kind="student",
                    name=name,
                    org_id="s1",
                    active=index != 3,
                    student_number=f"G{index:018d}",
                    updated_at=datetime(2026, 9, 1 + index, 8, 0, tzinfo=UTC),
                )
            )
    yield database
    database.dispose()


def matching(database: Database, filter_text: str) -> list[str]:
    condition = filter_condition(parse_filter(filter_text), USERS.fields)
    with Session(database.engine) as session:
        statement = sa.select(DirectoryPerson.name).where(condition).order_by(col(DirectoryPerson.id))
        return list(session.execute(statement).scalars())


def test_sql_names_split_exactly_as_the_records_do(people: Database) -> None:
    family = USERS.fields["familyName"].column
    given = USERS.fields["givenName"].column
    assert family is not None and given is not None
    with Session(people.engine) as session:
        rows = session.execute(sa.select(DirectoryPerson.name, family, given)).all()
    assert {row[0]: (row[1], row[2]) for row in rows} == {name: split_name(name) for name in NAMES}


def test_contains_matches_the_characters_literally(people: Database) -> None:
    assert matching(people, "givenName~'阳'") == ["欧阳"]
    assert matching(people, "familyName~'%'") == []
    assert matching(people, "givenName~'00%'") == ["100%纯"]
    assert matching(people, "givenName~'n_l'") == ["Ann_Lee"]
    assert matching(people, "givenName~'N_L'") == ["Ann_Lee"]
    assert matching(people, "familyName='O' AND givenName='''Brien'") == ["O'Brien"]


def test_typed_comparisons(people: Database) -> None:
    assert matching(people, "dateLastModified>'2026-09-09T00:00:00Z'") == ["O'Brien", "张三丰"]
    # The same instant written with an offset selects the same people.
    assert matching(people, "dateLastModified>'2026-09-09T08:00:00+08:00'") == ["O'Brien", "张三丰"]
    assert matching(people, "dateLastModified<='2026-09-01T08:00:00.000Z'") == ["王小明"]
    assert matching(people, "status='tobedeleted'") == ["司马光"]
    assert matching(people, "status!='active'") == ["司马光"]
    assert matching(people, "enabledUser='false'") == ["司马光"]
    assert matching(people, "identifier='G000000000000000002'") == ["欧阳"]
    assert matching(people, "familyName='欧阳' OR familyName='单'") == ["欧阳子轩", "单"]
    assert len(matching(people, "sourcedId!='p00' AND sourcedId!='p01'")) == len(NAMES) - 2


def test_sort_terms_end_with_the_sourced_id(people: Database) -> None:
    id_column = USERS.id_column
    with Session(people.engine) as session:

        def names(params: ListParams) -> list[str]:
            terms = order_by(params, USERS.fields, id_column)
            return list(session.execute(sa.select(DirectoryPerson.name).order_by(*terms)).scalars())

        assert names(ListParams(sort="dateLastModified", descending=True))[:2] == ["张三丰", "O'Brien"]
        assert names(ListParams(sort="sourcedId", descending=True)) == list(reversed(NAMES))
        assert names(ListParams(sort="status"))[-1] == "司马光"
        assert names(ListParams(sort="role")) == NAMES  # not sortable: the default order
        assert names(ListParams(sort="nickname")) == NAMES
