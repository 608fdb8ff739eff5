"""Demo data for `make run`: a city, two districts, four schools, and the people in them.

Loaded once: if the city already exists nothing is written. Every record goes through the same
service functions as the API, so the demo also publishes the events a real set-up would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from argon2 import PasswordHasher
from sqlmodel import Session, col, select

from identity.accounts import passwords
from identity.config import get_settings
from identity.organisations import service as organisations
from identity.organisations.models import Organisation
from identity.organisations.schemas import OrganisationCreate
from identity.people import service as people
from identity.people.schemas import PersonCreate
from kit.crypto import FieldCipher
from kit.identifiers import resident_id_check_character

DEMO_PASSWORD = "Demo@2026edu"  # noqa: S105 - printed by `make run` for local demo logins only

CITY = "厦门市"
DISTRICTS = [
    ("思明区", "350203", [
        ("厦门市思明区滨海实验小学", "2135020301", "primary"),
        ("厦门市思明区鹭江中学", "3135020302", "junior"),
    ]),
    ("湖里区", "350206", [
        ("厦门市湖里区金山小学", "2135020601", "primary"),
        ("厦门市湖里区湖光九年一贯制学校", "2135020602", "nine_year"),
    ]),
]  # fmt: skip

DISTRICT_ADMINS = ["苏卫东", "李红梅"]
SCHOOL_ADMINS = ["方文静", "邓国平", "彭海燕", "梁振宇"]
TEACHERS = ["林慧敏", "黄志强", "陈丽华", "郑建伟", "吴秀英", "蔡文博", "许晓燕", "王志明"]
STUDENTS = [
    ("王雨桐", "female"), ("李子轩", "male"), ("张欣怡", "female"), ("刘浩然", "male"), ("陈思涵", "female"),
    ("杨宇航", "male"), ("黄诗琪", "female"), ("赵梓睿", "male"), ("周佳怡", "female"), ("吴俊熙", "male"),
    ("徐若曦", "female"), ("孙博文", "male"), ("马语嫣", "female"), ("朱一鸣", "male"), ("胡可馨", "female"),
    ("郭子墨", "male"), ("何心怡", "female"), ("高天佑", "male"), ("林诗雨", "female"), ("罗嘉懿", "male"),
]  # fmt: skip
GUARDIAN_GIVEN = {"male": ("father", "建华"), "female": ("mother", "丽娟")}


@dataclass(frozen=True)
class DemoLogin:
    username: str
    name: str
    role: str
    where: str


def demo_resident_id(area_code: str, birth: date, sequence: int) -> str:
    first17 = f"{area_code}{birth:%Y%m%d}{sequence:03d}"
    return first17 + resident_id_check_character(first17)


def load(session: Session, cipher: FieldCipher, *, hasher: PasswordHasher | None = None) -> list[DemoLogin] | None:
    """Create the demo city once; returns the demo logins, or None if it was already there.

    Demo people can sign in with DEMO_PASSWORD at once (no forced change); ``hasher`` defaults to the
    configured argon2id cost.
    """
    if session.exec(select(Organisation.id).where(col(Organisation.parent_id).is_(None))).first():
        return None
    password_hash = passwords.hash_password(hasher or passwords.hasher_for(get_settings()), DEMO_PASSWORD)
    logins: list[DemoLogin] = []
    city = organisations.create_root(session, name=CITY)

    def person(data: PersonCreate, username: str | None = None) -> people.Person:
        cleaned = people.clean(data, session.get(Organisation, data.org_id))
        if username:
            cleaned = people.CleanPerson(**{**cleaned.__dict__, "username": username})
        row = people.create(session, cleaned, cipher, created_by=None)
        row.password_hash = password_hash
        row.must_change_password = False
        session.add(row)
        return row

    def staff(name: str, org: Organisation, role: str, username: str, phone: str) -> None:
        row = person(PersonCreate(kind="staff", name=name, org_id=org.id, phone=phone), username)
        people.grant_role(session, row, role=role, org_id=org.id, granted_by=None)
        logins.append(DemoLogin(username, name, role, org.name))

    staff("陈建国", city, "city_admin", "city.admin", "13900000001")
    staff("谢雅琴", city, "auditor", "city.auditor", "13900000002")
    # A developer of the demo vendor (a company outside the tree; the app store links the account to its vendor).
    staff("林思远", city, "vendor_developer", "vendor.dev", "13900000003")
    phone_seq = 100
    student_seq = 0
    teacher_index = 0
    for district_index, (district_name, area_code, schools) in enumerate(DISTRICTS, start=1):
        district = organisations.create(
            session, OrganisationCreate(kind="district", name=district_name, parent_id=city.id)
        )
        staff(
            DISTRICT_ADMINS[district_index - 1],
            district,
            "district_admin",
            f"district{district_index}.admin",
            f"1390000010{district_index}",
        )
        for school_index, (school_name, code, school_type) in enumerate(schools, start=1):
            school = organisations.create(
                session,
                OrganisationCreate(
                    kind="school",
                    name=school_name,
                    parent_id=district.id,
                    school_code=code,
                    school_type=school_type,
                ),
            )
            tag = f"d{district_index}s{school_index}"
            staff(
                SCHOOL_ADMINS[district_index * 2 + school_index - 3],
                school,
                "school_admin",
                f"{tag}.admin",
                f"1390000{phone_seq:04d}",
            )
            phone_seq += 1
            for _ in range(2):
                staff(
                    TEACHERS[teacher_index],
                    school,
                    "teacher",
                    f"{tag}.teacher{teacher_index % 2 + 1}",
                    f"1390000{phone_seq:04d}",
                )
                teacher_index += 1
                phone_seq += 1
            for _ in range(5):
                name, sex = STUDENTS[student_seq]
                birth = date(2016 + student_seq % 3, 1 + student_seq % 12, 1 + student_seq)
                sequence = 100 + student_seq * 2 + (1 if sex == "male" else 0)
                resident_id = demo_resident_id(area_code, birth, sequence)
                student = person(
                    PersonCreate(
                        kind="student", name=name, org_id=school.id, sex=sex,
                        resident_id_number=resident_id, student_number="G" + resident_id,
                    )
                )  # fmt: skip
                relationship, given = GUARDIAN_GIVEN[sex]
                guardian = person(
                    PersonCreate(
                        kind="guardian",
                        name=name[0] + given,
                        org_id=school.id,
                        phone=f"1370000{phone_seq:04d}",
                    )
                )
                phone_seq += 1
                people.link_guardian(session, student, guardian, relationship=relationship, linked_by=None)
                if student_seq % 5 == 0:
                    logins.append(DemoLogin(student.username or "", name, "student", school.name))
                    logins.append(DemoLogin(guardian.username or "", guardian.name, "parent", school.name))
                student_seq += 1
    session.flush()
    return logins
