"""OneRoster 1.2 collections over the service's tables: who may see what, the SQL of each collection, and its JSON.

Every collection is a SQL statement that already holds the caller's visibility (their schools), to which the
request's filter, sort and page are added; a page is fetched as ids first (the offset walks an index, not whole
rows) and then the rows of those ids. The records are plain dicts in the shapes of ``schemas``.

Mapping decisions (documented once here):

* orgs: the city bureau (市教育局) is OneRoster's ``local`` org, a district (区) ``district``, a school ``school``.
  Districts and the city are visible to every caller; a school only to the callers who see its roster.
* users: ``familyName`` is the first character of the name, or the first two for a compound surname (欧阳, 司马, …)
  when the name has at least three characters; ``givenName`` is the rest. Names that do not put the family name
  first (some ethnic-minority and foreign names) get the same split: the full name is in the directory, and
  OneRoster has no field for it. Roles map teacher → teacher, school_admin → siteAdministrator,
  district_admin and city_admin → districtAdministrator, student → student.
* A student's ``identifier`` is the national student number; students, their enrollments and demographics are
  only returned to a caller holding ``roster.students.read``. Demographics carry ``sex`` only (no birth date).
* enrollments: a pupil's class membership (role student) and a teacher's assignment to a class (role teacher,
  ``primary`` for the head teacher 班主任); one that has ended (``endDate`` set) is ``tobedeleted``.
* A class's ``terms`` is its school year (an academicSession of type schoolYear).
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from enrollment.academics.models import (
    AcademicSession,
    ClassMembership,
    ClassTeacher,
    Course,
    SchoolClass,
    StudentEnrollment,
)
from enrollment.changes.models import ChangeRecord
from enrollment.deps import Caller, visible_school_ids
from enrollment.directory.models import DirectoryOrganisation, DirectoryPerson, DirectoryRole
from enrollment.oneroster.errors import ForbiddenSchool, InvalidFilterField, UnknownObject
from enrollment.oneroster.query import (
    FieldSpec,
    Filter,
    ListParams,
    Operator,
    Predicate,
    filter_condition,
    id_order,
    order_by,
)
from kit.errors import Forbidden

ROSTERING_PATH = "/ims/oneroster/rostering/v1p2"
STUDENTS_SCOPE = "roster.students.read"
ROSTER_SCOPE = "roster.read"

access_logger = logging.getLogger("enrollment.access")


# --------------------------------------------------------------------------------------------- access


@dataclass(frozen=True)
class RosterAccess:
    """What one caller may read: the schools (None = every school) and whether students' data."""

    caller: Caller
    school_ids: tuple[str, ...] | None
    students: bool

    def sees_school(self, school_id: str | None) -> bool:
        return self.school_ids is None or school_id in self.school_ids


def roster_access(session: Session, caller: Caller, *, scope: str) -> RosterAccess:
    """The caller's reach over rosters, once ``roster.read`` and ``scope`` are checked.

    A person holding no role that reads a school's roster is refused; an app reaches the schools that installed it.
    """
    caller.require_scope(ROSTER_SCOPE)
    caller.require_scope(scope)
    schools = visible_school_ids(session, caller)
    if schools == [] and not caller.is_app:
        raise Forbidden("您在任何学校都没有可查看名单的角色；You hold no role that can read a school's roster.")
    return RosterAccess(
        caller=caller,
        school_ids=None if schools is None else tuple(schools),
        students=caller.principal.has_scope(STUDENTS_SCOPE),
    )


def note_access(access: RosterAccess, *, collection: str, records: int) -> None:
    """Record a read of minors' personal information (who, through which client or app, what, how many)."""
    caller = access.caller
    access_logger.info(
        "students' personal information read",
        extra={
            "subject": caller.person_id,
            "client_id": caller.principal.client_id,
            "app_id": caller.principal.claims.app_id,
            "collection": collection,
            "records": records,
            "request_id": caller.request_id,
            "source_ip": caller.source_ip,
        },
    )


def _in_schools(column: Any, access: RosterAccess) -> ColumnElement[bool]:
    if access.school_ids is None:
        return sa.true()
    return col(column).in_(access.school_ids)


# ---------------------------------------------------------------------------------------- rendering


def timestamp(value: datetime) -> str:
    """OneRoster's dateLastModified: UTC with milliseconds and a Z (stored naive values are UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def _date(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


_PATHS = {
    "org": "orgs",
    "academicSession": "academicSessions",
    "course": "courses",
    "class": "classes",
    "user": "users",
}


@dataclass
class Render:
    """What rendering a page needs: the session for batched lookups, the caller's reach, the public URL."""

    session: Session
    access: RosterAccess
    base_url: str

    def ref(self, kind: str, sourced_id: str) -> dict[str, str]:
        return {
            "href": f"{self.base_url}{ROSTERING_PATH}/{_PATHS[kind]}/{sourced_id}",
            "sourcedId": sourced_id,
            "type": kind,
        }


def _base(sourced_id: str, active: bool, modified: datetime) -> dict[str, Any]:
    return {
        "sourcedId": sourced_id,
        "status": "active" if active else "tobedeleted",
        "dateLastModified": timestamp(modified),
    }


# ---------------------------------------------------------------------------------------- collections


@dataclass(frozen=True)
class Collection:
    """One OneRoster collection: its SQL, its filterable fields and how a page of rows becomes records."""

    key: str  # the JSON member of a list: "users"
    singular: str  # the JSON member of one object: "user"
    id_column: Any  # the sourcedId column (a model attribute or a derived table's column)
    fields: Mapping[str, FieldSpec]
    record_fields: frozenset[str]
    statement: Callable[[RosterAccess], Select[Any]]
    render: Callable[[Render, Sequence[Any]], list[dict[str, Any]]]
    students_data: Callable[[RosterAccess], bool] = field(default=lambda access: False)


@dataclass
class Page:
    records: list[dict[str, Any]]
    total: int


def _rows(model: Any) -> Select[Any]:
    """A model's table as plain rows: a page is read-only, and ORM objects would cost more than the JSON."""
    return sa.select(*model.__table__.columns)


def _row_id(row: Any) -> str:
    return str(row.id)


class ListingCache:
    """Totals and page boundaries of recent listings, used only while no roster change has been recorded since.

    A sync client walks a collection page after page (offset 0, 100, 200, …), and each deep page would make the
    database skip ``offset`` rows again: seconds at the millionth row. So for a listing (path, caller's reach,
    filter, sort) this remembers the number of matching records and the sourcedId that ends each page served; a
    page in sourcedId order then starts right after the nearest boundary at or before its offset (a keyset seek)
    and holds exactly the rows OFFSET would give. Both are stamped with the newest change-feed sequence number:
    every write to a roster entity records a change in its transaction, so after any write they are not used.
    Only which records a page holds is remembered; the records themselves are always read and rendered afresh.
    """

    def __init__(self, *, listings: int = 64, boundaries: int = 20_000) -> None:
        # At most listings × boundaries remembered ids (~1.3 million, ~150 MB, if 64 clients each walked 2 million).
        self.max_listings = listings
        self.max_boundaries = boundaries
        self._listings: OrderedDict[Hashable, _Listing] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: int) -> _Listing:
        with self._lock:
            listing = self._listings.get(key)
            if listing is None or listing.version != version:
                listing = _Listing(version)
                self._listings[key] = listing
            self._listings.move_to_end(key)
            while len(self._listings) > self.max_listings:
                self._listings.popitem(last=False)
            return listing

    def note_boundary(self, listing: _Listing, offset: int, sourced_id: str) -> None:
        with self._lock:
            if offset in listing.boundaries or len(listing.boundaries) >= self.max_boundaries:
                return
            listing.boundaries[offset] = sourced_id
            bisect.insort(listing.offsets, offset)


@dataclass
class _Listing:
    version: int
    total: int | None = None
    boundaries: dict[int, str] = field(default_factory=dict)  # offset → sourcedId of the record just before it
    offsets: list[int] = field(default_factory=list)  # the boundaries' offsets, sorted

    def nearest(self, offset: int) -> tuple[int, str] | None:
        """The boundary at or before ``offset`` closest to it."""
        index = bisect.bisect_right(self.offsets, offset) - 1
        if index < 0:
            return None
        at = self.offsets[index]
        return at, self.boundaries[at]


def change_version(session: Session) -> int:
    """The newest change-feed sequence number: it moves with every write to a roster entity."""
    return int(session.execute(sa.select(sa.func.max(ChangeRecord.seq))).scalar() or 0)


def list_collection(
    session: Session,
    collection: Collection,
    access: RosterAccess,
    params: ListParams,
    *,
    base_url: str,
    where: ColumnElement[bool] | None = None,
    cache: ListingCache | None = None,
    cache_key: Hashable = None,
) -> Page:
    """One page of a collection as the caller may see it, with the number of all matching records.

    With a ``cache`` and a ``cache_key`` naming the listing (everything that decides which records match and their
    order), the total and the pages' boundaries of an unchanged listing are reused (see :class:`ListingCache`).
    """
    statement = collection.statement(access)
    if where is not None:
        statement = statement.where(where)
    if params.filter is not None:
        statement = statement.where(filter_condition(params.filter, collection.fields))
    ids_statement = statement.with_only_columns(collection.id_column, maintain_column_froms=True)
    listing = cache.get(cache_key, change_version(session)) if cache is not None and cache_key is not None else None
    total = listing.total if listing is not None else None
    if total is None:
        count = sa.select(sa.func.count()).select_from(ids_statement.order_by(None).subquery())
        total = int(session.execute(count).scalar_one())
        if listing is not None:
            listing.total = total
    direction = id_order(params, collection.fields, collection.id_column)
    page_statement = ids_statement.order_by(*order_by(params, collection.fields, collection.id_column))
    skip = params.offset
    boundary = listing.nearest(params.offset) if listing is not None and direction is not None else None
    if boundary is not None:
        at, after_id = boundary
        seek = collection.id_column > after_id if direction == "asc" else collection.id_column < after_id
        page_statement, skip = page_statement.where(seek), params.offset - at
    page_ids = list(session.execute(page_statement.limit(params.limit).offset(skip)).scalars())
    if listing is not None and cache is not None and direction is not None and page_ids:
        cache.note_boundary(listing, params.offset + len(page_ids), page_ids[-1])
    if not page_ids:
        return Page([], total)
    result = session.execute(statement.where(collection.id_column.in_(page_ids)))
    rows = result.all()
    by_id = {_row_id(row): row for row in rows}
    ordered = [by_id[sourced_id] for sourced_id in page_ids if sourced_id in by_id]
    return Page(collection.render(Render(session, access, base_url), ordered), total)


def get_object(
    session: Session, collection: Collection, access: RosterAccess, sourced_id: str, *, base_url: str
) -> dict[str, Any]:
    """One object of a collection, if the caller may see it; ``UnknownObject`` (404) otherwise."""
    statement = collection.statement(access).where(collection.id_column == sourced_id)
    result = session.execute(statement.limit(1))
    row = result.first()
    if row is None:
        raise UnknownObject(collection.key, sourced_id)
    return collection.render(Render(session, access, base_url), [row])[0]


# -------------------------------------------------------------------------------------------- orgs

_ORG_TYPES = {"city": "local", "district": "district", "school": "school"}


def _org_visible(access: RosterAccess) -> ColumnElement[bool]:
    if access.school_ids is None:
        return sa.true()
    return sa.or_(col(DirectoryOrganisation.kind) != "school", col(DirectoryOrganisation.id).in_(access.school_ids))


def _orgs_statement(access: RosterAccess) -> Select[Any]:
    return _rows(DirectoryOrganisation).where(_org_visible(access))


def _schools_statement(access: RosterAccess) -> Select[Any]:
    return _rows(DirectoryOrganisation).where(
        col(DirectoryOrganisation.kind) == "school", _in_schools(DirectoryOrganisation.id, access)
    )


def _render_orgs(render: Render, organisations: Sequence[Any]) -> list[dict[str, Any]]:
    ids = [organisation.id for organisation in organisations]
    children: dict[str, list[str]] = {}
    statement = sa.select(DirectoryOrganisation.id, DirectoryOrganisation.parent_id).where(
        col(DirectoryOrganisation.parent_id).in_(ids), _org_visible(render.access)
    )
    for child_id, parent_id in render.session.execute(statement.order_by(DirectoryOrganisation.id)):
        children.setdefault(parent_id, []).append(child_id)
    records = []
    for organisation in organisations:
        record = _base(organisation.id, organisation.active, organisation.updated_at)
        record.update(name=organisation.name, type=_ORG_TYPES.get(organisation.kind, organisation.kind))
        if organisation.school_code:
            record["identifier"] = organisation.school_code
        if organisation.parent_id:
            record["parent"] = render.ref("org", organisation.parent_id)
        if organisation.id in children:
            record["children"] = [render.ref("org", child) for child in children[organisation.id]]
        records.append(record)
    return records


_ORG_FIELDS: dict[str, FieldSpec] = {
    "sourcedId": FieldSpec(col(DirectoryOrganisation.id)),
    "status": FieldSpec(col(DirectoryOrganisation.active) == sa.true(), kind="status"),
    "dateLastModified": FieldSpec(col(DirectoryOrganisation.updated_at), kind="datetime"),
    "name": FieldSpec(col(DirectoryOrganisation.name)),
    "type": FieldSpec(
        col(DirectoryOrganisation.kind), kind="enum", values={value: key for key, value in _ORG_TYPES.items()}
    ),
    "identifier": FieldSpec(col(DirectoryOrganisation.school_code)),
    "parent.sourcedId": FieldSpec(col(DirectoryOrganisation.parent_id)),
}
_ORG_RECORD = frozenset(
    {"sourcedId", "status", "dateLastModified", "metadata", "name", "type", "identifier", "parent", "children"}
)

ORGS = Collection("orgs", "org", col(DirectoryOrganisation.id), _ORG_FIELDS, _ORG_RECORD, _orgs_statement, _render_orgs)
SCHOOLS = Collection(
    "orgs", "org", col(DirectoryOrganisation.id), _ORG_FIELDS, _ORG_RECORD, _schools_statement, _render_orgs
)


# -------------------------------------------------------------------------------- academic sessions

_SESSION_TYPES = {"school_year": "schoolYear", "term": "term"}


def _session_visible(access: RosterAccess) -> ColumnElement[bool]:
    if access.school_ids is None:
        return sa.true()
    # Sessions of the city or a district are every school's; a school's own only its roster's readers'.
    school_ids = sa.select(DirectoryOrganisation.id).where(
        col(DirectoryOrganisation.kind) == "school", col(DirectoryOrganisation.id) == col(AcademicSession.org_id)
    )
    return sa.or_(col(AcademicSession.org_id).in_(access.school_ids), ~school_ids.exists())


def _sessions_statement(access: RosterAccess) -> Select[Any]:
    return _rows(AcademicSession).where(_session_visible(access))


def _terms_statement(access: RosterAccess) -> Select[Any]:
    return _sessions_statement(access).where(col(AcademicSession.kind) == "term")


def _render_sessions(render: Render, sessions: Sequence[Any]) -> list[dict[str, Any]]:
    ids = [item.id for item in sessions]
    children: dict[str, list[str]] = {}
    statement = (
        sa.select(AcademicSession.id, AcademicSession.parent_id)
        .where(col(AcademicSession.parent_id).in_(ids))
        .order_by(AcademicSession.start_date, AcademicSession.id)
    )
    for child_id, parent_id in render.session.execute(statement):
        children.setdefault(parent_id, []).append(child_id)
    records = []
    for item in sessions:
        record = _base(item.id, item.deleted_at is None, item.updated_at)
        record.update(
            title=item.title,
            type=_SESSION_TYPES.get(item.kind, item.kind),
            startDate=_date(item.start_date),
            endDate=_date(item.end_date),
            schoolYear=str(item.school_year),
            org=render.ref("org", item.org_id),
        )
        if item.parent_id:
            record["parent"] = render.ref("academicSession", item.parent_id)
        if item.id in children:
            record["children"] = [render.ref("academicSession", child) for child in children[item.id]]
        records.append(record)
    return records


_SESSION_FIELDS: dict[str, FieldSpec] = {
    "sourcedId": FieldSpec(col(AcademicSession.id)),
    "status": FieldSpec(col(AcademicSession.deleted_at).is_(None), kind="status"),
    "dateLastModified": FieldSpec(col(AcademicSession.updated_at), kind="datetime"),
    "title": FieldSpec(col(AcademicSession.title)),
    "type": FieldSpec(
        col(AcademicSession.kind), kind="enum", values={value: key for key, value in _SESSION_TYPES.items()}
    ),
    "startDate": FieldSpec(col(AcademicSession.start_date), kind="date"),
    "endDate": FieldSpec(col(AcademicSession.end_date), kind="date"),
    "schoolYear": FieldSpec(col(AcademicSession.school_year), kind="integer"),
    "parent.sourcedId": FieldSpec(col(AcademicSession.parent_id)),
    "org.sourcedId": FieldSpec(col(AcademicSession.org_id)),
}
_SESSION_RECORD = frozenset(
    {
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "title",
        "type",
        "startDate",
        "endDate",
        "parent",
        "children",
        "schoolYear",
        "org",
    }
)

ACADEMIC_SESSIONS = Collection(
    "academicSessions",
    "academicSession",
    col(AcademicSession.id),
    _SESSION_FIELDS,
    _SESSION_RECORD,
    _sessions_statement,
    _render_sessions,
)
TERMS = Collection(
    "academicSessions",
    "academicSession",
    col(AcademicSession.id),
    _SESSION_FIELDS,
    _SESSION_RECORD,
    _terms_statement,
    _render_sessions,
)


# ------------------------------------------------------------------------------------------ courses


def _courses_statement(access: RosterAccess) -> Select[Any]:
    return _rows(Course).where(_in_schools(Course.school_id, access))


def _render_courses(render: Render, courses: Sequence[Any]) -> list[dict[str, Any]]:
    records = []
    for course in courses:
        record = _base(course.id, course.deleted_at is None, course.updated_at)
        record.update(
            title=course.title,
            schoolYear=render.ref("academicSession", course.school_year_id),
            courseCode=course.course_code,
            grades=[course.grade],
            org=render.ref("org", course.school_id),
        )
        if course.subject:
            record["subjects"] = [course.subject]
        records.append(record)
    return records


_COURSE_FIELDS: dict[str, FieldSpec] = {
    "sourcedId": FieldSpec(col(Course.id)),
    "status": FieldSpec(col(Course.deleted_at).is_(None), kind="status"),
    "dateLastModified": FieldSpec(col(Course.updated_at), kind="datetime"),
    "title": FieldSpec(col(Course.title)),
    "courseCode": FieldSpec(col(Course.course_code)),
    "grades": FieldSpec(col(Course.grade)),
    "subjects": FieldSpec(col(Course.subject)),
    "org.sourcedId": FieldSpec(col(Course.school_id)),
    "schoolYear.sourcedId": FieldSpec(col(Course.school_year_id)),
}
_COURSE_RECORD = frozenset(
    {
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "title",
        "schoolYear",
        "courseCode",
        "grades",
        "subjects",
        "org",
    }
)

COURSES = Collection(
    "courses", "course", col(Course.id), _COURSE_FIELDS, _COURSE_RECORD, _courses_statement, _render_courses
)


# ------------------------------------------------------------------------------------------ classes


def _classes_statement(access: RosterAccess) -> Select[Any]:
    return _rows(SchoolClass).where(_in_schools(SchoolClass.school_id, access))


def class_code(school_class: SchoolClass) -> str:
    """<grade>-<number>: 01-3 for 一年级(3)班."""
    return f"{school_class.grade}-{school_class.number}"


def _render_classes(render: Render, classes: Sequence[Any]) -> list[dict[str, Any]]:
    course_ids = sorted({item.course_id for item in classes})
    subjects = dict(
        render.session.execute(sa.select(Course.id, Course.subject).where(col(Course.id).in_(course_ids))).all()
    )
    records = []
    for item in classes:
        record = _base(item.id, item.deleted_at is None, item.updated_at)
        record.update(
            title=item.name,
            classCode=class_code(item),
            classType=item.class_type,
            grades=[item.grade],
            course=render.ref("course", item.course_id),
            school=render.ref("org", item.school_id),
            terms=[render.ref("academicSession", item.school_year_id)],
        )
        if subjects.get(item.course_id):
            record["subjects"] = [subjects[item.course_id]]
        records.append(record)
    return records


_CLASS_FIELDS: dict[str, FieldSpec] = {
    "sourcedId": FieldSpec(col(SchoolClass.id)),
    "status": FieldSpec(col(SchoolClass.deleted_at).is_(None), kind="status"),
    "dateLastModified": FieldSpec(col(SchoolClass.updated_at), kind="datetime"),
    "title": FieldSpec(col(SchoolClass.name)),
    "classType": FieldSpec(col(SchoolClass.class_type)),
    "grades": FieldSpec(col(SchoolClass.grade)),
    "course.sourcedId": FieldSpec(col(SchoolClass.course_id)),
    "school.sourcedId": FieldSpec(col(SchoolClass.school_id)),
    "terms.sourcedId": FieldSpec(col(SchoolClass.school_year_id)),
}
_CLASS_RECORD = frozenset(
    {
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "title",
        "classCode",
        "classType",
        "grades",
        "subjects",
        "course",
        "school",
        "terms",
    }
)

CLASSES = Collection(
    "classes", "class", col(SchoolClass.id), _CLASS_FIELDS, _CLASS_RECORD, _classes_statement, _render_classes
)


# -------------------------------------------------------------------------------------------- users

#: Two-character family names common enough to split correctly; any other name's family name is one character.
COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "上官",
    "诸葛",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "长孙",
    "宇文",
    "司徒",
    "夏侯",
    "令狐",
    "轩辕",
    "端木",
    "独孤",
    "南宫",
    "西门",
    "呼延",
    "申屠",
    "太史",
    "司空",
    "钟离",
    "澹台",
    "赫连",
    "拓跋",
    "百里",
)


def split_name(name: str) -> tuple[str, str]:
    """(familyName, givenName) of a Chinese name: 王小明 → (王, 小明), 欧阳修远 → (欧阳, 修远)."""
    if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES:
        return name[:2], name[2:]
    return name[:1], name[1:]


_compound = sa.and_(
    sa.func.length(col(DirectoryPerson.name)) >= 3,
    sa.func.substr(col(DirectoryPerson.name), 1, 2).in_(COMPOUND_SURNAMES),
)
_FAMILY_NAME = sa.case(
    (_compound, sa.func.substr(col(DirectoryPerson.name), 1, 2)), else_=sa.func.substr(col(DirectoryPerson.name), 1, 1)
)
_GIVEN_NAME = sa.case(
    (_compound, sa.func.substr(col(DirectoryPerson.name), 3)), else_=sa.func.substr(col(DirectoryPerson.name), 2)
)


def _family_name_predicate(operator: Operator, value: str) -> ColumnElement[bool]:
    """familyName compared in SQL; equality first narrows by the name's prefix, cheaper than the split itself."""
    spec = FieldSpec(_FAMILY_NAME)
    condition = filter_condition(Filter((Predicate("familyName", operator, value),)), {"familyName": spec})
    if operator == "=":
        return sa.and_(col(DirectoryPerson.name).startswith(value, autoescape=True), condition)
    return condition


#: Directory roles → OneRoster roles; other roles (auditor, vendor developer) are not rostering roles.
ROLE_NAMES = {
    "teacher": "teacher",
    "school_admin": "siteAdministrator",
    "district_admin": "districtAdministrator",
    "city_admin": "districtAdministrator",
    "student": "student",
    "parent": "parent",
}


def _role_at_schools(access: RosterAccess, *roles: str) -> ColumnElement[bool]:
    """The person holds (one of) ``roles`` (any roster role when empty) at a school the caller sees."""
    statement = sa.select(DirectoryRole.id).where(
        col(DirectoryRole.person_id) == col(DirectoryPerson.id), col(DirectoryRole.active).is_(True)
    )
    if roles:
        statement = statement.where(col(DirectoryRole.role).in_(roles))
    if access.school_ids is not None:
        statement = statement.where(col(DirectoryRole.org_id).in_(access.school_ids))
    return statement.exists()


def _students_visible(access: RosterAccess) -> ColumnElement[bool]:
    return sa.and_(col(DirectoryPerson.kind) == "student", _in_schools(DirectoryPerson.org_id, access))


def _staff_visible(access: RosterAccess) -> ColumnElement[bool]:
    return sa.and_(col(DirectoryPerson.kind) == "staff", _role_at_schools(access, *ROLE_NAMES))


def _teachers_visible(access: RosterAccess) -> ColumnElement[bool]:
    return sa.and_(col(DirectoryPerson.kind) == "staff", _role_at_schools(access, "teacher"))


def _users_statement(access: RosterAccess) -> Select[Any]:
    if access.students:
        return _rows(DirectoryPerson).where(sa.or_(_students_visible(access), _staff_visible(access)))
    return _rows(DirectoryPerson).where(_staff_visible(access))


def _students_statement(access: RosterAccess) -> Select[Any]:
    return _rows(DirectoryPerson).where(_students_visible(access))


def _teachers_statement(access: RosterAccess) -> Select[Any]:
    return _rows(DirectoryPerson).where(_teachers_visible(access))


def _role_predicate(operator: Operator, value: str) -> ColumnElement[bool]:
    if operator not in ("=", "!="):
        raise InvalidFilterField("role 只能用 = 或 != 比较；role compares with = or != only.")
    directory_roles = [name for name, role in ROLE_NAMES.items() if role == value]
    if value == "student":
        condition: ColumnElement[bool] = col(DirectoryPerson.kind) == "student"
    elif directory_roles:
        condition = sa.and_(
            col(DirectoryPerson.kind) != "student",
            sa.select(DirectoryRole.id)
            .where(
                col(DirectoryRole.person_id) == col(DirectoryPerson.id),
                col(DirectoryRole.active).is_(True),
                col(DirectoryRole.role).in_(directory_roles),
            )
            .exists(),
        )
    else:
        condition = sa.false()
    return condition if operator == "=" else sa.not_(condition)


def _render_users(render: Render, people: Sequence[Any]) -> list[dict[str, Any]]:
    access = render.access
    staff_ids = [person.id for person in people if person.kind != "student"]
    student_ids = [person.id for person in people if person.kind == "student"]
    roles: dict[str, list[tuple[str, str]]] = {}
    if staff_ids:
        statement = sa.select(DirectoryRole.person_id, DirectoryRole.role, DirectoryRole.org_id).where(
            col(DirectoryRole.person_id).in_(staff_ids),
            col(DirectoryRole.active).is_(True),
            col(DirectoryRole.role).in_(list(ROLE_NAMES)),
        )
        if access.school_ids is not None:
            statement = statement.where(col(DirectoryRole.org_id).in_(access.school_ids))
        for person_id, role, org_id in render.session.execute(
            statement.order_by(DirectoryRole.org_id, DirectoryRole.role)
        ):
            roles.setdefault(person_id, []).append((ROLE_NAMES[role], org_id))
    grades: dict[str, list[str]] = {}
    if student_ids:
        statement = sa.select(StudentEnrollment.student_id, StudentEnrollment.grade).where(
            col(StudentEnrollment.student_id).in_(student_ids), col(StudentEnrollment.status) == "active"
        )
        for student_id, grade in render.session.execute(statement):
            if grade:  # unknown until the pupil is admitted to a grade or joins a class
                grades.setdefault(student_id, []).append(grade)
    records = []
    for person in people:
        family_name, given_name = split_name(person.name)
        record = _base(person.id, person.active, person.updated_at)
        record.update(enabledUser=person.active, givenName=given_name, familyName=family_name)
        if person.kind == "student":
            held = [("student", person.org_id)] if person.org_id else []
        else:
            held = roles.get(person.id, [])
            # The role at the person's own organisation is the primary one.
            held.sort(key=lambda item: item[1] != person.org_id)
        record["roles"] = [
            {"roleType": "primary" if index == 0 else "secondary", "role": role, "org": render.ref("org", org_id)}
            for index, (role, org_id) in enumerate(held)
        ]
        if person.org_id and (access.sees_school(person.org_id) or person.org_id in {org for _, org in held}):
            record["primaryOrg"] = render.ref("org", person.org_id)
        if person.kind == "student":
            if person.student_number:
                record["identifier"] = person.student_number
            if grades.get(person.id):
                record["grades"] = sorted(set(grades[person.id]))
        records.append(record)
    return records


_USER_FIELDS: dict[str, FieldSpec] = {
    "sourcedId": FieldSpec(col(DirectoryPerson.id)),
    "status": FieldSpec(col(DirectoryPerson.active).is_(True), kind="status"),
    "dateLastModified": FieldSpec(col(DirectoryPerson.updated_at), kind="datetime"),
    "enabledUser": FieldSpec(col(DirectoryPerson.active), kind="boolean"),
    "givenName": FieldSpec(_GIVEN_NAME),
    "familyName": FieldSpec(_FAMILY_NAME, predicate=_family_name_predicate),
    "identifier": FieldSpec(col(DirectoryPerson.student_number)),
    "primaryOrg.sourcedId": FieldSpec(col(DirectoryPerson.org_id)),
    "role": FieldSpec(None, sortable=False, predicate=_role_predicate),
}
_USER_RECORD = frozenset(
    {
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "enabledUser",
        "givenName",
        "familyName",
        "roles",
        "primaryOrg",
        "identifier",
        "grades",
    }
)


def _students_data(access: RosterAccess) -> bool:
    return access.students


USERS = Collection(
    "users",
    "user",
    col(DirectoryPerson.id),
    _USER_FIELDS,
    _USER_RECORD,
    _users_statement,
    _render_users,
    students_data=_students_data,
)
STUDENTS = Collection(
    "users",
    "user",
    col(DirectoryPerson.id),
    _USER_FIELDS,
    _USER_RECORD,
    _students_statement,
    _render_users,
    students_data=_students_data,
)
TEACHERS = Collection(
    "users", "user", col(DirectoryPerson.id), _USER_FIELDS, _USER_RECORD, _teachers_statement, _render_users
)


# ------------------------------------------------------------------------------------- demographics


def _render_demographics(render: Render, people: Sequence[Any]) -> list[dict[str, Any]]:
    records = []
    for person in people:
        record = _base(person.id, person.active, person.updated_at)
        if person.sex in ("male", "female"):
            record["sex"] = person.sex
        records.append(record)
    return records


_DEMOGRAPHICS_FIELDS: dict[str, FieldSpec] = {
    "sourcedId": FieldSpec(col(DirectoryPerson.id)),
    "status": FieldSpec(col(DirectoryPerson.active).is_(True), kind="status"),
    "dateLastModified": FieldSpec(col(DirectoryPerson.updated_at), kind="datetime"),
    "sex": FieldSpec(col(DirectoryPerson.sex)),
}

DEMOGRAPHICS = Collection(
    "demographics",
    "demographics",
    col(DirectoryPerson.id),
    _DEMOGRAPHICS_FIELDS,
    frozenset({"sourcedId", "status", "dateLastModified", "metadata", "sex"}),
    _students_statement,
    _render_demographics,
    students_data=_students_data,
)


# -------------------------------------------------------------------------------------- enrollments


def _enrollment_parts(access: RosterAccess) -> list[Select[Any]]:
    teacher_columns: list[Any] = [
        col(ClassTeacher.id).label("id"),
        sa.literal("teacher").label("role"),
        col(ClassTeacher.teacher_id).label("user_id"),
        col(ClassTeacher.class_id).label("class_id"),
        col(ClassTeacher.school_id).label("school_id"),
        sa.cast(col(ClassTeacher.role) == "head", sa.Boolean).label("is_primary"),
        col(ClassTeacher.start_date).label("begin_date"),
        col(ClassTeacher.end_date).label("end_date"),
        col(ClassTeacher.updated_at).label("updated_at"),
    ]
    teachers = sa.select(*teacher_columns).where(_in_schools(ClassTeacher.school_id, access))
    if not access.students:
        return [teachers]
    student_columns: list[Any] = [
        col(ClassMembership.id).label("id"),
        sa.literal("student").label("role"),
        col(ClassMembership.student_id).label("user_id"),
        col(ClassMembership.class_id).label("class_id"),
        col(ClassMembership.school_id).label("school_id"),
        sa.literal(False, sa.Boolean).label("is_primary"),
        col(ClassMembership.start_date).label("begin_date"),
        col(ClassMembership.end_date).label("end_date"),
        col(ClassMembership.updated_at).label("updated_at"),
    ]
    students = sa.select(*student_columns).where(_in_schools(ClassMembership.school_id, access))
    return [students, teachers]


def enrollments_table(access: RosterAccess, *, school_id: str | None = None, class_id: str | None = None) -> Any:
    """Student and teacher enrollments as one derived table (the conditions pushed into both halves)."""
    parts = _enrollment_parts(access)
    if school_id is not None:
        parts = [part.where(part.selected_columns.school_id == school_id) for part in parts]
    if class_id is not None:
        parts = [part.where(part.selected_columns.class_id == class_id) for part in parts]
    combined = parts[0] if len(parts) == 1 else sa.union_all(*parts)
    return combined.subquery("enrollment")


def _render_enrollments(render: Render, rows: Sequence[Any]) -> list[dict[str, Any]]:
    records = []
    for row in rows:
        record = _base(row.id, row.end_date is None, row.updated_at)
        record.update(
            user=render.ref("user", row.user_id),
            **{"class": render.ref("class", row.class_id)},
            school=render.ref("org", row.school_id),
            role=row.role,
            primary=bool(row.is_primary),
            beginDate=_date(row.begin_date),
        )
        if row.end_date is not None:
            record["endDate"] = _date(row.end_date)
        records.append(record)
    return records


def _enrollment_fields(table: Any) -> dict[str, FieldSpec]:
    return {
        "sourcedId": FieldSpec(table.c.id),
        "status": FieldSpec(table.c.end_date.is_(None), kind="status"),
        "dateLastModified": FieldSpec(table.c.updated_at, kind="datetime"),
        "role": FieldSpec(table.c.role),
        "primary": FieldSpec(table.c.is_primary, kind="boolean"),
        "beginDate": FieldSpec(table.c.begin_date, kind="date"),
        "endDate": FieldSpec(table.c.end_date, kind="date"),
        "user.sourcedId": FieldSpec(table.c.user_id),
        "class.sourcedId": FieldSpec(table.c.class_id),
        "school.sourcedId": FieldSpec(table.c.school_id),
    }


_ENROLLMENT_RECORD = frozenset(
    {
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "user",
        "class",
        "school",
        "role",
        "primary",
        "beginDate",
        "endDate",
    }
)


def enrollments(access: RosterAccess, *, school_id: str | None = None, class_id: str | None = None) -> Collection:
    """The enrollments collection over the caller's reach, optionally of one school or one class."""
    table = enrollments_table(access, school_id=school_id, class_id=class_id)
    return Collection(
        "enrollments",
        "enrollment",
        table.c.id,
        _enrollment_fields(table),
        _ENROLLMENT_RECORD,
        lambda _access: sa.select(table),
        _render_enrollments,
        students_data=_students_data,
    )


# ------------------------------------------------------------------------------- relations and scope


def require_school(session: Session, access: RosterAccess, school_id: str) -> None:
    """The school exists (404 otherwise) and its rosters are the caller's (403 otherwise)."""
    organisation = session.get(DirectoryOrganisation, school_id)
    if organisation is None or organisation.kind != "school":
        raise UnknownObject("schools", school_id)
    if not access.sees_school(school_id):
        raise ForbiddenSchool(school_id)


def require_visible(session: Session, collection: Collection, access: RosterAccess, sourced_id: str) -> None:
    """The object exists within the caller's reach; 404 otherwise (never revealing that it exists elsewhere)."""
    statement = collection.statement(access).with_only_columns(collection.id_column, maintain_column_froms=True)
    if session.execute(statement.where(collection.id_column == sourced_id).limit(1)).first() is None:
        raise UnknownObject(collection.key, sourced_id)


def current_students_of(class_id: str) -> ColumnElement[bool]:
    return col(DirectoryPerson.id).in_(
        sa.select(ClassMembership.student_id).where(
            col(ClassMembership.class_id) == class_id, col(ClassMembership.end_date).is_(None)
        )
    )


def current_teachers_of(class_id: str) -> ColumnElement[bool]:
    return col(DirectoryPerson.id).in_(
        sa.select(ClassTeacher.teacher_id).where(
            col(ClassTeacher.class_id) == class_id, col(ClassTeacher.end_date).is_(None)
        )
    )


def classes_of_student(student_id: str) -> ColumnElement[bool]:
    return col(SchoolClass.id).in_(
        sa.select(ClassMembership.class_id).where(
            col(ClassMembership.student_id) == student_id, col(ClassMembership.end_date).is_(None)
        )
    )


def classes_of_teacher(teacher_id: str) -> ColumnElement[bool]:
    return col(SchoolClass.id).in_(
        sa.select(ClassTeacher.class_id).where(
            col(ClassTeacher.teacher_id) == teacher_id, col(ClassTeacher.end_date).is_(None)
        )
    )


def classes_of_session(session: Session, session_id: str) -> ColumnElement[bool]:
    """Classes running in a school year, or in the school year a term belongs to."""
    academic_session = session.get(AcademicSession, session_id)
    school_year_id = session_id
    if academic_session is not None and academic_session.kind == "term" and academic_session.parent_id:
        school_year_id = academic_session.parent_id
    return col(SchoolClass.school_year_id) == school_year_id


def terms_of_school(session: Session, school_id: str) -> ColumnElement[bool]:
    """Terms defined by the school or by an organisation above it (its district, the city)."""
    organisation = session.get(DirectoryOrganisation, school_id)
    owners = [segment for segment in (organisation.path if organisation else "").split("/") if segment]
    return col(AcademicSession.org_id).in_(owners or [school_id])


def require_class_in_school(session: Session, access: RosterAccess, school_id: str, class_id: str) -> None:
    """The class is one of the school's (404 otherwise); the school is checked first."""
    require_school(session, access, school_id)
    school_class = session.get(SchoolClass, class_id)
    if school_class is None or school_class.school_id != school_id:
        raise UnknownObject("classes", class_id)


def classes_of_course(course_id: str) -> ColumnElement[bool]:
    return col(SchoolClass.course_id) == course_id


def classes_of_school(school_id: str) -> ColumnElement[bool]:
    return col(SchoolClass.school_id) == school_id


def courses_of_school(school_id: str) -> ColumnElement[bool]:
    return col(Course.school_id) == school_id


def students_of_school(school_id: str) -> ColumnElement[bool]:
    return col(DirectoryPerson.org_id) == school_id
