"""Bulk import benchmark: N students (default 50,000) through the identity service's import API.

Side by side in one run, on the same database engine:
  * baseline — the same rows written with one SQLAlchemy Core executemany into the person table
    (no validation, no encryption, no events, no audit): what the database alone costs;
  * import   — upload of an XLSX file → background job: parse, validate every row, encrypt the ID
    numbers, write people, role grants and outbox events, until the job reports finished;
  * re-import — the same file again: every row must come back unchanged, nothing written.

    .venv/bin/python bench/import_students.py [--rows 50000] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
from openpyxl import Workbook

from contracts.auth import RoleClaim
from identity.config import IdentitySettings
from identity.keys import service as keys
from identity.main import create_app, migrate
from identity.organisations import service as organisations
from identity.organisations.schemas import OrganisationCreate
from kit.identifiers import resident_id_check_character
from kit.natsserver import NatsServer
from kit.testing import scratch_postgres_database

SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘蔡蒋余于杜叶程苏魏吕丁"
GIVEN = ["雨桐", "子轩", "欣怡", "浩然", "思涵", "宇航", "诗琪", "梓睿", "佳怡", "俊熙", "若曦", "博文", "语嫣", "一鸣"]


def student_rows(count: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        birth = date(2012, 1, 1) + timedelta(days=rng.randrange(0, 6 * 365))
        # (area code, sequence) differ for every row, so every ID number is distinct.
        first17 = f"35{(index // 1000) % 100:02d}03{birth:%Y%m%d}{index % 1000:03d}"
        number = first17 + resident_id_check_character(first17)
        sex = "男" if int(number[16]) % 2 else "女"
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        rows.append([name, sex, number, "G" + number])
    return rows


HEADER = ["姓名", "性别", "身份证号", "学籍号"]


def as_xlsx(rows: list[list[str]]) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("学生")
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@contextlib.contextmanager
def scratch_database(base_url: str | None, workdir: Path) -> Iterator[str]:
    if not base_url:
        yield f"sqlite:///{workdir / 'identity.db'}"
        return
    with scratch_postgres_database(base_url, prefix="import_bench") as url:
        yield url


async def run_import(client: httpx.AsyncClient, token: str, school_id: str, filename: str, content: bytes) -> dict:
    started = time.perf_counter()
    response = await client.post(
        "/imports",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": (filename, content)},
        data={"kind": "students", "school_id": school_id, "mode": "all_or_nothing"},
    )
    if response.status_code != 202:
        sys.exit(f"upload refused: {response.status_code} {response.text[:500]}")
    job = response.json()
    while job["status"] in ("queued", "running"):
        await asyncio.sleep(0.2)
        job = (await client.get(f"/imports/{job['id']}", headers={"Authorization": f"Bearer {token}"})).json()
    job["seconds"] = time.perf_counter() - started
    return job


def baseline(database_url: str, rows: list[list[str]], school_id: str) -> float:
    """The floor: plain executemany of the same rows into a copy of the person table."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    metadata = sa.MetaData()
    person = sa.Table("person", metadata, autoload_with=engine)
    copy = sa.Table("bench_person_copy", sa.MetaData(), *[column.copy() for column in person.columns])
    copy.create(engine)
    now = datetime.now(UTC)
    records = [
        {"id": str(uuid.uuid4()), "kind": "student", "name": row[0], "org_id": school_id, "student_number": row[3],
         "resident_id_masked": row[2][:6] + "********" + row[2][-4:], "must_change_password": True, "active": True,
         "created_at": now, "updated_at": now}
        for row in rows
    ]  # fmt: skip
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(copy.insert(), records)
    elapsed = time.perf_counter() - started
    copy.drop(engine)
    engine.dispose()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--database-url", default=None, help="PostgreSQL server URL (a scratch database is made)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="import-bench-"))
    rows = student_rows(args.rows)
    xlsx = as_xlsx(rows)
    with scratch_database(args.database_url, workdir) as database_url, NatsServer(workdir / "nats") as nats_server:
        settings = IdentitySettings(
            environment="test", database_url=database_url, nats_url=nats_server.url, log_json=False,
            log_level="WARNING", public_base_url="http://identity.bench", token_issuer="http://identity.bench",
            jwks_url="http://identity.bench/.well-known/jwks.json", import_max_rows=max(args.rows, 100_000),
        )  # fmt: skip
        migrate(settings)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            database = app.state.database
            with database.session() as session:
                city = organisations.create_root(session, name="厦门市")
                district = organisations.create(
                    session, OrganisationCreate(kind="district", name="思明区", parent_id=city.id)
                )
                schools = [
                    organisations.create(
                        session,
                        OrganisationCreate(
                            kind="school",
                            name=f"基准测试学校{i}",
                            parent_id=district.id,
                            school_code=f"21350203{i:02d}",
                            school_type="primary",
                        ),
                    )
                    for i in (1, 2)
                ]
                token = keys.issue_access_token(
                    session, settings, subject="bench-admin", client_id="bench", scopes=["people.write", "people.read"],
                    roles=[RoleClaim(role="city_admin", org_id=city.id, org_path=city.path)],
                )  # fmt: skip
                school_ids = [school.id for school in schools]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://identity.bench", timeout=120) as client:
                first = await run_import(client, token, school_ids[0], "students.xlsx", xlsx)
                again = await run_import(client, token, school_ids[0], "students.xlsx", xlsx)
            floor = baseline(database_url, rows, school_ids[1])
    engine = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\nBulk import of {len(rows):,} students ({engine}; XLSX of {len(xlsx) / 1e6:.1f} MB)")
    print(f"{'run':<38}{'seconds':>9}{'rows/s':>10}{'ratio':>8}   result")
    print(f"{'baseline: executemany, no checks':<38}{floor:>9.2f}{len(rows) / floor:>10,.0f}{1:>8.2f}")
    for label, job in (("import XLSX (validate+encrypt+events)", first), ("re-import same file", again)):
        outcome = (
            f"{job['status']}: created {job['created_count']}, unchanged {job['unchanged_count']}, "
            f"failed {job['failed_count']}"
        )
        seconds = job["seconds"]
        print(f"{label:<38}{seconds:>9.2f}{len(rows) / seconds:>10,.0f}{seconds / floor:>8.2f}   {outcome}")
    target = "PASS" if first["seconds"] < 60 and first["status"] == "succeeded" else "FAIL"
    print(f"\ntarget: {len(rows):,} rows well under a minute → {target} ({first['seconds']:.1f} s)")


if __name__ == "__main__":
    asyncio.run(main())
