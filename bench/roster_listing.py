"""OneRoster roster listing benchmark: pages of 100 students out of 1,000,000, through the real app over HTTP.

Builds (reproducibly, from --seed) a city of --schools schools (default 1,000, in districts of 100) with
--students students (default 1,000,000) spread evenly, six grades of four homerooms per school, a head teacher per
class, every pupil's enrolment and class membership; bulk-inserted (executemany of plain tuples on SQLite, COPY on
PostgreSQL) into a database migrated as the service migrates it. Then serves the enrollment app with uvicorn
(kit.testing.live_server) and measures ``GET /ims/oneroster/rostering/v1p2/students?limit=100&offset=…`` with httpx,
one request at a time, for callers of four reaches:

  school    a school's administrator (one school: ~1,000 students)
  app50     an app installed at 50 schools (~50,000 students)
  district  a district administrator (100 schools: ~100,000 students)
  city      the city administrator (all students; deep offsets up to 1,000,000)

plus a filter-and-sort query (``filter=familyName='王'&sort=dateLastModified&orderBy=desc``) for the district, and
the same walk by ``Link: rel="next"`` from the first page (a sync client's pattern). Side by side, the baseline: the
same page fetched by the simplest direct SQL (``SELECT … WHERE kind='student' AND org_id IN (…) ORDER BY id LIMIT
100 OFFSET …`` on the driver's own connection, no count, no JSON), so the ratio shows what the service adds.
By default the callers are measured twice, each time against a fresh app: with the models' indexes, then with the
indexes proposed for them (PROPOSED_INDEXES below).

    .venv/bin/python bench/roster_listing.py                           # SQLite, 1,000,000 students
    .venv/bin/python bench/roster_listing.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/roster_listing.py --students 100000 --schools 100 --requests 100   # quick look
    .venv/bin/python bench/roster_listing.py --keep /tmp/roster.db     # build once, reuse on later runs (SQLite)
    .venv/bin/python bench/roster_listing.py --indexes proposed        # only the pass with the proposed indexes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_average

from enrollment.config import EnrollmentSettings
from enrollment.main import create_app, migrate
from kit.db import normalise_url
from kit.natsserver import NatsServer
from kit.testing import TestIssuer, live_server, scratch_postgres_database

ROSTERING = "/ims/oneroster/rostering/v1p2"
SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘蔡蒋余于杜叶程苏魏吕丁"
COMPOUND = ["欧阳", "司马", "诸葛", "上官"]
GIVEN = ["雨桐", "子轩", "欣怡", "浩然", "思涵", "宇航", "诗琪", "梓睿", "佳怡", "俊熙", "若曦", "博文", "语嫣", "一鸣",
         "明", "华", "静", "磊"]  # fmt: skip
GRADES = ["01", "02", "03", "04", "05", "06"]
CLASSES_PER_GRADE = 4
SCHOOLS_PER_DISTRICT = 100
TOKEN_SECONDS = 6 * 3600  # a run over the whole city outlasts the usual five minutes
#: Indexes proposed for the models (see bench/RESULTS.md): a school's students in sourcedId order, and the whole
#: city's students in sourcedId order, each readable from the index alone.
PROPOSED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_directory_person_org_kind_id ON directory_person (org_id, kind, id)",
    "CREATE INDEX IF NOT EXISTS ix_directory_person_kind_id ON directory_person (kind, id)",
)


# ------------------------------------------------------------------------------------------ the data


@dataclass
class City:
    city_id: str
    districts: list[str]
    schools: list[str]
    paths: dict[str, str]
    students: int
    modified_median: datetime = field(default_factory=lambda: datetime(2026, 9, 1, tzinfo=UTC))


def _ids(rng: random.Random, count: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _name(rng: random.Random) -> str:
    surname = rng.choice(COMPOUND) if rng.random() < 0.01 else rng.choice(SURNAMES)
    return surname + rng.choice(GIVEN)


class Writer:
    """Bulk rows into one table: executemany of tuples (SQLite) or COPY (PostgreSQL), in one transaction."""

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection = connection
        self.dialect = dialect
        self.rows = 0

    def value(self, value: Any) -> Any:
        if self.dialect == "sqlite":
            if isinstance(value, datetime):
                return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            if isinstance(value, date):
                return value.isoformat()
            if isinstance(value, bool):
                return int(value)
        return value

    def write(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.rows += len(rows)
        if self.dialect == "postgresql":
            with (
                self.connection.cursor() as cursor,
                cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join("?" for _ in columns)
        converted = [tuple(self.value(value) for value in row) for row in rows]
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608 (our names)
        self.connection.executemany(statement, converted)


def build(database_url: str, *, students: int, schools: int, seed: int) -> City:
    """Fill a migrated database with the city's organisations, classes, teachers, students and memberships."""
    rng = random.Random(seed)
    engine = sa.create_engine(normalise_url(database_url))
    dialect = engine.dialect.name
    now = datetime(2026, 9, 1, tzinfo=UTC)
    city_id = _ids(rng, 1)[0]
    districts = _ids(rng, max(1, (schools + SCHOOLS_PER_DISTRICT - 1) // SCHOOLS_PER_DISTRICT))
    school_ids = _ids(rng, schools)
    paths = {city_id: f"/{city_id}"}
    organisations: list[tuple[Any, ...]] = [(city_id, None, "city", "滨江市", f"/{city_id}", None, None, True, now)]
    for index, district in enumerate(districts):
        paths[district] = f"/{city_id}/{district}"
        organisations.append(
            (district, city_id, "district", f"第{index + 1}区", paths[district], None, None, True, now)
        )
    for index, school in enumerate(school_ids):
        district = districts[index // SCHOOLS_PER_DISTRICT]
        paths[school] = f"{paths[district]}/{school}"
        organisations.append((school, district, "school", f"第{index + 1}小学", paths[school], f"{3502000000 + index}",
                              "primary", True, now))  # fmt: skip
    school_year = _ids(rng, 1)[0]
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        writer = Writer(raw, dialect)
        writer.write("directory_organisation", ("id", "parent_id", "kind", "name", "path", "school_code",
                                                "school_type", "active", "updated_at"), organisations)  # fmt: skip
        writer.write("academic_session", ("id", "org_id", "kind", "title", "school_year", "start_date", "end_date",
                                          "parent_id", "created_at", "updated_at", "deleted_at"),
                     [(school_year, city_id, "school_year", "2026-2027学年", 2027, date(2026, 9, 1), date(2027, 7, 31),
                       None, now, now, None)])  # fmt: skip
        per_school = students // schools
        for index, school in enumerate(school_ids):
            count = per_school + (1 if index < students - per_school * schools else 0)
            courses = {grade: _ids(rng, 1)[0] for grade in GRADES}
            writer.write("course", ("id", "school_id", "school_year_id", "course_code", "title", "grade", "subject",
                                    "created_at", "updated_at", "deleted_at"),
                         [(course, school, school_year, f"G{grade}-HR", f"{int(grade)}年级", grade, None, now, now,
                           None) for grade, course in courses.items()])  # fmt: skip
            classes = []
            for grade in GRADES:
                for number in range(1, CLASSES_PER_GRADE + 1):
                    classes.append((_ids(rng, 1)[0], grade, number))
            writer.write("school_class", ("id", "school_id", "school_year_id", "course_id", "grade", "number", "name",
                                          "class_type", "head_teacher_id", "created_at", "updated_at", "deleted_at"),
                         [(class_id, school, school_year, courses[grade], grade, number,
                           f"{int(grade)}年级({number})班", "homeroom", None, now, now, None)
                          for class_id, grade, number in classes])  # fmt: skip
            teachers = _ids(rng, len(classes))
            writer.write("directory_person", ("id", "kind", "name", "org_id", "student_number", "sex", "active",
                                              "updated_at"),
                         [(teacher, "staff", _name(rng), school, None, rng.choice(("male", "female")), True, now)
                          for teacher in teachers])  # fmt: skip
            writer.write("directory_role", ("id", "person_id", "role", "org_id", "org_path", "active"),
                         [(_ids(rng, 1)[0], teacher, "teacher", school, paths[school], True)
                          for teacher in teachers])  # fmt: skip
            writer.write("class_teacher", ("id", "class_id", "school_id", "teacher_id", "role", "subject",
                                           "start_date", "end_date", "updated_at"),
                         [(_ids(rng, 1)[0], class_id, school, teacher, "head", None, date(2026, 9, 1), None, now)
                          for (class_id, _, _), teacher in zip(classes, teachers, strict=True)])  # fmt: skip
            pupils = _ids(rng, count)
            modified = [now - timedelta(seconds=rng.randrange(0, 86_400 * 60)) for _ in pupils]
            writer.write("directory_person", ("id", "kind", "name", "org_id", "student_number", "sex", "active",
                                              "updated_at"),
                         [(pupil, "student", _name(rng), school, f"G3502{index:06d}{position:08d}",
                           rng.choice(("male", "female")), True, when)
                          for position, (pupil, when) in enumerate(zip(pupils, modified, strict=True))])  # fmt: skip
            placed = [(pupil, classes[position % len(classes)]) for position, pupil in enumerate(pupils)]
            writer.write("student_enrollment", ("id", "student_id", "school_id", "school_year_id", "grade", "status",
                                                "source", "admission_application_id", "start_date", "end_date",
                                                "updated_at"),
                         [(_ids(rng, 1)[0], pupil, school, school_year, grade, "active", "directory", None,
                           date(2026, 9, 1), None, now) for pupil, (_, grade, _) in placed])  # fmt: skip
            writer.write("class_membership", ("id", "class_id", "school_id", "student_id", "start_date", "end_date",
                                              "reason", "homeroom", "note", "updated_at"),
                         [(_ids(rng, 1)[0], class_id, school, pupil, date(2026, 9, 1), None, "assigned", True, None,
                           now) for pupil, (class_id, _, _) in placed])  # fmt: skip
            if (index + 1) % 100 == 0:
                print(
                    f"  {index + 1:,} schools, {writer.rows:,} rows, {time.perf_counter() - started:.0f} s", flush=True
                )
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    print(f"built {writer.rows:,} rows in {time.perf_counter() - started:.1f} s ({dialect})", flush=True)
    return City(city_id, districts, school_ids, paths, students)


def city_of(database_url: str) -> City:
    """The city of an already built database (``--keep``)."""
    engine = sa.create_engine(normalise_url(database_url))
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT id, kind, path FROM directory_organisation ORDER BY path").all()
        students = connection.exec_driver_sql("SELECT count(*) FROM directory_person WHERE kind = 'student'").scalar()
    engine.dispose()
    paths = {row[0]: row[2] for row in rows}
    city_id = next(row[0] for row in rows if row[1] == "city")
    districts = [row[0] for row in rows if row[1] == "district"]
    schools = [row[0] for row in rows if row[1] == "school"]
    return City(city_id, districts, schools, paths, int(students or 0))


def set_proposed_indexes(database_url: str, *, present: bool) -> None:
    """Create the proposed indexes, or drop them (a kept database may hold them from an earlier run)."""
    engine = sa.create_engine(normalise_url(database_url))
    started = time.perf_counter()
    with engine.begin() as connection:
        for statement in PROPOSED_INDEXES:
            if present:
                connection.exec_driver_sql(statement)
            else:
                name = statement.split(" IF NOT EXISTS ")[1].split(" ")[0]
                connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    print(f"proposed indexes {'created' if present else 'dropped'} in {time.perf_counter() - started:.1f} s")


# -------------------------------------------------------------------------------------- measuring


@dataclass
class Scenario:
    name: str
    headers: dict[str, str]
    school_ids: list[str] | None  # for the baseline's WHERE; None = every school
    students: int
    query: str = ""  # extra query string (filter, sort)
    baseline_where: str = ""


@dataclass
class Result:
    name: str
    latencies: list[float]
    baseline: list[float]
    records: int
    errors: int


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def offsets(rng: random.Random, total: int, count: int, limit: int) -> list[int]:
    """Random page offsets over the whole range, the first and the last page included."""
    last = max(0, (total - 1) // limit * limit)
    chosen = [0, last] + [rng.randrange(0, max(1, total // limit)) * limit for _ in range(count - 2)]
    rng.shuffle(chosen)
    return chosen


def measure(client: httpx.Client, scenario: Scenario, pages: list[int], limit: int) -> tuple[list[float], int, int]:
    latencies, records, errors = [], 0, 0
    for offset in pages:
        url = f"{ROSTERING}/students?limit={limit}&offset={offset}{scenario.query}"
        started = time.perf_counter()
        response = client.get(url, headers=scenario.headers)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            errors += 1
            if errors <= 3:
                print(f"  {scenario.name}: {response.status_code} {response.text[:300]}")
            continue
        records += len(response.json()["users"])
    return latencies, records, errors


def walk(client: httpx.Client, scenario: Scenario, pages: int, limit: int) -> list[float]:
    """Follow Link rel=next from the first page, as a sync client does."""
    latencies: list[float] = []
    url: str | None = f"{ROSTERING}/students?limit={limit}{scenario.query}"
    for _ in range(pages):
        if url is None:
            break
        started = time.perf_counter()
        response = client.get(url, headers=scenario.headers)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            sys.exit(f"{scenario.name}: walk stopped by {response.status_code} {response.text[:300]}")
        following = response.links.get("next", {}).get("url")
        # The links carry the public base URL; the bench server listens elsewhere.
        url = httpx.URL(following).raw_path.decode() if following else None
    return latencies


def baseline_pages(database_url: str, scenario: Scenario, pages: list[int], limit: int) -> list[float]:
    """The same pages by the simplest SQL on the driver's own connection: the floor of what a page costs."""
    engine = sa.create_engine(normalise_url(database_url))
    marker = "?" if engine.dialect.name == "sqlite" else "%s"
    where = "kind = 'student'"
    parameters: list[Any] = []
    if scenario.school_ids is not None:
        where += f" AND org_id IN ({', '.join(marker for _ in scenario.school_ids)})"
        parameters += scenario.school_ids
    # psycopg takes % for its placeholders; a literal one is written twice.
    where += scenario.baseline_where.replace("%", "%%") if marker == "%s" else scenario.baseline_where
    order = "updated_at DESC, id" if "sort=dateLastModified" in scenario.query else "id"
    sql = (f"SELECT id, kind, name, org_id, student_number, sex, active, updated_at FROM directory_person "  # noqa: S608
           f"WHERE {where} ORDER BY {order} LIMIT {limit} OFFSET {marker}")  # fmt: skip
    latencies = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for offset in pages:
            started = time.perf_counter()
            cursor.execute(sql, (*parameters, offset))
            cursor.fetchall()
            latencies.append((time.perf_counter() - started) * 1000)
        cursor.close()
    finally:
        raw.close()
    engine.dispose()
    return latencies


def row(label: str, latencies: Sequence[float], floor: Sequence[float] | None) -> str:
    p50, p95, p99 = (percentile(latencies, q) for q in (0.5, 0.95, 0.99))
    text = f"{label:<34}{len(latencies):>6}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}{max(latencies):>9.1f}"
    if floor:
        b50, b99 = percentile(floor, 0.5), percentile(floor, 0.99)
        text += f"{b50:>9.2f}{b99:>9.2f}{p50 / b50:>8.1f}x{p99 / b99:>7.1f}x"
    verdict = "PASS" if p99 < 50 else "FAIL"
    return f"{text}   p99<50ms {verdict}"


# --------------------------------------------------------------------------------------------- main


@contextlib.contextmanager
def database(args: argparse.Namespace, workdir: Path) -> Iterator[str]:
    postgres = args.postgres or (os.environ.get("TEST_DATABASE_URL") if args.use_test_database_url else None)
    if postgres:
        with scratch_postgres_database(postgres, prefix="roster_bench") as url:
            yield url
        return
    path = Path(args.keep) if args.keep else workdir / "roster.db"
    yield f"sqlite:///{path}"


def scenarios(city: City, issuer: TestIssuer, rng: random.Random) -> list[Scenario]:
    def person(role: str, org_id: str) -> dict[str, str]:
        token = issuer.token(subject=str(uuid.uuid4()), scopes="roster.read roster.students.read",
                             roles=[{"role": role, "org_id": org_id, "org_path": city.paths[org_id]}],
                             expires_in=TOKEN_SECONDS)  # fmt: skip
        return {"Authorization": f"Bearer {token}"}

    per_school = city.students // max(1, len(city.schools))
    school = city.schools[len(city.schools) // 2]
    district = city.districts[0]
    district_schools = [item for item in city.schools if city.paths[item].startswith(city.paths[district] + "/")]
    app_schools = sorted(rng.sample(city.schools, min(50, len(city.schools))))
    app_token = issuer.token(client_id="bench-app-client", app_id="bench-app",
                             scopes="roster.read roster.students.read", expires_in=TOKEN_SECONDS)  # fmt: skip
    app_headers = {"Authorization": f"Bearer {app_token}", "X-Edu-App-Schools": ",".join(app_schools)}
    return [
        Scenario("school", person("school_admin", school), [school], per_school),
        Scenario("app50", app_headers, app_schools, per_school * len(app_schools)),
        Scenario("district", person("district_admin", district), district_schools, per_school * len(district_schools)),
        Scenario("city", person("city_admin", city.city_id), None, city.students),
        Scenario(
            "district, filter + sort",
            person("district_admin", district),
            district_schools,
            per_school * len(district_schools) // len(SURNAMES),
            query="&filter=familyName%3D%27%E7%8E%8B%27&sort=dateLastModified&orderBy=desc",
            baseline_where=" AND name LIKE '王%'",
        ),
    ]


def run_pass(
    settings: EnrollmentSettings, database_url: str, city: City, args: argparse.Namespace, *, proposed: bool
) -> None:
    """Measure every caller against a fresh app (its listing cache empty), with or without the proposed indexes."""
    set_proposed_indexes(database_url, present=proposed)
    rng = random.Random(args.seed)
    issuer = TestIssuer()
    app = create_app(settings)
    issuer.trust(app)
    callers = [item for item in scenarios(city, issuer, rng) if not args.only or item.name in args.only]
    results = []
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=120) as client:
        for scenario in callers:
            pages = offsets(rng, scenario.students, args.requests, args.limit)
            measure(client, scenario, [0, 0, 0], args.limit)  # warm-up: connection, JWKS, the count
            started = time.perf_counter()
            latencies, records, errors = measure(client, scenario, pages, args.limit)
            if errors:
                sys.exit(f"{scenario.name}: {errors} requests failed; the figures would mean nothing")
            elapsed = time.perf_counter() - started
            floor = baseline_pages(database_url, scenario, pages, args.limit)
            walked = walk(client, scenario, args.walk, args.limit)
            results.append((scenario, latencies, floor, walked))
            print(f"  {scenario.name}: {len(pages)} pages in {elapsed:.1f} s, {records:,} records", flush=True)
    engine_name = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    print(f"\nOneRoster GET /students?limit={args.limit}&offset=… ({engine_name}; {city.students:,} students, "
          f"{len(city.schools):,} schools; proposed indexes {'on' if proposed else 'off'}; "
          f"load average after: {load_average()})")  # fmt: skip
    print(f"{'caller (reach)':<34}{'pages':>6}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}"
          f"{'sql p50':>9}{'sql p99':>9}{'p50/sql':>9}{'p99/sql':>8}   (ms)")  # fmt: skip
    for scenario, latencies, floor, walked in results:
        print(row(f"{scenario.name} (~{scenario.students:,})", latencies, floor))
        print(row(f"{scenario.name}: walk by Link next", walked, None))
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--schools", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=200, help="pages measured per caller")
    parser.add_argument("--walk", type=int, default=100, help="pages followed by Link rel=next per caller")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL: a scratch database is made there")
    parser.add_argument("--use-test-database-url", action="store_true", help="use TEST_DATABASE_URL as --postgres")
    parser.add_argument("--keep", default=None, help="SQLite file to build once and reuse")
    parser.add_argument("--indexes", choices=("schema", "proposed", "both"), default="both",
                        help="the models' indexes, with the proposed ones, or one pass of each (default)")  # fmt: skip
    parser.add_argument("--only", nargs="*", default=None, help="caller names to measure (default: all)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="roster-bench-"))
    print(f"load average before: {load_average()}")
    with database(args, workdir) as database_url, NatsServer(workdir / "nats") as nats_server:
        settings = EnrollmentSettings(
            environment="test", database_url=database_url, nats_url=nats_server.url, log_json=False,
            log_level="WARNING", public_base_url="http://enrollment.bench", oneroster_max_limit=1000,
            run_background_workers=False,
        )  # fmt: skip
        if args.keep is not None and Path(args.keep).exists() and not args.postgres:
            print(f"reusing {args.keep}")
        else:
            migrate(settings)
            build(database_url, students=args.students, schools=args.schools, seed=args.seed)
        city = city_of(database_url)
        for proposed in {"schema": [False], "proposed": [True], "both": [False, True]}[args.indexes]:
            run_pass(settings, database_url, city, args, proposed=proposed)


if __name__ == "__main__":
    main()
